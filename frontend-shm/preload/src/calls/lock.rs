//! File locks on btfuse descriptors: `fcntl`'s record locks (`F_GETLK`, `F_SETLK`,
//! `F_SETLKW` and their `F_OFD_` forms), `flock` and `lockf`, kept by the server in the
//! engine's lock table, which the FUSE mount shares: a preloaded process and one on the mount
//! exclude each other.
//!
//! `struct flock` is read as Linux reads it (`l_whence` from the start, the offset or the end;
//! a negative `l_len` counts back) and the checks are Linux's: `EINVAL` for a bad type or range,
//! for `F_OFD_*` with a non-zero `l_pid`; `EBADF` for a read lock on a description not open for
//! reading or a write lock on one not open for writing. A wait ends with `EINTR` when a signal
//! handler runs, whether or not it was installed with `SA_RESTART` (the kernel would restart
//! the call then).

use btfuse_core::locks::{LockRange, OFFSET_MAX};
use btfuse_core::ring::{Request, Response, Target, Whence};
use btfuse_ring_client::{Client, LockScope, LockType};
use libc::{c_int, off_t};

use crate::connection::{PROTOCOL, call, transport_failed};
use crate::descriptors::Entry;
use crate::errno::fail;
use crate::serve::descriptor;

fn io_errno(e: &std::io::Error) -> c_int {
    e.raw_os_error().unwrap_or_else(|| transport_failed(e))
}

/// The absolute range of `fl` on description `desc`.
fn flock_range(fl: &libc::flock, desc: u32, client: &Client) -> Result<LockRange, c_int> {
    let base: i64 = match c_int::from(fl.l_whence) {
        libc::SEEK_SET => 0,
        libc::SEEK_CUR => {
            let request = Request::Lseek {
                fd: desc,
                offset: 0,
                whence: Whence::Cur,
            };
            call(client, &request, |r| match r {
                Response::Offset(n) => Ok(n as i64),
                _ => Err(PROTOCOL),
            })?
        }
        libc::SEEK_END => {
            let request = Request::Stat {
                target: Target::Fd(desc),
            };
            call(client, &request, |r| match r {
                Response::Attr(attr) => Ok(attr.size as i64),
                _ => Err(PROTOCOL),
            })?
        }
        _ => return Err(libc::EINVAL),
    };
    let start = base.checked_add(fl.l_start).ok_or(libc::EOVERFLOW)?;
    LockRange::from_posix(start, fl.l_len).map_err(|e| e.code())
}

/// `fcntl(fd, cmd, fl)` for the lock commands, on btfuse descriptor `entry`.
pub(crate) fn fcntl_lock(cmd: c_int, fl: *mut libc::flock, entry: Entry, client: &Client) -> c_int {
    if fl.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: the caller passed a `struct flock` for a lock command, as fcntl requires.
    let lock = unsafe { &mut *fl };
    let ofd = matches!(
        cmd,
        libc::F_OFD_GETLK | libc::F_OFD_SETLK | libc::F_OFD_SETLKW
    );
    if ofd && lock.l_pid != 0 {
        return fail(libc::EINVAL);
    }
    let range = match flock_range(lock, entry.desc, client) {
        Ok(range) => range,
        Err(e) => return fail(e),
    };
    let kind = match c_int::from(lock.l_type) {
        libc::F_RDLCK => LockType::Read,
        libc::F_WRLCK => LockType::Write,
        libc::F_UNLCK => LockType::Unlock,
        _ => return fail(libc::EINVAL),
    };
    if matches!(cmd, libc::F_GETLK | libc::F_OFD_GETLK) {
        if kind == LockType::Unlock {
            return fail(libc::EINVAL);
        }
        let write = kind == LockType::Write;
        return match client.get_lock(entry.desc, ofd, write, range.start(), range.end()) {
            Ok(None) => {
                lock.l_type = libc::F_UNLCK as i16;
                0
            }
            Ok(Some(holder)) => {
                let found = LockRange::new(holder.start, holder.end).unwrap_or(LockRange::WHOLE);
                lock.l_type = if holder.write {
                    libc::F_WRLCK
                } else {
                    libc::F_RDLCK
                } as i16;
                lock.l_whence = libc::SEEK_SET as i16;
                lock.l_start = found.start() as off_t;
                lock.l_len = found.posix_len() as off_t;
                lock.l_pid = if holder.description {
                    -1
                } else {
                    holder.pid as libc::pid_t
                };
                0
            }
            Err(e) => fail(io_errno(&e)),
        };
    }
    let scope = if ofd {
        LockScope::Ofd
    } else {
        LockScope::Posix
    };
    let wait = matches!(cmd, libc::F_SETLKW | libc::F_OFD_SETLKW);
    if scope == LockScope::Posix && kind != LockType::Unlock {
        // Closing any descriptor of the file must let these go: no description is parked
        // from now on (see `held`).
        crate::held::stop_parking(client);
    }
    match client.set_lock(entry.desc, scope, kind, range.start(), range.end(), wait) {
        Ok(()) => 0,
        Err(e) => fail(io_errno(&e)),
    }
}

interpose! {
    /// Interposed: `flock` on a btfuse descriptor.
    fn flock(fd: c_int, operation: c_int) -> c_int {
        let (entry, client) = descriptor(fd)?;
        let kind = match operation & !libc::LOCK_NB {
            libc::LOCK_SH => LockType::Read,
            libc::LOCK_EX => LockType::Write,
            libc::LOCK_UN => LockType::Unlock,
            _ => return Some(fail(libc::EINVAL)),
        };
        let wait = operation & libc::LOCK_NB == 0;
        let result = client.set_lock(entry.desc, LockScope::Flock, kind, 0, OFFSET_MAX, wait);
        Some(match result {
            Ok(()) => 0,
            Err(e) => fail(io_errno(&e)),
        })
    }

    /// Interposed: `lockf` on a btfuse descriptor, as glibc builds it on `fcntl` (whose
    /// call from inside libc this library would not see).
    fn lockf, lockf64(fd: c_int, cmd: c_int, len: off_t) -> c_int {
        let (entry, client) = descriptor(fd)?;
        // SAFETY: `flock` is plain data; all zeroes is a valid value.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_whence = libc::SEEK_CUR as i16;
        fl.l_len = len;
        let (command, kind) = match cmd {
            libc::F_TEST => (libc::F_GETLK, libc::F_RDLCK),
            libc::F_ULOCK => (libc::F_SETLK, libc::F_UNLCK),
            libc::F_LOCK => (libc::F_SETLKW, libc::F_WRLCK),
            libc::F_TLOCK => (libc::F_SETLK, libc::F_WRLCK),
            _ => return Some(fail(libc::EINVAL)),
        };
        fl.l_type = kind as i16;
        let rc = fcntl_lock(command, &mut fl, entry, &client);
        if cmd != libc::F_TEST || rc != 0 {
            return Some(rc);
        }
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        Some(if c_int::from(fl.l_type) == libc::F_UNLCK || fl.l_pid == me {
            0
        } else {
            fail(libc::EACCES)
        })
    }
}
