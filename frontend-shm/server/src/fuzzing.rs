//! The request executor without a ring around it, for fuzz targets (feature `fuzzing`).
//!
//! [`Executor`] serves decoded requests exactly as a worker does, through the same
//! `execute`, for a fixed set of client sessions sharing one filesystem and one table of
//! pending forks. There is no channel, no socket and no kernel mount: `Handoff` is answered
//! `EOPNOTSUPP` and opens never send content (`prefetch` is ignored). The caller picks the
//! session and the credentials of every request, so one session may be used with several
//! identities in turn, as a process that changes its ids keeps its descriptors.
//!
//! ```
//! use std::sync::Arc;
//!
//! use btfuse_core::ring::{OpenOptions, Request, Response};
//! use btfuse_core::{Config, Credentials, Errno, MemFs, MemPool, ZeroClock};
//! use btfuse_ring_server::fuzzing::Executor;
//!
//! let fs = Arc::new(MemFs::new(MemPool::new(1 << 20), Config::default(), ZeroClock));
//! let mut executor = Executor::new(fs, 2);
//! let open = Request::Open {
//!     at: None,
//!     path: b"/",
//!     flags: OpenOptions {
//!         read: true,
//!         directory: true,
//!         ..OpenOptions::default()
//!     },
//!     mode: 0,
//!     prefetch: 0,
//!     known_ino: 0,
//!     known_version: 0,
//! };
//! assert!(matches!(
//!     executor.execute(0, &Credentials::root(), &open),
//!     Response::Opened { fd: 0, .. }
//! ));
//! // Descriptor numbers belong to a session.
//! let close = Request::Close { fd: 0 };
//! assert_eq!(
//!     executor.execute(1, &Credentials::root(), &close),
//!     Response::Err(Errno::BadHandle)
//! );
//! ```

use std::sync::Arc;

use btfuse_core::ring::{Request, Response};
use btfuse_core::{ContentWatch, Credentials, Filesystem};

use super::contents::ContentTable;
use super::exec::{self, Extras};
use super::session::{ForkTable, MAX_OPEN_PER_USER, Session, UserBudget};

/// Client sessions over one filesystem, served by the ring server's executor.
pub struct Executor<F: Filesystem> {
    fs: Arc<F>,
    forks: ForkTable<F>,
    sessions: Vec<Arc<Session<F>>>,
    scratch: exec::Scratch,
    /// The content table, when `fs` reports its changes: as the server, stamped answers.
    contents: Option<Arc<ContentTable>>,
}

impl<F: Filesystem> Executor<F> {
    /// `sessions` empty sessions over `fs`, numbered from 0; a content table counts `fs`'s
    /// changes if it reports them, as the server's does.
    pub fn new(fs: Arc<F>, sessions: usize) -> Executor<F> {
        let contents = ContentTable::new()
            .ok()
            .map(Arc::new)
            .filter(|table| fs.watch_content(Arc::clone(table) as Arc<dyn ContentWatch>));
        let sessions = (0..sessions)
            .map(|i| {
                let budget = Arc::new(UserBudget::new(MAX_OPEN_PER_USER));
                Arc::new(Session::new(i as u64 + 1, &Credentials::root(), budget))
            })
            .collect();
        Executor {
            fs,
            forks: ForkTable::default(),
            sessions,
            scratch: exec::Scratch::default(),
            contents,
        }
    }

    /// The filesystem served.
    pub fn fs(&self) -> &Arc<F> {
        &self.fs
    }

    /// Number of sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Serves `request` for session `session` as the caller `cred`. An `Attach` replaces the
    /// session's table, as on a channel that is its session's only one.
    ///
    /// # Panics
    ///
    /// If `session` is not below [`Executor::sessions`].
    pub fn execute(
        &mut self,
        session: usize,
        cred: &Credentials,
        request: &Request<'_>,
    ) -> Response<'_> {
        exec::execute(
            &self.fs,
            &self.forks,
            &mut self.sessions[session],
            cred,
            request,
            &mut self.scratch,
            Extras {
                courier: None,
                contents: self.contents.as_deref(),
                shower: None,
            },
        )
    }
}
