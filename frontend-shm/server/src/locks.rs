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
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use btfuse_core::locks::{LockOwner, LockTable, OwnerKind, WaitId, Wake};
use btfuse_core::{Errno, Filesystem, Result};

/// Most waits one session may have parked at once (`EAGAIN` beyond): one per
/// thread is what a program can have, so this only bounds what a hostile client can pin.
pub(crate) const MAX_PARKED_PER_SESSION: usize = 1024;

/// Numbers the sessions' lock owners, never reused while the server runs.
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// What the lock calls need of a session they may find in their way: a session whose process
/// has exited but whose channels its worker has not retired yet.
pub(crate) trait Holder: Send + Sync {
    /// Whether every channel of the session has hung up (its process is gone): if so, ends
    /// what the session holds, at once (see `Session::end`).
    fn end_if_hung_up(&self) -> bool;

    /// The owner of the session's POSIX locks.
    fn lock_owner(&self) -> LockOwner;
}

/// Sessions by the pid of the process that made them, to find the one behind a lock in the
/// way. Entries go with their sessions (pruned as new ones come).
static HOLDERS: Mutex<Option<HoldersByPid>> = Mutex::new(None);

type HoldersByPid = HashMap<u32, Vec<Weak<dyn Holder>>>;

fn holders() -> MutexGuard<'static, Option<HoldersByPid>> {
    HOLDERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes `session`, made for process `pid`, one that [`end_hung_up`] can find.
pub(crate) fn register_holder<H: Holder + 'static>(pid: u32, session: &Arc<H>) {
    let weak: Weak<dyn Holder> = Arc::downgrade(session) as Weak<dyn Holder>;
    let mut holders = holders();
    let by_pid = holders.get_or_insert_with(HashMap::new);
    by_pid.retain(|_, sessions| {
        sessions.retain(|s| s.strong_count() > 0);
        !sessions.is_empty()
    });
    by_pid.entry(pid).or_default().push(weak);
}

/// Ends the sessions of process `pid` whose channels have all hung up, and gives the POSIX
/// lock owners of those sessions (empty when it has none that are gone).
///
/// The kernel closes an exiting process's descriptors, its end of the server's socket among
/// them, before its parent can reap it, so a parent that has reaped a child holding a lock
/// finds the child's socket hung up even if the worker that owns the channel has not served
/// the hang-up yet (it may be the very thread asking). Ending the session here drops its
/// locks as the kernel would have by then.
pub(crate) fn end_hung_up(pid: u32) -> Vec<LockOwner> {
    let sessions: Vec<Arc<dyn Holder>> = holders()
        .as_ref()
        .and_then(|by_pid| by_pid.get(&pid))
        .map(|sessions| sessions.iter().filter_map(Weak::upgrade).collect())
        .unwrap_or_default();
    sessions
        .iter()
        .filter(|s| s.end_if_hung_up())
        .map(|s| s.lock_owner())
        .collect()
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
    /// The lock state of a new session.
    pub(crate) fn new() -> Self {
        SessionLocks {
            owner: LockOwner {
                kind: OwnerKind::Process,
                id: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
            },
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
    }
}

impl<F: Filesystem> SessionLocks<F> {
    /// Drops the process's POSIX locks and gives up its parked waits: it is gone.
    pub(crate) fn release_all(&self) {
        let Some(fs) = self.fs.get() else {
            return;
        };
        let Some(table) = fs.locks() else {
            return;
        };
        // Waits of the descriptions' owners (OFD, flock) are this process's too: it is gone,
        // so they are given up, even if a child still holds the description.
        let waits = std::mem::take(&mut *self.waits());
        for slot in waits.values() {
            let state = *lock(slot);
            if let WaitState::Parked(Some(id)) = state {
                table.cancel(id);
            }
        }
        table.release_owner(self.owner);
    }
}
