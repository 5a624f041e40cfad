//! Open file descriptions and the sessions that hold them, kept in the server as the kernel
//! keeps them: a description has the offset and status flags; a session maps a client's
//! descriptor numbers to descriptions; `dup` shares a description, `fork` copies the map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use btfuse_core::{Credentials, Errno, Fh, FileType, Filesystem, Ino};

/// Most descriptions one session may hold open at once (`EMFILE` beyond).
pub(crate) const MAX_OPEN: usize = 1 << 16;

/// How long the descriptions shared by a `Fork` wait for the child to attach.
const FORK_TTL: Duration = Duration::from_secs(60);

/// The part of a description that reads and writes change, under one lock: POSIX wants a
/// read or write and its offset update to be one step.
#[derive(Debug)]
pub(crate) struct Cursor {
    /// File offset; for a directory, the readdir cookie to continue after.
    pub(crate) offset: u64,
    /// `O_APPEND`, changeable with `F_SETFL`.
    pub(crate) append: bool,
    /// `O_NONBLOCK`, changeable with `F_SETFL` (kept for `F_GETFL`; a memory file never blocks).
    pub(crate) nonblock: bool,
    /// The engine's handle. Replaced when `F_SETFL` toggles `O_APPEND`, because the engine
    /// fixes append mode when a handle opens.
    pub(crate) fh: Fh,
}

/// One open file description.
///
/// Once handed to the kernel (`Handoff`) it holds a kernel file of the same inode, opened
/// through the mount, and is a proxy of that kernel description from then on: reads, writes,
/// seeks and status flags go to the kernel file, whose offset is shared with whoever received
/// its descriptor, and `cursor`'s offset and flags are no longer used. The kernel file is set
/// once, under the cursor lock, so an engine read or write that holds the lock finishes before
/// the kernel file takes the offset over.
pub(crate) struct Description<F: Filesystem> {
    fs: Arc<F>,
    /// The inode it opened.
    pub(crate) ino: Ino,
    /// Its type at open time.
    pub(crate) kind: FileType,
    /// What it was granted when it opened, checked then with the opener's identity; later
    /// changes of the caller's ids or of the file's mode change nothing here (Linux).
    pub(crate) grant: Grant,
    cursor: Mutex<Cursor>,
    kernel: OnceLock<std::fs::File>,
}

/// What a description may be used for, fixed when it opens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Grant {
    /// Reading (and, for a directory, listing): read permission was checked at open.
    pub(crate) read: bool,
    /// Writing: write permission was checked at open.
    pub(crate) write: bool,
    /// Access mode 3: read and write permission were checked, neither is granted; kept for
    /// `F_GETFL`.
    pub(crate) check_read_write: bool,
    /// `O_PATH`: names the inode and nothing more. Only the calls Linux serves with
    /// `fdget_raw` take it (`fstat`, `fstatfs`, `faccessat` on it, `F_GETFL`, `dup`, `close`,
    /// a starting directory); every other is `EBADF`.
    pub(crate) path_only: bool,
}

/// Where a call on a description's offset goes.
pub(crate) enum Route<'d> {
    /// The engine, with the offset and flags locked for the call.
    Engine(MutexGuard<'d, Cursor>),
    /// The kernel file the description was handed off as; no lock is held.
    Kernel(&'d std::fs::File),
}

impl<F: Filesystem> Description<F> {
    /// A description over the engine handle `fh`, which it releases when the last reference
    /// to it goes.
    pub(crate) fn new(fs: Arc<F>, ino: Ino, kind: FileType, grant: Grant, cursor: Cursor) -> Self {
        Description {
            fs,
            ino,
            kind,
            grant,
            cursor: Mutex::new(cursor),
            kernel: OnceLock::new(),
        }
    }

    /// Where a call that uses or moves the offset goes. When it says the engine, the cursor is
    /// locked: a handoff cannot take the offset over until the call is done.
    pub(crate) fn route(&self) -> Route<'_> {
        if let Some(kernel) = self.kernel.get() {
            return Route::Kernel(kernel);
        }
        let cursor = self.cursor();
        match self.kernel.get() {
            Some(kernel) => Route::Kernel(kernel),
            None => Route::Engine(cursor),
        }
    }

    /// The kernel file this description was handed off as, opened by `open` from the
    /// cursor (whose offset and flags it must take over) on the first handoff.
    pub(crate) fn kernel_file<E>(
        &self,
        open: impl FnOnce(&Cursor) -> Result<std::fs::File, E>,
    ) -> Result<&std::fs::File, E> {
        if let Some(kernel) = self.kernel.get() {
            return Ok(kernel);
        }
        let cursor = self.cursor();
        if let Some(kernel) = self.kernel.get() {
            return Ok(kernel);
        }
        let file = open(&cursor)?;
        let kernel = self.kernel.get_or_init(|| file);
        drop(cursor);
        Ok(kernel)
    }

    /// The offset, flags and handle, locked for one operation.
    pub(crate) fn cursor(&self) -> MutexGuard<'_, Cursor> {
        // A panic while serving one request must not wedge the description for the others.
        self.cursor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<F: Filesystem> Drop for Description<F> {
    fn drop(&mut self) {
        let fh = self.cursor.get_mut().unwrap_or_else(|p| p.into_inner()).fh;
        if let Err(e) = self.fs.release(fh) {
            log::warn!("releasing handle {fh:?} of inode {:?}: {e}", self.ino);
        }
    }
}

/// A client's descriptor table.
pub(crate) struct Session<F: Filesystem> {
    /// The secret another connection of the same client presents to join this session.
    pub(crate) join_token: u64,
    /// The user that created the session; only the same user may join it.
    pub(crate) owner_uid: u32,
    table: Mutex<Table<F>>,
}

struct Table<F: Filesystem> {
    open: HashMap<u32, Arc<Description<F>>>,
    /// Where the search for a free number starts.
    next: u32,
}

impl<F: Filesystem> Session<F> {
    pub(crate) fn new(join_token: u64, owner_uid: u32) -> Self {
        Self::with_table(join_token, owner_uid, HashMap::new())
    }

    fn with_table(
        join_token: u64,
        owner_uid: u32,
        open: HashMap<u32, Arc<Description<F>>>,
    ) -> Self {
        Session {
            join_token,
            owner_uid,
            table: Mutex::new(Table { open, next: 0 }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table<F>> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a description under a fresh number (`EMFILE` when the table is full).
    pub(crate) fn insert(&self, description: Arc<Description<F>>) -> Result<u32, Errno> {
        let mut table = self.table();
        if table.open.len() >= MAX_OPEN {
            return Err(Errno::TooManyOpenFiles);
        }
        let mut fd = table.next;
        while table.open.contains_key(&fd) {
            fd = fd.wrapping_add(1);
        }
        table.next = fd.wrapping_add(1);
        table.open.insert(fd, description);
        Ok(fd)
    }

    /// The description numbered `fd` (`EBADF` if none).
    pub(crate) fn get(&self, fd: u32) -> Result<Arc<Description<F>>, Errno> {
        self.table().open.get(&fd).cloned().ok_or(Errno::BadHandle)
    }

    /// Removes number `fd`; the description closes when nothing else refers to it. The
    /// release happens after the table lock is dropped.
    pub(crate) fn remove(&self, fd: u32) -> Result<(), Errno> {
        let removed = self.table().open.remove(&fd);
        removed.map(drop).ok_or(Errno::BadHandle)
    }

    /// A second number for the description `fd` refers to.
    pub(crate) fn dup(&self, fd: u32) -> Result<u32, Errno> {
        let description = self.get(fd)?;
        self.insert(description)
    }

    /// Number of open descriptor numbers.
    pub(crate) fn len(&self) -> usize {
        self.table().open.len()
    }

    /// A copy of the table sharing every description, as `fork` gives a child.
    fn fork_table(&self) -> HashMap<u32, Arc<Description<F>>> {
        self.table().open.clone()
    }
}

/// Tables a parent shared with `Fork`, waiting for the child to `Attach`.
pub(crate) struct ForkTable<F: Filesystem> {
    pending: Mutex<HashMap<u64, PendingFork<F>>>,
}

struct PendingFork<F: Filesystem> {
    made: Instant,
    uid: u32,
    open: HashMap<u32, Arc<Description<F>>>,
}

impl<F: Filesystem> Default for ForkTable<F> {
    fn default() -> Self {
        ForkTable {
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl<F: Filesystem> ForkTable<F> {
    /// Keeps a copy of `session`'s table under `token` for a child of the same user.
    pub(crate) fn prepare(&self, token: u64, session: &Session<F>, cred: &Credentials) {
        let open = session.fork_table();
        let expired = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let expired: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| now.duration_since(p.made) > FORK_TTL)
                .map(|(&t, _)| t)
                .collect();
            let expired: Vec<_> = expired.iter().filter_map(|t| pending.remove(t)).collect();
            pending.insert(
                token,
                PendingFork {
                    made: now,
                    uid: cred.uid,
                    open,
                },
            );
            expired
        };
        // Released outside the lock.
        drop(expired);
    }

    /// The session a child attaching with `token` continues with: `EACCES` for another user,
    /// `ENOENT` for an unknown, used or expired token.
    pub(crate) fn attach(
        &self,
        token: u64,
        join_token: u64,
        cred: &Credentials,
    ) -> Result<Session<F>, Errno> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.get(&token) {
            None => return Err(Errno::NotFound),
            Some(p) if p.made.elapsed() > FORK_TTL => {
                let stale = pending.remove(&token);
                drop(pending);
                drop(stale);
                return Err(Errno::NotFound);
            }
            Some(p) if p.uid != cred.uid && !cred.is_root() => return Err(Errno::PermissionDenied),
            Some(_) => {}
        }
        let p = pending.remove(&token).ok_or(Errno::NotFound)?;
        Ok(Session::with_table(join_token, cred.uid, p.open))
    }

    /// Drops every pending table (at shutdown).
    pub(crate) fn clear(&self) {
        let all = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        drop(all);
    }
}
