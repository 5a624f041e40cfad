//! File locks over the ring: [`Client::get_lock`] and [`Client::set_lock`], for `fcntl`'s
//! record locks (POSIX and OFD) and `flock`.
//!
//! The server keeps the locks in the engine's table, shared with the FUSE mount. A wait is
//! parked there, not in a server thread: the server answers a `SetLock` that must wait with a
//! token, and the client asks how the wait stands (`LockWait`) with naps between, short at
//! first and longer as the wait goes on (up to [`LONGEST_NAP`]). Signals are held back while a
//! wait runs and let in only during its naps: a signal whose handler runs ends the wait as it
//! ends the kernel's, with `EINTR` (unless the lock was granted meanwhile), wherever in the
//! wait it arrived.

use std::io;
use std::time::Duration;

use btfuse_core::ring::{Request, Response};

use crate::client::{Client, unexpected};
use crate::sys;

/// The first nap of a wait.
const FIRST_NAP: Duration = Duration::from_micros(50);
/// The longest nap of a wait: how late, at worst, a waiter learns it was granted.
pub const LONGEST_NAP: Duration = Duration::from_millis(5);

/// What a record lock request covers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LockScope {
    /// A POSIX record lock, owned by this process.
    Posix,
    /// An OFD record lock, owned by the description.
    Ofd,
    /// A `flock` lock, owned by the description (its range is ignored).
    Flock,
}

/// Read (shared), write (exclusive) or unlock.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LockType {
    /// Shared.
    Read,
    /// Exclusive.
    Write,
    /// Unlock.
    Unlock,
}

/// A lock that stands in the way, as `F_GETLK` reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LockHolder {
    /// A write lock rather than a read lock.
    pub write: bool,
    /// Its first byte.
    pub start: u64,
    /// Its last byte (`i64::MAX`: to the end of the file).
    pub end: u64,
    /// The process that took it.
    pub pid: u32,
    /// An OFD or `flock` lock (owned by a description; `l_pid` reads -1).
    pub description: bool,
}

impl Client {
    /// `F_GETLK` (`ofd` false) or `F_OFD_GETLK` on description `fd`: the first lock that
    /// would stand in the way of a read or `write` lock on `start..=end`, if any.
    pub fn get_lock(
        &self,
        fd: u32,
        ofd: bool,
        write: bool,
        start: u64,
        end: u64,
    ) -> io::Result<Option<LockHolder>> {
        let request = Request::GetLock {
            fd,
            ofd,
            write,
            start,
            end,
        };
        self.request(&request, |r| match r {
            Response::Ok => Ok(None),
            Response::Lock {
                write,
                start,
                end,
                pid,
                description,
            } => Ok(Some(LockHolder {
                write,
                start,
                end,
                pid,
                description,
            })),
            other => unexpected(other),
        })
    }

    /// Sets (or clears) a lock on description `fd`: `F_SETLK` and `flock(LOCK_NB)` with
    /// `wait` false (`EAGAIN` when something stands in the way), `F_SETLKW` and `flock` with
    /// it (`EDEADLK` when the wait would deadlock, `EINTR` when a signal ends it).
    pub fn set_lock(
        &self,
        fd: u32,
        scope: LockScope,
        kind: LockType,
        start: u64,
        end: u64,
        wait: bool,
    ) -> io::Result<()> {
        let request = Request::SetLock {
            fd,
            scope: match scope {
                LockScope::Posix => 0,
                LockScope::Ofd => 1,
                LockScope::Flock => 2,
            },
            kind: match kind {
                LockType::Read => 0,
                LockType::Write => 1,
                LockType::Unlock => 2,
            },
            start,
            end,
            wait,
        };
        let parked = |r: Response<'_>| match r {
            Response::Ok => Ok(None),
            Response::Token(token) => Ok(Some(token)),
            other => unexpected(other),
        };
        // Held from before the first request: a signal that comes while a request travels
        // must still end the wait, so it stays pending until the next nap lets it in.
        let held = wait.then(sys::SignalsHeld::hold);
        let Some(token) = self.request(&request, parked)? else {
            return Ok(());
        };
        let held = held.expect("only a wait is parked");
        let mut nap = FIRST_NAP;
        loop {
            let cancel = held.nap(nap);
            nap = (nap * 2).min(LONGEST_NAP);
            let request = Request::LockWait { token, cancel };
            if self.request(&request, parked)?.is_none() {
                return Ok(());
            }
        }
    }
}
