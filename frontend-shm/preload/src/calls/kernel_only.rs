//! Calls that hand a path to the kernel for an object only the kernel keeps: a Unix socket's
//! address (`bind`, `connect`), an inotify watch (`inotify_add_watch`), a file handle
//! (`name_to_handle_at`). With a mount at the prefix the kernel reaches a btfuse path through
//! it (a relative name from the working directory, which the kernel's follows, or the
//! mount's name for a btfuse directory descriptor); with the ring alone there is nothing for
//! the kernel to reach, and each answers the errno a filesystem without the object gives.

use libc::{c_char, c_int, sockaddr, socklen_t};

use super::node::refuse_kernel_node;
use crate::config;
use crate::connection::{PROTOCOL, call};
use crate::errno::fail;
use crate::guard::guarded;
use crate::paths::{PathTarget, at_target, kernel_name};
use crate::real;

/// What a call naming a btfuse path does.
enum Route {
    /// The kernel, with this name for the path (through the mount).
    Kernel(std::ffi::CString),
    /// Answered here.
    Done(c_int),
}

/// The route for btfuse path `path` from `dirfd`: the kernel's name for it when the prefix
/// is mounted, else `alone` (the answer with the ring alone). `None`: not btfuse's.
///
/// # Safety
/// `path` is null or a valid C string.
unsafe fn route(
    dirfd: c_int,
    path: *const c_char,
    alone: impl FnOnce(&PathTarget<'_>) -> c_int,
) -> Option<Route> {
    guarded(|| {
        // SAFETY: the caller's contract.
        let t = unsafe { at_target(dirfd, path) }?;
        if !config::prefix_is_mounted() {
            return Some(Route::Done(alone(&t)));
        }
        Some(match kernel_name(&t) {
            Some(name) => Route::Kernel(name),
            None => Route::Done(fail(libc::ENOENT)),
        })
    })
    .flatten()
}

/// The path of a Unix socket address, if it names one in the file system (not abstract,
/// not unnamed): a pointer into `addr`'s own bytes, NUL-terminated.
///
/// # Safety
/// `addr` is null or points at `len` readable bytes.
unsafe fn socket_path(addr: *const sockaddr, len: socklen_t) -> Option<Vec<u8>> {
    let header = std::mem::size_of::<libc::sa_family_t>();
    if addr.is_null() || (len as usize) <= header {
        return None;
    }
    // SAFETY: the caller's contract: `len` bytes, more than the family.
    if c_int::from(unsafe { (*addr).sa_family }) != libc::AF_UNIX {
        return None;
    }
    let max = (len as usize).min(std::mem::size_of::<libc::sockaddr_un>()) - header;
    // SAFETY: `max` bytes follow the family within `len`.
    let bytes = unsafe { std::slice::from_raw_parts(addr.cast::<u8>().add(header), max) };
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let mut path = bytes[..end].to_vec();
    if path.is_empty() {
        return None;
    }
    path.push(0);
    Some(path)
}

/// A Unix socket address naming `name`; `None` if it does not fit (`sun_path`'s 108 bytes).
fn address_of(name: &std::ffi::CStr) -> Option<(libc::sockaddr_un, socklen_t)> {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let bytes = name.to_bytes_with_nul();
    if bytes.len() > addr.sun_path.len() {
        return None;
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (to, &from) in addr.sun_path.iter_mut().zip(bytes) {
        *to = from as c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len();
    Some((addr, len as socklen_t))
}

/// `bind` and `connect` of a Unix socket at a btfuse path: `call` with the address the
/// kernel reaches it by, or with the ring alone `alone`'s answer.
///
/// # Safety
/// `addr` is null or points at `len` readable bytes.
unsafe fn socket_call(
    addr: *const sockaddr,
    len: socklen_t,
    alone: impl FnOnce(&PathTarget<'_>) -> c_int,
    call: impl FnOnce(*const sockaddr, socklen_t) -> c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    let Some(path) = (unsafe { socket_path(addr, len) }) else {
        return call(addr, len);
    };
    // SAFETY: `path` is NUL-terminated.
    match unsafe { route(libc::AT_FDCWD, path.as_ptr().cast(), alone) } {
        None => call(addr, len),
        Some(Route::Done(rc)) => rc,
        Some(Route::Kernel(name)) => match address_of(&name) {
            Some((kernel_addr, kernel_len)) => call((&raw const kernel_addr).cast(), kernel_len),
            None => fail(libc::ENAMETOOLONG),
        },
    }
}

/// Interposed: a socket bound at a btfuse path is made by the kernel through the mount; with
/// the ring alone, `EPERM` (the file system cannot hold a socket) after Linux's earlier
/// checks (`EADDRINUSE` for an existing name, a missing or non-directory parent).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let alone = |t: &PathTarget<'_>| {
        let rc = refuse_kernel_node(t);
        if crate::errno::errno() == libc::EEXIST {
            return fail(libc::EADDRINUSE);
        }
        rc
    };
    // SAFETY: libc's contract, passed on with the kernel's address.
    unsafe { socket_call(addr, len, alone, |a, l| real::bind()(fd, a, l)) }
}

/// Interposed: with the ring alone no socket listens at a btfuse path: `ECONNREFUSED` where
/// something has the name, else the walk's errno (`ENOENT`), as Linux answers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let alone = |t: &PathTarget<'_>| {
        let target = btfuse_core::ring::Target::Path {
            at: t.at,
            path: &t.path,
            follow: true,
        };
        let request = btfuse_core::ring::Request::Stat { target };
        match call(&t.client, &request, |r| match r {
            btfuse_core::ring::Response::Attr(_) => Ok(()),
            _ => Err(PROTOCOL),
        }) {
            Ok(()) => fail(libc::ECONNREFUSED),
            Err(e) => fail(e),
        }
    };
    // SAFETY: libc's contract, passed on with the kernel's address.
    unsafe { socket_call(addr, len, alone, |a, l| real::connect()(fd, a, l)) }
}

/// Interposed: watched through the mount (the kernel reports what passes through it; a
/// change made over the ring is not an event there); with the ring alone, `EOPNOTSUPP`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int {
    // SAFETY: libc's contract.
    match unsafe { route(libc::AT_FDCWD, path, |_| fail(libc::EOPNOTSUPP)) } {
        // SAFETY: libc's contract, passed on.
        None => unsafe { real::inotify_add_watch()(fd, path, mask) },
        Some(Route::Done(rc)) => rc,
        // SAFETY: the kernel's name for the same path.
        Some(Route::Kernel(name)) => unsafe { real::inotify_add_watch()(fd, name.as_ptr(), mask) },
    }
}

/// Interposed: the handle of a btfuse path is the mount's; with the ring alone,
/// `EOPNOTSUPP` (the file system cannot give one). A btfuse descriptor named by
/// `AT_EMPTY_PATH` is a directory's through the mount by its path, else `EOPNOTSUPP`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn name_to_handle_at(
    dirfd: c_int,
    path: *const c_char,
    handle: *mut libc::c_void,
    mount_id: *mut c_int,
    flags: c_int,
) -> c_int {
    let call = |dirfd: c_int, path: *const c_char, flags: c_int| {
        // SAFETY: libc's contract, passed on.
        unsafe { real::name_to_handle_at()(dirfd, path, handle, mount_id, flags) }
    };
    // SAFETY: libc's contract.
    let empty = unsafe { crate::paths::c_bytes(path) }.is_some_and(<[u8]>::is_empty);
    if empty && flags & libc::AT_EMPTY_PATH != 0 {
        let own = guarded(|| {
            crate::descriptors::lookup(dirfd)?;
            let path = crate::paths::dir_path(dirfd)?;
            let config = config::config().filter(|_| config::prefix_is_mounted())?;
            let mut full = config.prefix().to_vec();
            full.extend_from_slice(&path);
            std::ffi::CString::new(full).ok()
        });
        return match own {
            None => call(dirfd, path, flags),
            Some(Some(name)) => call(libc::AT_FDCWD, name.as_ptr(), flags & !libc::AT_EMPTY_PATH),
            Some(None) if crate::descriptors::lookup(dirfd).is_some() => fail(libc::EOPNOTSUPP),
            Some(None) => call(dirfd, path, flags),
        };
    }
    // SAFETY: libc's contract.
    match unsafe { route(dirfd, path, |_| fail(libc::EOPNOTSUPP)) } {
        None => call(dirfd, path, flags),
        Some(Route::Done(rc)) => rc,
        Some(Route::Kernel(name)) => call(libc::AT_FDCWD, name.as_ptr(), flags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_round_trip() {
        let (addr, len) = address_of(c"/a/b").unwrap();
        // SAFETY: `addr` holds `len` bytes.
        let path = unsafe { socket_path((&raw const addr).cast(), len) };
        assert_eq!(path.as_deref(), Some(&b"/a/b\0"[..]));
        let long = std::ffi::CString::new("x".repeat(108)).unwrap();
        assert!(address_of(&long).is_none());
        // An abstract address (leading NUL) names nothing in the file system.
        let mut abstract_addr = addr;
        abstract_addr.sun_path[0] = 0;
        // SAFETY: as above.
        assert!(unsafe { socket_path((&raw const abstract_addr).cast(), len) }.is_none());
    }
}
