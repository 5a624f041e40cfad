//! `GetLock`, `SetLock` and `LockWait`: file locks from the engine's table, with the owners
//! Linux gives them (the process for POSIX locks, the description for OFD and `flock` locks)
//! and the checks `fcntl` and `flock` make before.

use btfuse_core::locks::{LockKind, LockOwner, LockRange, LockRequest, LockSpace, OwnerKind};
use btfuse_core::ring::Response;
use btfuse_core::{Errno, Filesystem, Result};

use btfuse_core::Ino;
use btfuse_core::locks::LockTable;

use super::Exec;
use crate::locks::{Waited, end_hung_up};
use crate::session::Description;

/// `SetLock`'s scopes.
const SCOPE_POSIX: u8 = 0;
const SCOPE_OFD: u8 = 1;
const SCOPE_FLOCK: u8 = 2;

/// Most locks of processes that are gone [`settle_exited_holders`] removes for one call.
const MAX_SETTLED: usize = 64;

/// Drops the locks in the way of `request` that belong to processes that have exited but
/// whose sessions the server has not ended yet (see [`end_hung_up`]). The kernel drops an
/// exiting process's locks before its parent can reap it; without this, a parent that reaped
/// a child holding a lock could find the lock still there.
fn settle_exited_holders(table: &LockTable, ino: Ino, request: &LockRequest) {
    for _ in 0..MAX_SETTLED {
        let Some(conflict) = table.get(ino, request) else {
            return;
        };
        // Pid 0: a process the server cannot see (another pid namespace).
        if conflict.pid == 0 {
            return;
        }
        let ended = end_hung_up(conflict.pid);
        if ended.is_empty() {
            return;
        }
        if ended.contains(&conflict.owner) {
            // Ending the session dropped its POSIX locks; one a request of the process still
            // being served took since then is as stale.
            table.release_owner(conflict.owner);
        } else if table.get(ino, request) == Some(conflict) {
            // A description's lock that another process still holds (a child that inherited
            // it): a real conflict.
            return;
        }
    }
}

/// The owner of a description's OFD and `flock` locks.
fn description_owner<F: Filesystem>(description: &Description<F>) -> LockOwner {
    LockOwner {
        kind: OwnerKind::Description,
        id: description.lock_fh.0,
    }
}

impl<F: Filesystem> Exec<'_, F> {
    /// The request for a lock on `fd` and the description it goes through. A record lock
    /// must fit the description's access (`EBADF`: reading for a read lock, writing for a
    /// write lock, as `fcntl` checks); no lock goes through an `O_PATH` description.
    fn lock_request(
        &self,
        fd: u32,
        scope: u8,
        kind: Option<LockKind>,
        start: u64,
        end: u64,
    ) -> Result<(std::sync::Arc<Description<F>>, LockRequest)> {
        let description = self.session.get(fd)?;
        if description.grant.path_only {
            return Err(Errno::BadHandle);
        }
        let (space, owner, range) = match scope {
            SCOPE_POSIX => (
                LockSpace::Record,
                self.session.locks.owner(),
                LockRange::new(start, end)?,
            ),
            SCOPE_OFD => (
                LockSpace::Record,
                description_owner(&description),
                LockRange::new(start, end)?,
            ),
            SCOPE_FLOCK => (
                LockSpace::Flock,
                description_owner(&description),
                LockRange::WHOLE,
            ),
            _ => return Err(Errno::InvalidArgument),
        };
        if space == LockSpace::Record {
            let allowed = match kind {
                Some(LockKind::Read) => description.grant.read,
                Some(LockKind::Write) => description.grant.write,
                None => true,
            };
            if !allowed {
                return Err(Errno::BadHandle);
            }
        }
        let request = LockRequest {
            owner,
            space,
            kind,
            range,
            pid: self.cred.pid,
        };
        Ok((description, request))
    }

    /// `GetLock`: `Lock` with the first lock in the way, or `Ok`.
    pub(super) fn get_lock(
        &self,
        fd: u32,
        ofd: bool,
        write: bool,
        start: u64,
        end: u64,
    ) -> Result<Response<'static>> {
        let table = self.session.locks.table(self.fs)?;
        let scope = if ofd { SCOPE_OFD } else { SCOPE_POSIX };
        let kind = if write {
            LockKind::Write
        } else {
            LockKind::Read
        };
        // F_GETLK asks about a lock it could take, whatever the description's access.
        let (description, mut request) = self.lock_request(fd, scope, None, start, end)?;
        request.kind = Some(kind);
        settle_exited_holders(table, description.ino, &request);
        Ok(match table.get(description.ino, &request) {
            None => Response::Ok,
            Some(c) => Response::Lock {
                write: c.kind == LockKind::Write,
                start: c.range.start(),
                end: c.range.end(),
                pid: c.pid,
                description: c.owner.kind == OwnerKind::Description,
            },
        })
    }

    /// `SetLock`: `Ok`, an error, or `Token` for a parked wait.
    pub(super) fn set_lock(
        &self,
        fd: u32,
        scope: u8,
        kind: u8,
        start: u64,
        end: u64,
        wait: bool,
    ) -> Result<Response<'static>> {
        let table = self.session.locks.table(self.fs)?;
        let kind = match kind {
            0 => Some(LockKind::Read),
            1 => Some(LockKind::Write),
            2 => None,
            _ => return Err(Errno::InvalidArgument),
        };
        let (description, request) = self.lock_request(fd, scope, kind, start, end)?;
        let (ino, fh) = (description.ino, description.lock_fh);
        if !wait {
            let result = table.set(ino, &request, fh);
            if result != Err(Errno::TryAgain) {
                return result.map(|()| Response::Ok);
            }
            settle_exited_holders(table, ino, &request);
            return table.set(ino, &request, fh).map(|()| Response::Ok);
        }
        settle_exited_holders(table, ino, &request);
        match self
            .session
            .locks
            .wait(|wake| table.set_wait(ino, &request, fh, wake))?
        {
            Waited::Now(outcome) => outcome.map(|()| Response::Ok),
            Waited::Parked(token) => Ok(Response::Token(token)),
        }
    }

    /// `LockWait`: `Ok` or the error once decided, `Token` while parked.
    pub(super) fn lock_wait(&self, token: u64, cancel: bool) -> Result<Response<'static>> {
        let table = self.session.locks.table(self.fs)?;
        match self.session.locks.poll(table, token, cancel)? {
            Some(outcome) => outcome.map(|()| Response::Ok),
            None => Ok(Response::Token(token)),
        }
    }
}
