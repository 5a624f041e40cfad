//! Paths: what a path argument names ([`at_target`]: a btfuse path from the served root, from
//! a btfuse directory, or the kernel's), read with the [`lexical`] helpers from the prefix, the
//! btfuse working directory or the kernel's ([`kernel_cwd`]), and the paths of btfuse
//! [`directories`] this process opened.

use std::borrow::Cow;

use btfuse_ring_client::Client;
use libc::{c_char, c_int};

use crate::connection;
use crate::descriptors;

mod directories;
mod kernel_cwd;
mod lexical;
mod mounts;

pub(crate) use directories::{CWD, cwd_desc, desc_path, dir_path, forget_path, remember_path};
pub(crate) use kernel_cwd::{forget_kernel_cwd, from_kernel_cwd, kernel_cwd_is};
pub(crate) use lexical::{c_bytes, join_lexically, ring_path, ring_path_in, user_pointer};
pub(crate) use mounts::{
    namespace_changed, watch_fd as mount_watch_fd, watch_gone as mount_watch_gone,
};

/// What a path argument names. The path is the caller's own bytes where it can be (no copy on
/// the way to the ring).
pub(crate) struct PathTarget<'a> {
    pub(crate) client: Client,
    pub(crate) at: Option<u32>,
    pub(crate) path: Cow<'a, [u8]>,
}

impl PathTarget<'_> {
    /// The same target, owning its path.
    pub(crate) fn into_owned(self) -> PathTarget<'static> {
        PathTarget {
            client: self.client,
            at: self.at,
            path: Cow::Owned(self.path.into_owned()),
        }
    }
}

/// The kernel's name for btfuse target `t`, for a call only the kernel can make (a fifo, a
/// socket, a device node) through the mount at the prefix: from the prefix, or relative to
/// the working directory (the kernel's follows the btfuse one while there is a mount), or
/// from the path of the directory `t` starts from.
pub(crate) fn kernel_name(t: &PathTarget<'_>) -> Option<std::ffi::CString> {
    let config = crate::config::config()?;
    let mut full = Vec::new();
    match t.at {
        Some(at) if Some(at) == cwd_desc() => {}
        Some(at) => {
            full.extend_from_slice(config.prefix());
            full.extend_from_slice(&desc_path(at)?);
            full.push(b'/');
        }
        None => full.extend_from_slice(config.prefix()),
    }
    full.extend_from_slice(&t.path);
    std::ffi::CString::new(full).ok()
}

/// Whether another filesystem is mounted somewhere below the prefix (see [`mounts`]).
pub(crate) fn mounts_below_prefix() -> bool {
    crate::config::config().is_some_and(|config| mounts::mounted_below(config.prefix()))
}

/// Without a mount, the btfuse target of relative name `rel` taken from kernel directory
/// `dirfd` (`AT_FDCWD`: the kernel's working directory) when the name leads into the prefix
/// (`bt/x` from the prefix's parent, as `rsync` names files from a descriptor of `/`): the
/// kernel has nothing there. Only names with a component spelled as the prefix's last one
/// can, so others cost one scan. With a mount the kernel walks into it itself.
#[unsafe(link_section = ".text.hot.btfuse")]
fn through_kernel_directory<'a>(dirfd: c_int, rel: &[u8]) -> Option<PathTarget<'a>> {
    let config = crate::config::config()?;
    let last = config.prefix().rsplit(|&b| b == b'/').next()?;
    if last.is_empty() || !rel.split(|&b| b == b'/').any(|c| c == last) {
        return None;
    }
    if crate::config::prefix_is_mounted() {
        return None;
    }
    let dir = kernel_directory(dirfd)?;
    let full = join_lexically(&dir, rel)?;
    let path = ring_path(&full)?;
    Some(PathTarget {
        client: connection::client()?,
        at: None,
        path: Cow::Owned(path),
    })
}

/// The kernel's path of directory descriptor `dirfd` (`AT_FDCWD`: the working directory).
fn kernel_directory(dirfd: c_int) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    let len = if dirfd == libc::AT_FDCWD {
        // SAFETY: `buf` holds PATH_MAX bytes.
        let got = unsafe { crate::real::getcwd()(buf.as_mut_ptr().cast(), buf.len()) };
        if got.is_null() {
            return None;
        }
        buf.iter().position(|&b| b == 0)?
    } else {
        let link = std::ffi::CString::new(format!("/proc/self/fd/{dirfd}")).ok()?;
        // SAFETY: `link` is a C string, `buf` holds PATH_MAX bytes.
        let n =
            unsafe { crate::real::readlink()(link.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).ok().filter(|&n| n < buf.len())?
    };
    buf.truncate(len);
    (buf.first() == Some(&b'/')).then_some(buf)
}

/// The btfuse target of `path` taken from `dirfd` (`AT_FDCWD` for plain path calls), or
/// `None` if the kernel's.
///
/// # Safety
/// `path` is null or a valid C string.
#[unsafe(link_section = ".text.hot.btfuse")]
pub(crate) unsafe fn at_target<'a>(dirfd: c_int, path: *const c_char) -> Option<PathTarget<'a>> {
    // SAFETY: the caller's contract.
    let bytes: &'a [u8] = unsafe { c_bytes(path) }?;
    // The kernel refuses a path of `PATH_MAX` bytes or more before it resolves anything
    // (`ENAMETOOLONG`), whatever it names; the server sees it without the prefix.
    if bytes.len() >= libc::PATH_MAX as usize {
        return None;
    }
    if bytes.first() == Some(&b'/') {
        let path = ring_path_in(bytes)?;
        return Some(PathTarget {
            client: connection::client()?,
            at: None,
            path,
        });
    }
    if bytes.is_empty() {
        return None;
    }
    if dirfd == libc::AT_FDCWD {
        if let Some(cwd) = cwd_desc() {
            return Some(PathTarget {
                client: connection::session()?,
                at: Some(cwd),
                path: Cow::Borrowed(bytes),
            });
        }
        // The kernel's working directory may be inside the mount.
        let Some(full) = from_kernel_cwd(bytes) else {
            return through_kernel_directory(dirfd, bytes);
        };
        let path = ring_path(&full)?;
        return Some(PathTarget {
            client: connection::client()?,
            at: None,
            path: Cow::Owned(path),
        });
    }
    let Some(entry) = descriptors::lookup(dirfd) else {
        return through_kernel_directory(dirfd, bytes);
    };
    Some(PathTarget {
        client: connection::session()?,
        at: Some(entry.desc),
        path: Cow::Borrowed(bytes),
    })
}
