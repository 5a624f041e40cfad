//! Special files: `mknod`, `mknodat`, `mkfifo`, `mkfifoat` and glibc's old `__xmknod` entry
//! points. A regular file is created over the ring; a fifo, a socket or a device node is a
//! kernel object, made by the kernel through the mount at the prefix, or, with the ring
//! alone, refused with `EPERM` (Linux's answer for a filesystem that cannot hold that type),
//! after the checks that come first on Linux (`EEXIST`, a missing or non-directory parent).

use std::ffi::CStr;

use btfuse_core::ring::{self, Request, Response, Target};
use libc::{c_char, c_int, dev_t, mode_t};

use super::path::current_umask;
use crate::config;
use crate::connection::{PROTOCOL, call, transport_failed};
use crate::errno::fail;
use crate::outside::split_last;
use crate::paths::{PathTarget, kernel_name};
use crate::real;
use crate::serve::simple;

/// Creates regular file `t` as `mknod` does: `EEXIST` if the name exists (a dangling link
/// included), nothing opened afterwards.
fn create_regular(t: &PathTarget<'_>, mode: mode_t) -> c_int {
    let flags = ring::OpenOptions::from_linux(libc::O_CREAT | libc::O_EXCL | libc::O_RDONLY);
    let request = Request::Open {
        at: t.at,
        path: &t.path,
        flags,
        mode: mode & 0o7777 & !current_umask(),
        prefetch: 0,
        known_ino: 0,
        known_version: 0,
    };
    let opened = call(&t.client, &request, |r| match r {
        Response::Opened { fd, .. } => Ok(fd),
        _ => Err(PROTOCOL),
    });
    match opened {
        Ok(desc) => {
            if let (Err(e), ()) = t.client.post_then(&Request::Close { fd: desc }, || ()) {
                transport_failed(&e);
            }
            0
        }
        Err(e) => fail(e),
    }
}

/// With the ring alone: the errno Linux gives before it finds the filesystem cannot hold the
/// node (the name exists, its directory is missing or not one), else `EPERM`.
pub(super) fn refuse_kernel_node(t: &PathTarget<'_>) -> c_int {
    let stat = |path: &[u8], follow: bool| {
        let target = Target::Path {
            at: t.at,
            path,
            follow,
        };
        call(&t.client, &Request::Stat { target }, |r| match r {
            Response::Attr(attr) => Ok(attr),
            _ => Err(PROTOCOL),
        })
    };
    match stat(&t.path, false) {
        Ok(_) => return fail(libc::EEXIST),
        Err(libc::ENOENT) => {}
        Err(e) => return fail(e),
    }
    let (dir, _) = split_last(&t.path);
    match stat(dir, true) {
        Ok(attr) if attr.kind != btfuse_core::FileType::Directory => fail(libc::ENOTDIR),
        Ok(_) => fail(libc::EPERM),
        Err(e) => fail(e),
    }
}

/// `mknodat` for btfuse paths.
///
/// # Safety
/// As for `mknodat(2)`.
unsafe fn mknod_at(dirfd: c_int, path: *const c_char, mode: mode_t, dev: dev_t) -> Option<c_int> {
    let serve = |t: &PathTarget<'_>| match mode & libc::S_IFMT {
        0 | libc::S_IFREG => create_regular(t, mode),
        libc::S_IFDIR => fail(libc::EPERM),
        libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK => {
            if !config::prefix_is_mounted() {
                return refuse_kernel_node(t);
            }
            match kernel_name(t) {
                // SAFETY: libc's `mknodat` with the kernel's name for the node.
                Some(name) => unsafe { real::mknodat()(libc::AT_FDCWD, name.as_ptr(), mode, dev) },
                None => fail(libc::ENOENT),
            }
        }
        _ => fail(libc::EINVAL),
    };
    // SAFETY: libc's `mknodat` with an absolute path.
    let kernel = |host: &CStr| unsafe { real::mknodat()(libc::AT_FDCWD, host.as_ptr(), mode, dev) };
    // SAFETY: libc's contract.
    unsafe { simple(dirfd, path, serve, kernel) }
}

interpose! {
    /// Interposed.
    fn mknodat(dirfd: c_int, path: *const c_char, mode: mode_t, dev: dev_t) -> c_int {
        // SAFETY: libc's contract.
        unsafe { mknod_at(dirfd, path, mode, dev) }
    }

    /// Interposed.
    fn mknod(path: *const c_char, mode: mode_t, dev: dev_t) -> c_int {
        // SAFETY: libc's contract.
        unsafe { mknod_at(libc::AT_FDCWD, path, mode, dev) }
    }

    /// Interposed.
    fn mkfifoat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
        // SAFETY: libc's contract.
        unsafe { mknod_at(dirfd, path, (mode & 0o7777) | libc::S_IFIFO, 0) }
    }

    /// Interposed.
    fn mkfifo(path: *const c_char, mode: mode_t) -> c_int {
        // SAFETY: libc's contract.
        unsafe { mknod_at(libc::AT_FDCWD, path, (mode & 0o7777) | libc::S_IFIFO, 0) }
    }
}

/// glibc's `_MKNOD_VER_LINUX`, the only version its old entry points accept.
const MKNOD_VERSION: c_int = 0;

/// Interposed: glibc's old entry point for `mknod` (the version first, the device by
/// pointer).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __xmknod(
    version: c_int,
    path: *const c_char,
    mode: mode_t,
    dev: *const dev_t,
) -> c_int {
    if version != MKNOD_VERSION || dev.is_null() {
        return fail(libc::EINVAL);
    }
    // SAFETY: libc's contract: `dev` points at the device number.
    unsafe { mknod(path, mode, *dev) }
}

/// Interposed: glibc's old entry point for `mknodat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __xmknodat(
    version: c_int,
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    dev: *const dev_t,
) -> c_int {
    if version != MKNOD_VERSION || dev.is_null() {
        return fail(libc::EINVAL);
    }
    // SAFETY: libc's contract: `dev` points at the device number.
    unsafe { mknodat(dirfd, path, mode, *dev) }
}
