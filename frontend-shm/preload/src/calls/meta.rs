//! Calls that change an inode's metadata: `chmod`, `chown` and their relatives, `utimensat`,
//! `futimens`, `truncate` and `ftruncate`.

use std::ffi::CStr;

use btfuse_core::ring::{Request, Target};
use btfuse_ring_client::Client;
use libc::{c_char, c_int, mode_t, off_t};

use crate::descriptors;
use crate::errno::fail;
use crate::guard::guarded;
use crate::outside::follow;
use crate::paths::{PathTarget, at_target, c_bytes};
use crate::real;
use crate::serve::{descriptor, expect_ok, path_target, simple};

interpose! {
    /// Interposed.
    fn ftruncate, ftruncate64(fd: c_int, length: off_t) -> c_int {
        let (entry, client) = descriptor(fd)?;
        if length < 0 {
            return Some(fail(libc::EINVAL));
        }
        let request = Request::Truncate {
            target: Target::Fd(entry.desc),
            size: length as u64,
        };
        Some(expect_ok(&client, &request))
    }

    /// Interposed.
    fn truncate, truncate64(path: *const c_char, length: off_t) -> c_int; real = libc_fn {
        let serve = |t: &PathTarget<'_>| {
            if length < 0 {
                return fail(libc::EINVAL);
            }
            let request = Request::Truncate {
                target: path_target(t, 0),
                size: length as u64,
            };
            expect_ok(&t.client, &request)
        };
        // SAFETY: libc's call with an absolute path.
        let kernel = |host: &CStr| unsafe { libc_fn()(host.as_ptr(), length) };
        // SAFETY: libc's contract.
        unsafe { simple(libc::AT_FDCWD, path, serve, kernel) }
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn chmod(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe { fchmodat(libc::AT_FDCWD, path, mode, 0) }
}

interpose! {
    /// Interposed.
    fn fchmod(fd: c_int, mode: mode_t) -> c_int {
        let (entry, client) = descriptor(fd)?;
        let request = Request::Chmod {
            target: Target::Fd(entry.desc),
            mode: mode & 0o7777,
        };
        Some(expect_ok(&client, &request))
    }
}

/// A target for the calls that take `(dirfd, path, flags)` with `AT_EMPTY_PATH` or a null
/// path meaning the descriptor itself.
///
/// # Safety
/// `path` is null or a valid C string.
unsafe fn fd_or_path<'a>(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
) -> Option<(Client, Option<PathTarget<'a>>, Option<u32>)> {
    // SAFETY: the caller's contract.
    let bytes = unsafe { c_bytes(path) };
    if bytes.is_none() || (bytes == Some(b"") && flags & libc::AT_EMPTY_PATH != 0) {
        let (entry, client) = descriptor(dirfd)?;
        return Some((client, None, Some(entry.desc)));
    }
    // SAFETY: the caller's contract.
    let t = unsafe { at_target(dirfd, path) }?;
    Some((t.client.clone(), Some(t), None))
}

/// A call taking `(dirfd, path, flags)`: `request` for the descriptor or, over the ring, for
/// the path (a walk that leaves the tree going on with `kernel`, the real call with an
/// absolute path).
///
/// # Safety
/// `path` is null or a valid C string.
unsafe fn fd_or_path_call(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mut request: impl FnMut(&Client, Target<'_>) -> c_int,
    kernel: impl FnMut(&CStr) -> c_int,
) -> Option<c_int> {
    // SAFETY: the caller's contract.
    let (client, target, fd) = unsafe { fd_or_path(dirfd, path, flags) }?;
    match target {
        Some(t) => follow(
            t,
            |t| request(&t.client, path_target(t, flags)),
            kernel,
            fail,
        ),
        None => Some(request(&client, Target::Fd(fd?))),
    }
}

fn time_set(ts: Option<&libc::timespec>) -> btfuse_core::TimeSet {
    use btfuse_core::{TimeSet, Timestamp};
    match ts {
        None => TimeSet::Now,
        Some(t) if t.tv_nsec == libc::UTIME_NOW => TimeSet::Now,
        Some(t) if t.tv_nsec == libc::UTIME_OMIT => TimeSet::Omit,
        Some(t) => Timestamp::new(t.tv_sec, t.tv_nsec as u32).map_or(TimeSet::Omit, TimeSet::At),
    }
}

interpose! {
    /// Interposed.
    fn utimensat(
        dirfd: c_int,
        path: *const c_char,
        times: *const libc::timespec,
        flags: c_int,
    ) -> c_int {
        // SAFETY: `times` is null or two timespecs (libc's contract).
        let (atime, mtime) = unsafe {
            if times.is_null() {
                (time_set(None), time_set(None))
            } else {
                (time_set(Some(&*times)), time_set(Some(&*times.add(1))))
            }
        };
        let request = |client: &Client, target: Target<'_>| {
            let request = Request::Utimens {
                target,
                atime,
                mtime,
            };
            expect_ok(client, &request)
        };
        // SAFETY: libc's `utimensat` with an absolute path and the caller's times.
        let kernel =
            |host: &CStr| unsafe { real::utimensat()(libc::AT_FDCWD, host.as_ptr(), times, flags) };
        // SAFETY: libc's contract.
        unsafe { fd_or_path_call(dirfd, path, flags, request, kernel) }
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn futimens(fd: c_int, times: *const libc::timespec) -> c_int {
    // SAFETY: `utimensat` with a null path acts on `fd` (libc's own definition).
    let ours = guarded(|| descriptors::lookup(fd).is_some()).unwrap_or(false);
    if ours {
        // SAFETY: libc's contract.
        return unsafe { utimensat(fd, std::ptr::null(), times, 0) };
    }
    // SAFETY: libc's contract, passed on.
    unsafe { real::futimens()(fd, times) }
}

interpose! {
    /// Interposed.
    fn fchmodat(dirfd: c_int, path: *const c_char, mode: mode_t, flags: c_int) -> c_int {
        let request = |client: &Client, target: Target<'_>| {
            let mode = mode & 0o7777;
            expect_ok(client, &Request::Chmod { target, mode })
        };
        // SAFETY: libc's `fchmodat` with an absolute path.
        let kernel =
            |host: &CStr| unsafe { real::fchmodat()(libc::AT_FDCWD, host.as_ptr(), mode, flags) };
        // SAFETY: libc's contract.
        unsafe { fd_or_path_call(dirfd, path, flags, request, kernel) }
    }
}

fn owner(id: u32) -> Option<u32> {
    (id != u32::MAX).then_some(id)
}

interpose! {
    /// Interposed.
    fn fchownat(
        dirfd: c_int,
        path: *const c_char,
        uid: libc::uid_t,
        gid: libc::gid_t,
        flags: c_int,
    ) -> c_int {
        let request = |client: &Client, target: Target<'_>| {
            let request = Request::Chown {
                target,
                uid: owner(uid),
                gid: owner(gid),
            };
            expect_ok(client, &request)
        };
        // SAFETY: libc's `fchownat` with an absolute path.
        let kernel = |host: &CStr| unsafe {
            real::fchownat()(libc::AT_FDCWD, host.as_ptr(), uid, gid, flags)
        };
        // SAFETY: libc's contract.
        unsafe { fd_or_path_call(dirfd, path, flags, request, kernel) }
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn chown(path: *const c_char, uid: libc::uid_t, gid: libc::gid_t) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe { fchownat(libc::AT_FDCWD, path, uid, gid, 0) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lchown(path: *const c_char, uid: libc::uid_t, gid: libc::gid_t) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe { fchownat(libc::AT_FDCWD, path, uid, gid, libc::AT_SYMLINK_NOFOLLOW) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchown(fd: c_int, uid: libc::uid_t, gid: libc::gid_t) -> c_int {
    let ours = guarded(|| descriptors::lookup(fd).is_some()).unwrap_or(false);
    if ours {
        // SAFETY: a null path acts on `fd`.
        return unsafe { fchownat(fd, std::ptr::null(), uid, gid, 0) };
    }
    // SAFETY: libc's contract, passed on.
    unsafe { real::fchown()(fd, uid, gid) }
}

/// Two `timeval`s (or none: now) as `utimensat`'s `timespec`s; `EINVAL` for microseconds
/// out of range, as Linux checks them.
///
/// # Safety
/// `times` is null or points at two `timeval`s.
unsafe fn timespecs(times: *const libc::timeval) -> Result<Option<[libc::timespec; 2]>, i32> {
    if times.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's contract.
    let tv = unsafe { [*times, *times.add(1)] };
    let mut out = [libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    }; 2];
    for (t, v) in out.iter_mut().zip(tv) {
        if !(0..1_000_000).contains(&v.tv_usec) {
            return Err(libc::EINVAL);
        }
        t.tv_sec = v.tv_sec;
        t.tv_nsec = v.tv_usec * 1000;
    }
    Ok(Some(out))
}

/// `utimes` and its relatives through this library's `utimensat` (glibc calls its internal
/// one, which no interposer sees).
///
/// # Safety
/// `path` is null or a valid C string; `times` is null or two `timeval`s.
unsafe fn utimes_at(
    dirfd: c_int,
    path: *const c_char,
    times: *const libc::timeval,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    match unsafe { timespecs(times) } {
        Err(e) => fail(e),
        // SAFETY: the caller's contract; this library's `utimensat`.
        Ok(ts) => unsafe {
            utimensat(
                dirfd,
                path,
                ts.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
                flags,
            )
        },
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn utimes(path: *const c_char, times: *const libc::timeval) -> c_int {
    // SAFETY: libc's contract.
    unsafe { utimes_at(libc::AT_FDCWD, path, times, 0) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lutimes(path: *const c_char, times: *const libc::timeval) -> c_int {
    // SAFETY: libc's contract.
    unsafe { utimes_at(libc::AT_FDCWD, path, times, libc::AT_SYMLINK_NOFOLLOW) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn futimesat(
    dirfd: c_int,
    path: *const c_char,
    times: *const libc::timeval,
) -> c_int {
    // SAFETY: libc's contract.
    unsafe { utimes_at(dirfd, path, times, 0) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn futimes(fd: c_int, times: *const libc::timeval) -> c_int {
    // SAFETY: the caller's contract.
    match unsafe { timespecs(times) } {
        Err(e) => fail(e),
        // SAFETY: libc's contract; this library's `futimens`.
        Ok(ts) => unsafe { futimens(fd, ts.as_ref().map_or(std::ptr::null(), |t| t.as_ptr())) },
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn utime(path: *const c_char, times: *const libc::utimbuf) -> c_int {
    let ts;
    let p = if times.is_null() {
        std::ptr::null()
    } else {
        // SAFETY: libc's contract: `times` points at a `utimbuf`.
        let t = unsafe { &*times };
        ts = [
            libc::timespec {
                tv_sec: t.actime,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: t.modtime,
                tv_nsec: 0,
            },
        ];
        ts.as_ptr()
    };
    // SAFETY: libc's contract; this library's `utimensat`.
    unsafe { utimensat(libc::AT_FDCWD, path, p, 0) }
}

/// Interposed: glibc's `lchmod` is its internal `fchmodat` with `AT_SYMLINK_NOFOLLOW`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lchmod(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: libc's contract.
    unsafe { fchmodat(libc::AT_FDCWD, path, mode, libc::AT_SYMLINK_NOFOLLOW) }
}
