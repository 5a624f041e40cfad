//! A session's part in the engine's file locks: the owner its POSIX locks go by, and its
//! parked waits.
//!
//! A session is one process, so it is the owner of that process's POSIX locks (a forked
//! child gets a session of its own, and so does not inherit them, as on Linux). OFD and
//! `flock` locks belong to a description instead (see `Description::lock_fh`).
//!
//! A `SETLKW` that must wait is parked in the engine's table with a callback that records the
//! outcome here, under a token the client then asks about (`LockWait`) until it is decided, so
//! no server thread waits for a lock. When the session ends (the process exited or was
//! killed), its POSIX locks go and its parked waits are given up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use btfuse_core::locks::{LockOwner, LockTable, OwnerKind, WaitId, Wake};
use btfuse_core::{Errno, Filesystem, Result};

/// Most waits one session may have parked at once (`EAGAIN` beyond): one per
/// thread is what a program can have, so this only bounds what a hostile client can pin.
pub(crate) const MAX_PARKED_PER_SESSION: usize = 1024;

/// Numbers the sessions' lock owners, never reused while the server runs.
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// Live sessions by the pid of their process: a process that has exited but still has one
/// here has locks the server has not dropped yet (it learns of the exit when it serves the
/// hang-up of the process's sockets, a moment later).
static SESSIONS_BY_PID: Mutex<Option<HashMap<u32, usize>>> = Mutex::new(None);

fn sessions_by_pid() -> MutexGuard<'static, Option<HashMap<u32, usize>>> {
    SESSIONS_BY_PID.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether the server still has a session of process `pid`.
pub(crate) fn has_session(pid: u32) -> bool {
    sessions_by_pid()
        .as_ref()
        .is_some_and(|m| m.get(&pid).is_some_and(|&n| n > 0))
}

/// Whether process `pid` has exited (it is gone, or a zombie): its files are closed, so the
/// kernel would have dropped its locks already.
pub(crate) fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold any byte.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Where a parked wait stands.
#[derive(Clone, Copy, Debug)]
enum WaitState {
    /// Parked under this id (`None` for the moment between parking and learning the id).
    Parked(Option<WaitId>),
    /// Decided: granted or refused.
    Done(Result<()>),
}

type Slot = Arc<Mutex<WaitState>>;

fn lock(slot: &Slot) -> MutexGuard<'_, WaitState> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// The lock state of one session.
pub(crate) struct SessionLocks<F: Filesystem> {
    owner: LockOwner,
    /// The session's process, counted in `SESSIONS_BY_PID` while the session lives.
    pid: u32,
    /// The engine, kept once the session has used locks, to drop them when it ends.
    fs: OnceLock<Arc<F>>,
    waits: Mutex<HashMap<u64, Slot>>,
    next_token: AtomicU64,
}

/// How a `SetLock` that may wait went.
pub(crate) enum Waited {
    /// Decided at once.
    Now(Result<()>),
    /// Parked: ask with this token.
    Parked(u64),
}

impl<F: Filesystem> SessionLocks<F> {
    /// The lock state of a new session of process `pid`.
    pub(crate) fn new(pid: u32) -> Self {
        *sessions_by_pid()
            .get_or_insert_with(HashMap::new)
            .entry(pid)
            .or_insert(0) += 1;
        SessionLocks {
            owner: LockOwner {
                kind: OwnerKind::Process,
                id: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
            },
            pid,
            fs: OnceLock::new(),
            waits: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
        }
    }

    /// The owner of this process's POSIX locks.
    pub(crate) fn owner(&self) -> LockOwner {
        self.owner
    }

    /// The engine's lock table, if this session has used it.
    pub(crate) fn used(&self) -> Option<&LockTable> {
        self.fs.get().and_then(|fs| fs.locks())
    }

    /// The engine's lock table (`EOPNOTSUPP` when it keeps none), remembering
    /// the engine so that the session's locks can be dropped when it ends.
    pub(crate) fn table<'f>(&self, fs: &'f Arc<F>) -> Result<&'f LockTable> {
        let table = fs.locks().ok_or(Errno::NotSupported)?;
        self.fs.get_or_init(|| Arc::clone(fs));
        Ok(table)
    }

    fn waits(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        self.waits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `set` (a `LockTable::set_wait` with the callback it is given) and keeps the wait
    /// under a new token, unless it was decided at once. `EAGAIN` when the session has
    /// [`MAX_PARKED_PER_SESSION`] waits parked.
    pub(crate) fn wait(&self, set: impl FnOnce(Wake) -> Option<WaitId>) -> Result<Waited> {
        if self.waits().len() >= MAX_PARKED_PER_SESSION {
            return Err(Errno::TryAgain);
        }
        let slot: Slot = Arc::new(Mutex::new(WaitState::Parked(None)));
        let told = Arc::clone(&slot);
        let wake: Wake = Box::new(move |outcome| *lock(&told) = WaitState::Done(outcome));
        let Some(id) = set(wake) else {
            return match *lock(&slot) {
                WaitState::Done(outcome) => Ok(Waited::Now(outcome)),
                WaitState::Parked(_) => Err(Errno::Io),
            };
        };
        {
            let mut state = lock(&slot);
            if let WaitState::Parked(None) = *state {
                *state = WaitState::Parked(Some(id));
            }
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        self.waits().insert(token, slot);
        Ok(Waited::Parked(token))
    }

    /// How the wait `token` stands: `Ok(Some(outcome))` once decided (and forgotten), `None`
    /// while parked. With `cancel`, a parked wait is given up first (`EINTR`). `EINVAL` for
    /// a token this session does not have.
    pub(crate) fn poll(
        &self,
        table: &LockTable,
        token: u64,
        cancel: bool,
    ) -> Result<Option<Result<()>>> {
        let slot = self
            .waits()
            .get(&token)
            .cloned()
            .ok_or(Errno::InvalidArgument)?;
        if cancel {
            let state = *lock(&slot);
            if let WaitState::Parked(Some(id)) = state {
                table.cancel(id);
            }
        }
        let state = *lock(&slot);
        match state {
            WaitState::Done(outcome) => {
                self.waits().remove(&token);
                Ok(Some(outcome))
            }
            WaitState::Parked(_) => Ok(None),
        }
    }
}

impl<F: Filesystem> Drop for SessionLocks<F> {
    fn drop(&mut self) {
        self.release_all();
        // Only once its locks are gone: a contender that saw the exit waits for this.
        self.forget_session();
    }
}

impl<F: Filesystem> SessionLocks<F> {
    fn release_all(&mut self) {
        let Some(fs) = self.fs.get() else {
            return;
        };
        let Some(table) = fs.locks() else {
            return;
        };
        // Waits of the descriptions' owners (OFD, flock) are this process's too: it is gone,
        // so they are given up, even if a child still holds the description.
        let waits = std::mem::take(self.waits.get_mut().unwrap_or_else(|p| p.into_inner()));
        for slot in waits.values() {
            let state = *lock(slot);
            if let WaitState::Parked(Some(id)) = state {
                table.cancel(id);
            }
        }
        table.release_owner(self.owner);
    }

    fn forget_session(&self) {
        if let Some(by_pid) = sessions_by_pid().as_mut()
            && let Some(n) = by_pid.get_mut(&self.pid)
        {
            *n -= 1;
            if *n == 0 {
                by_pid.remove(&self.pid);
            }
        }
    }
}
