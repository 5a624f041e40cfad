//! Extended attributes: `getxattr`, `setxattr`, `listxattr`, `removexattr`, and their `l` and
//! `f` forms.

use std::ffi::CStr;

use btfuse_core::ring::{Request, Response, Target};
use btfuse_shm::Client;
use libc::{c_char, c_int, c_void, size_t, ssize_t};

use crate::connection::{PROTOCOL, call};
use crate::errno::fail;
use crate::guard::guarded;
use crate::outside::follow;
use crate::paths::{PathTarget, at_target, c_bytes};
use crate::real;
use crate::serve::{descriptor, expect_ok, input};

/// The btfuse description behind `fd` as an extended-attribute call's target.
fn xattr_fd(fd: c_int) -> Option<(Client, Target<'static>)> {
    descriptor(fd).map(|(entry, client)| (client, Target::Fd(entry.desc)))
}

/// A btfuse path as an extended-attribute call's target (`follow`: not an `l` call).
fn xattr_path<'a>(t: &'a PathTarget<'_>, follow: bool) -> Target<'a> {
    Target::Path {
        at: t.at,
        path: &t.path,
        follow,
    }
}

/// `getxattr` and relatives: the value into `buf`, or its size when `size` is 0.
fn xattr_get(
    client: &Client,
    target: Target<'_>,
    name: &[u8],
    buf: *mut c_void,
    size: size_t,
) -> ssize_t {
    let max = size.min(btfuse_core::XATTR_SIZE_MAX) as u32;
    let request = Request::GetXattr { target, name, max };
    call(client, &request, |r| match r {
        Response::Size(n) => Ok(n as ssize_t),
        Response::Data(data) if data.len() <= size => {
            // SAFETY: `buf` holds `size` bytes.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.cast::<u8>(), data.len()) };
            Ok(data.len() as ssize_t)
        }
        _ => Err(PROTOCOL),
    })
    .unwrap_or_else(|e| fail(e) as ssize_t)
}

fn xattr_list(client: &Client, target: Target<'_>, buf: *mut c_char, size: size_t) -> ssize_t {
    let max = size.min(btfuse_core::XATTR_SIZE_MAX) as u32;
    call(client, &Request::ListXattr { target, max }, |r| match r {
        Response::Size(n) => Ok(n as ssize_t),
        Response::Data(data) if data.len() <= size => {
            // SAFETY: `buf` holds `size` bytes.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.cast::<u8>(), data.len()) };
            Ok(data.len() as ssize_t)
        }
        _ => Err(PROTOCOL),
    })
    .unwrap_or_else(|e| fail(e) as ssize_t)
}

fn xattr_mode(flags: c_int) -> Option<btfuse_core::XattrMode> {
    use btfuse_core::XattrMode;
    match flags {
        0 => Some(XattrMode::Set),
        libc::XATTR_CREATE => Some(XattrMode::Create),
        libc::XATTR_REPLACE => Some(XattrMode::Replace),
        _ => None,
    }
}

macro_rules! getxattr_fn {
    ($name:ident, $follow:expr) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            name: *const c_char,
            buf: *mut c_void,
            size: size_t,
        ) -> ssize_t {
            let served = guarded(|| {
                // SAFETY: libc's contract.
                let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
                // SAFETY: libc's contract.
                let attr = unsafe { c_bytes(name) }?;
                let get = |t: &PathTarget<'_>| {
                    xattr_get(&t.client, xattr_path(t, $follow), attr, buf, size)
                };
                // SAFETY: libc's call with an absolute path and the caller's buffer.
                let kernel = |host: &CStr| unsafe { real::$name()(host.as_ptr(), name, buf, size) };
                follow(t, get, kernel, |e| fail(e) as ssize_t)
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(path, name, buf, size) })
        }
    };
}
getxattr_fn!(getxattr, true);
getxattr_fn!(lgetxattr, false);

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fgetxattr(
    fd: c_int,
    name: *const c_char,
    buf: *mut c_void,
    size: size_t,
) -> ssize_t {
    let served = guarded(|| {
        let (client, target) = xattr_fd(fd)?;
        // SAFETY: libc's contract.
        let name = unsafe { c_bytes(name) }?;
        Some(xattr_get(&client, target, name, buf, size))
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::fgetxattr()(fd, name, buf, size) })
}

macro_rules! listxattr_fn {
    ($name:ident, $follow:expr) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            buf: *mut c_char,
            size: size_t,
        ) -> ssize_t {
            let served = guarded(|| {
                // SAFETY: libc's contract.
                let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
                let list =
                    |t: &PathTarget<'_>| xattr_list(&t.client, xattr_path(t, $follow), buf, size);
                // SAFETY: libc's call with an absolute path and the caller's buffer.
                let kernel = |host: &CStr| unsafe { real::$name()(host.as_ptr(), buf, size) };
                follow(t, list, kernel, |e| fail(e) as ssize_t)
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(path, buf, size) })
        }
    };
}
listxattr_fn!(listxattr, true);
listxattr_fn!(llistxattr, false);

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flistxattr(fd: c_int, buf: *mut c_char, size: size_t) -> ssize_t {
    let served = guarded(|| {
        let (client, target) = xattr_fd(fd)?;
        Some(xattr_list(&client, target, buf, size))
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::flistxattr()(fd, buf, size) })
}

macro_rules! setxattr_fn {
    ($name:ident, $follow:expr) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            name: *const c_char,
            value: *const c_void,
            size: size_t,
            flags: c_int,
        ) -> c_int {
            let served = guarded(|| {
                // SAFETY: libc's contract.
                let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
                // SAFETY: libc's contract.
                let attr = unsafe { c_bytes(name) }?;
                let Some(mode) = xattr_mode(flags) else {
                    return Some(fail(libc::EINVAL));
                };
                // SAFETY: `value` holds `size` bytes.
                let bytes = unsafe { input(value, size) };
                let set = |t: &PathTarget<'_>| {
                    let request = Request::SetXattr {
                        target: xattr_path(t, $follow),
                        name: attr,
                        value: bytes,
                        mode,
                    };
                    expect_ok(&t.client, &request)
                };
                let kernel = |host: &CStr| {
                    // SAFETY: libc's call with an absolute path and the caller's value.
                    unsafe { real::$name()(host.as_ptr(), name, value, size, flags) }
                };
                follow(t, set, kernel, fail)
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(path, name, value, size, flags) })
        }
    };
}
setxattr_fn!(setxattr, true);
setxattr_fn!(lsetxattr, false);

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fsetxattr(
    fd: c_int,
    name: *const c_char,
    value: *const c_void,
    size: size_t,
    flags: c_int,
) -> c_int {
    let served = guarded(|| {
        let (client, target) = xattr_fd(fd)?;
        // SAFETY: libc's contract.
        let name = unsafe { c_bytes(name) }?;
        let Some(mode) = xattr_mode(flags) else {
            return Some(fail(libc::EINVAL));
        };
        // SAFETY: `value` holds `size` bytes.
        let value = unsafe { input(value, size) };
        Some(expect_ok(
            &client,
            &Request::SetXattr {
                target,
                name,
                value,
                mode,
            },
        ))
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::fsetxattr()(fd, name, value, size, flags) })
}

macro_rules! removexattr_fn {
    ($name:ident, $follow:expr) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, name: *const c_char) -> c_int {
            let served = guarded(|| {
                // SAFETY: libc's contract.
                let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
                // SAFETY: libc's contract.
                let attr = unsafe { c_bytes(name) }?;
                let remove = |t: &PathTarget<'_>| {
                    let target = xattr_path(t, $follow);
                    expect_ok(&t.client, &Request::RemoveXattr { target, name: attr })
                };
                // SAFETY: libc's call with an absolute path.
                let kernel = |host: &CStr| unsafe { real::$name()(host.as_ptr(), name) };
                follow(t, remove, kernel, fail)
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(path, name) })
        }
    };
}
removexattr_fn!(removexattr, true);
removexattr_fn!(lremovexattr, false);

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fremovexattr(fd: c_int, name: *const c_char) -> c_int {
    let served = guarded(|| {
        let (client, target) = xattr_fd(fd)?;
        // SAFETY: libc's contract.
        let name = unsafe { c_bytes(name) }?;
        Some(expect_ok(&client, &Request::RemoveXattr { target, name }))
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::fremovexattr()(fd, name) })
}
