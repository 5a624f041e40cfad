//! Extended attributes: `getxattr`, `setxattr`, `listxattr`, `removexattr`, and their `l` and
//! `f` forms.

use std::ffi::CStr;

use btfuse_core::ring::{Request, Response, Target};
use btfuse_ring_client::Client;
use libc::{c_char, c_int, c_void, size_t, ssize_t};

use crate::connection::{PROTOCOL, call};
use crate::errno::fail;
use crate::outside::follow;
use crate::paths::{PathTarget, at_target, c_bytes};
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

/// `getxattr` and `lgetxattr` (`follow_link` false) of a btfuse path; `kernel` where the walk
/// leaves the tree.
///
/// # Safety
/// `path` and `name` are null or valid C strings; `buf` holds `size` bytes.
#[unsafe(link_section = ".text.hot.btfuse")]
unsafe fn path_get(
    path: *const c_char,
    name: *const c_char,
    buf: *mut c_void,
    size: size_t,
    follow_link: bool,
    kernel: impl FnMut(&CStr) -> ssize_t,
) -> Option<ssize_t> {
    // SAFETY: the caller's contract.
    let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
    // SAFETY: the caller's contract.
    let attr = unsafe { c_bytes(name) }?;
    let get =
        |t: &PathTarget<'_>| xattr_get(&t.client, xattr_path(t, follow_link), attr, buf, size);
    follow(t, get, kernel, |e| fail(e) as ssize_t)
}

/// `listxattr` and `llistxattr` (`follow_link` false) of a btfuse path; `kernel` where the
/// walk leaves the tree.
///
/// # Safety
/// `path` is null or a valid C string; `buf` holds `size` bytes.
unsafe fn path_list(
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    follow_link: bool,
    kernel: impl FnMut(&CStr) -> ssize_t,
) -> Option<ssize_t> {
    // SAFETY: the caller's contract.
    let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
    let list = |t: &PathTarget<'_>| xattr_list(&t.client, xattr_path(t, follow_link), buf, size);
    follow(t, list, kernel, |e| fail(e) as ssize_t)
}

/// `setxattr` and `lsetxattr` (`follow_link` false) of a btfuse path; `kernel` where the walk
/// leaves the tree.
///
/// # Safety
/// `path` and `name` are null or valid C strings; `value` holds `size` bytes.
unsafe fn path_set(
    path: *const c_char,
    name: *const c_char,
    (value, size): (*const c_void, size_t),
    flags: c_int,
    follow_link: bool,
    kernel: impl FnMut(&CStr) -> c_int,
) -> Option<c_int> {
    // SAFETY: the caller's contract.
    let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
    // SAFETY: the caller's contract.
    let attr = unsafe { c_bytes(name) }?;
    let Some(mode) = xattr_mode(flags) else {
        return Some(fail(libc::EINVAL));
    };
    // SAFETY: `value` holds `size` bytes.
    let bytes = unsafe { input(value, size) };
    let set = |t: &PathTarget<'_>| {
        let request = Request::SetXattr {
            target: xattr_path(t, follow_link),
            name: attr,
            value: bytes,
            mode,
        };
        expect_ok(&t.client, &request)
    };
    follow(t, set, kernel, fail)
}

/// `removexattr` and `lremovexattr` (`follow_link` false) of a btfuse path; `kernel` where
/// the walk leaves the tree.
///
/// # Safety
/// `path` and `name` are null or valid C strings.
unsafe fn path_remove(
    path: *const c_char,
    name: *const c_char,
    follow_link: bool,
    kernel: impl FnMut(&CStr) -> c_int,
) -> Option<c_int> {
    // SAFETY: the caller's contract.
    let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
    // SAFETY: the caller's contract.
    let attr = unsafe { c_bytes(name) }?;
    let remove = |t: &PathTarget<'_>| {
        let target = xattr_path(t, follow_link);
        expect_ok(&t.client, &Request::RemoveXattr { target, name: attr })
    };
    follow(t, remove, kernel, fail)
}

interpose! {
    /// Interposed.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn getxattr(
        path: *const c_char,
        name: *const c_char,
        buf: *mut c_void,
        size: size_t,
    ) -> ssize_t; real = libc_fn {
        // SAFETY: libc's call with an absolute path and the caller's buffer.
        let kernel = |host: &CStr| unsafe { libc_fn()(host.as_ptr(), name, buf, size) };
        // SAFETY: libc's contract.
        unsafe { path_get(path, name, buf, size, true, kernel) }
    }

    /// Interposed.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn lgetxattr(
        path: *const c_char,
        name: *const c_char,
        buf: *mut c_void,
        size: size_t,
    ) -> ssize_t; real = libc_fn {
        // SAFETY: libc's call with an absolute path and the caller's buffer.
        let kernel = |host: &CStr| unsafe { libc_fn()(host.as_ptr(), name, buf, size) };
        // SAFETY: libc's contract.
        unsafe { path_get(path, name, buf, size, false, kernel) }
    }

    /// Interposed.
    fn fgetxattr(fd: c_int, name: *const c_char, buf: *mut c_void, size: size_t) -> ssize_t {
        let (client, target) = xattr_fd(fd)?;
        // SAFETY: libc's contract.
        let name = unsafe { c_bytes(name) }?;
        Some(xattr_get(&client, target, name, buf, size))
    }

    /// Interposed.
    fn listxattr(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t; real = libc_fn {
        // SAFETY: libc's call with an absolute path and the caller's buffer.
        let kernel = |host: &CStr| unsafe { libc_fn()(host.as_ptr(), buf, size) };
        // SAFETY: libc's contract.
        unsafe { path_list(path, buf, size, true, kernel) }
    }

    /// Interposed.
    fn llistxattr(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t; real = libc_fn {
        // SAFETY: libc's call with an absolute path and the caller's buffer.
        let kernel = |host: &CStr| unsafe { libc_fn()(host.as_ptr(), buf, size) };
        // SAFETY: libc's contract.
        unsafe { path_list(path, buf, size, false, kernel) }
    }

    /// Interposed.
    fn flistxattr(fd: c_int, buf: *mut c_char, size: size_t) -> ssize_t {
        let (client, target) = xattr_fd(fd)?;
        Some(xattr_list(&client, target, buf, size))
    }

    /// Interposed.
    fn setxattr(
        path: *const c_char,
        name: *const c_char,
        value: *const c_void,
        size: size_t,
        flags: c_int,
    ) -> c_int; real = libc_fn {
        // SAFETY: libc's call with an absolute path and the caller's value.
        let kernel = |host: &CStr| unsafe { libc_fn()(host.as_ptr(), name, value, size, flags) };
        // SAFETY: libc's contract.
        unsafe { path_set(path, name, (value, size), flags, true, kernel) }
    }

    /// Interposed.
    fn lsetxattr(
        path: *const c_char,
        name: *const c_char,
        value: *const c_void,
        size: size_t,
        flags: c_int,
    ) -> c_int; real = libc_fn {
        // SAFETY: libc's call with an absolute path and the caller's value.
        let kernel = |host: &CStr| unsafe { libc_fn()(host.as_ptr(), name, value, size, flags) };
        // SAFETY: libc's contract.
        unsafe { path_set(path, name, (value, size), flags, false, kernel) }
    }

    /// Interposed.
    fn fsetxattr(
        fd: c_int,
        name: *const c_char,
        value: *const c_void,
        size: size_t,
        flags: c_int,
    ) -> c_int {
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
    }

    /// Interposed.
    fn removexattr(path: *const c_char, name: *const c_char) -> c_int; real = libc_fn {
        // SAFETY: libc's call with an absolute path.
        let kernel = |host: &CStr| unsafe { libc_fn()(host.as_ptr(), name) };
        // SAFETY: libc's contract.
        unsafe { path_remove(path, name, true, kernel) }
    }

    /// Interposed.
    fn lremovexattr(path: *const c_char, name: *const c_char) -> c_int; real = libc_fn {
        // SAFETY: libc's call with an absolute path.
        let kernel = |host: &CStr| unsafe { libc_fn()(host.as_ptr(), name) };
        // SAFETY: libc's contract.
        unsafe { path_remove(path, name, false, kernel) }
    }

    /// Interposed.
    fn fremovexattr(fd: c_int, name: *const c_char) -> c_int {
        let (client, target) = xattr_fd(fd)?;
        // SAFETY: libc's contract.
        let name = unsafe { c_bytes(name) }?;
        Some(expect_ok(&client, &Request::RemoveXattr { target, name }))
    }
}
