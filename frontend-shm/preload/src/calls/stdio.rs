//! stdio streams on btfuse files: `fopen` and `fdopen` make cookie streams over this
//! library's calls (see `streams`), `fileno` names their descriptors, and `freopen` moves
//! them, or a standard stream, from one file to another.

use libc::{FILE, c_char, c_int, c_void};

use super::streams::{
    cookie_of, cookie_stream, remake_std_stream, set_stream_access, std_index, std_slot,
    take_cookie,
};
use super::{fd, path};
use crate::config;
use crate::descriptors;
use crate::errno::{errno, fail};
use crate::guard::guarded;
use crate::paths::{self, c_bytes};
use crate::real;

/// `fclose` of a stream made by `fopen` or `fdopen`: the descriptor goes with it while the
/// stream owns one.
unsafe extern "C" fn close_stream(cookie: *mut c_void) -> c_int {
    // SAFETY: stdio closes a stream once; the cookie is one `cookie_stream` made.
    let cookie = unsafe { take_cookie(cookie) };
    if cookie.owns_fd {
        // SAFETY: the descriptor belongs to this stream.
        unsafe { fd::close(cookie.fd) }
    } else {
        0
    }
}

/// `open` flags for an `fopen` mode string, or `None` if it is invalid.
fn mode_flags(mode: &[u8]) -> Option<c_int> {
    let (first, rest) = mode.split_first()?;
    let plus = rest.contains(&b'+');
    let mut flags = match (first, plus) {
        (b'r', false) => libc::O_RDONLY,
        (b'r', true) => libc::O_RDWR,
        (b'w', false) => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        (b'w', true) => libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
        (b'a', false) => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
        (b'a', true) => libc::O_RDWR | libc::O_CREAT | libc::O_APPEND,
        _ => return None,
    };
    if rest.contains(&b'x') {
        flags |= libc::O_EXCL;
    }
    if rest.contains(&b'e') {
        flags |= libc::O_CLOEXEC;
    }
    Some(flags)
}

/// `fopen` of a btfuse file: a cookie stream; `None` hands the call to glibc. The guard is
/// taken only to ask: the stream is made with this library's own `open` and `close`.
///
/// # Safety
/// As for `fopen`.
#[unsafe(link_section = ".text.hot.btfuse")]
unsafe fn open_stream(path: *const c_char, mode: *const c_char) -> Option<*mut FILE> {
    // SAFETY: libc's contract.
    let ours = guarded(|| unsafe { paths::at_target(libc::AT_FDCWD, path) }.is_some());
    if ours != Some(true) {
        return None;
    }
    // SAFETY: libc's contract.
    let Some(flags) = (unsafe { c_bytes(mode) }).and_then(mode_flags) else {
        fail(libc::EINVAL);
        return Some(std::ptr::null_mut());
    };
    // SAFETY: libc's contract; `open` is this library's.
    let fd = unsafe { path::open(path, flags, 0o666) };
    if fd < 0 {
        return Some(std::ptr::null_mut());
    }
    // A path that led out of the tree was opened by the kernel: glibc's stream, then.
    if guarded(|| descriptors::lookup(fd).is_none()) == Some(true) {
        // SAFETY: `fd` is the kernel file just opened, given to the stream.
        let fp = unsafe { real::fdopen()(fd, mode) };
        if fp.is_null() {
            // SAFETY: the descriptor just opened.
            unsafe { real::close()(fd) };
        }
        return Some(fp);
    }
    // SAFETY: `mode` is valid.
    let fp = unsafe { cookie_stream(fd, mode, true, close_stream) };
    if fp.is_null() {
        // SAFETY: the descriptor just opened.
        unsafe { fd::close(fd) };
    }
    Some(fp)
}

/// Interposed: btfuse files open as cookie streams.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.hot.btfuse")]
pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut FILE {
    // SAFETY: libc's contract, passed on.
    unsafe { open_stream(path, mode).unwrap_or_else(|| real::fopen()(path, mode)) }
}

/// Interposed: btfuse files open as cookie streams.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.hot.btfuse")]
pub unsafe extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut FILE {
    // SAFETY: libc's contract, passed on.
    unsafe { open_stream(path, mode).unwrap_or_else(|| real::fopen64()(path, mode)) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdopen(fd: c_int, mode: *const c_char) -> *mut FILE {
    if guarded(|| descriptors::lookup(fd).is_some()).unwrap_or(false) {
        // SAFETY: `mode` is libc's contract.
        return unsafe { cookie_stream(fd, mode, true, close_stream) };
    }
    // SAFETY: libc's contract, passed on.
    unsafe { real::fdopen()(fd, mode) }
}

interpose! {
    /// Interposed: a cookie stream's descriptor is the btfuse descriptor under it.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn fileno, fileno_unlocked(fp: *mut FILE) -> c_int {
        // SAFETY: a registered cookie lives until its stream is closed.
        cookie_of(fp).map(|c| unsafe { (*c).fd })
    }
}

/// `freopen` for the streams and files this library serves; `None` hands the call to
/// glibc (neither the stream nor the file is btfuse's).
///
/// # Safety
/// As for `freopen`.
unsafe fn reopen(path: *const c_char, mode: *const c_char, fp: *mut FILE) -> Option<*mut FILE> {
    let (index, cookie, target_is_ours) = guarded(|| {
        let index = std_index(fp);
        let cookie = cookie_of(fp);
        // SAFETY: the caller's contract.
        let target = !path.is_null() && unsafe { paths::at_target(libc::AT_FDCWD, path) }.is_some();
        (index, cookie, target)
    })?;
    let std_is_ours =
        index.is_some_and(|i| guarded(|| descriptors::lookup(i as c_int).is_some()) == Some(true));
    if !target_is_ours && !std_is_ours && (cookie.is_none() || index.is_some()) {
        return None;
    }
    // SAFETY: libc's contract.
    let Some(flags) = (unsafe { c_bytes(mode) }).and_then(mode_flags) else {
        fail(libc::EINVAL);
        return Some(std::ptr::null_mut());
    };
    // SAFETY: this library's calls on the stream's descriptors, with libc's
    // contracts; the stream is the caller's, used by no other thread during the call.
    unsafe {
        if let Some(index) = index {
            let fd = index as c_int;
            libc::fflush(*std_slot(index));
            if path.is_null() {
                // A new mode for the same file: a btfuse stand-in is remade with it.
                return Some(remake_std_stream(index, mode));
            }
            if !target_is_ours {
                // From btfuse back to a kernel file: give the descriptor up (which puts the
                // original stream back), then let glibc reopen the original.
                fd::close(fd);
                let original = *std_slot(index);
                return Some(real::freopen()(path, mode, original));
            }
            let opened = path::open(path, flags, 0o666);
            if opened < 0 {
                // POSIX: the stream is closed even when the open fails.
                let e = errno();
                fd::close(fd);
                fail(e);
                return Some(std::ptr::null_mut());
            }
            if opened != fd {
                let cloexec = flags & libc::O_CLOEXEC;
                let moved = fd::dup3(opened, fd, cloexec);
                let e = errno();
                fd::close(opened);
                if moved < 0 {
                    fail(e);
                    return Some(std::ptr::null_mut());
                }
            }
            return Some(remake_std_stream(index, mode));
        }
        if let Some(cookie) = cookie {
            // A stream made here: its cookie moves to the new file (btfuse's or the kernel's:
            // the callbacks are this library's calls, which serve both).
            libc::fflush(fp);
            let old = (*cookie).fd;
            let reopened = if path.is_null() {
                let status = fd::fcntl(old, libc::F_GETFL, 0);
                let append = (flags & libc::O_APPEND) as libc::c_ulong;
                let status =
                    (status as libc::c_ulong & !(libc::O_APPEND as libc::c_ulong)) | append;
                fd::fcntl(old, libc::F_SETFL, status);
                old
            } else {
                if (*cookie).owns_fd {
                    fd::close(old);
                }
                let opened = path::open(path, flags, 0o666);
                if opened < 0 {
                    // Closed, as POSIX says; the stream stays allocated (as glibc's does) and
                    // fails with EBADF until it is closed.
                    let e = errno();
                    (*cookie).fd = -1;
                    (*cookie).owns_fd = false;
                    fail(e);
                    return Some(std::ptr::null_mut());
                }
                opened
            };
            (*cookie).fd = reopened;
            (*cookie).owns_fd = true;
            set_stream_access(fp, flags);
            libc::clearerr(fp);
            return Some(fp);
        }
        // A glibc stream over a kernel file cannot become a btfuse one in place (glibc does
        // its I/O with internal calls). With a mount at the prefix, glibc reopens it there,
        // through the kernel (the mount and the ring show one filesystem); without one it is
        // refused, the stream left as it was.
        if config::prefix_is_mounted() {
            return Some(real::freopen()(path, mode, fp));
        }
        fail(libc::EOPNOTSUPP);
        Some(std::ptr::null_mut())
    }
}

/// Interposed: a standard stream moved onto a btfuse file is this library's stream over the
/// same descriptor number; a stream made here moves its descriptor; other streams and files
/// are glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn freopen(
    path: *const c_char,
    mode: *const c_char,
    fp: *mut FILE,
) -> *mut FILE {
    // SAFETY: libc's contract, passed on.
    unsafe { reopen(path, mode, fp).unwrap_or_else(|| real::freopen()(path, mode, fp)) }
}

/// Interposed: as `freopen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn freopen64(
    path: *const c_char,
    mode: *const c_char,
    fp: *mut FILE,
) -> *mut FILE {
    // SAFETY: libc's contract, passed on.
    unsafe { reopen(path, mode, fp).unwrap_or_else(|| real::freopen64()(path, mode, fp)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_open_flags() {
        assert_eq!(mode_flags(b"r"), Some(libc::O_RDONLY));
        assert_eq!(mode_flags(b"rb+"), Some(libc::O_RDWR));
        assert_eq!(
            mode_flags(b"w"),
            Some(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
        );
        assert_eq!(
            mode_flags(b"a+e"),
            Some(libc::O_RDWR | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC)
        );
        assert_eq!(
            mode_flags(b"wx"),
            Some(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL)
        );
        assert_eq!(mode_flags(b"q"), None);
        assert_eq!(mode_flags(b""), None);
    }
}
