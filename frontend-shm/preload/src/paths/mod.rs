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

pub(crate) use directories::{CWD, cwd_desc, desc_path, dir_path, forget_path, remember_path};
pub(crate) use kernel_cwd::{forget_kernel_cwd, from_kernel_cwd};
pub(crate) use lexical::{c_bytes, join_lexically, ring_path, ring_path_in};

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

/// The btfuse target of `path` taken from `dirfd` (`AT_FDCWD` for plain path calls), or
/// `None` if the kernel's.
///
/// # Safety
/// `path` is null or a valid C string.
pub(crate) unsafe fn at_target<'a>(dirfd: c_int, path: *const c_char) -> Option<PathTarget<'a>> {
    // SAFETY: the caller's contract.
    let bytes: &'a [u8] = unsafe { c_bytes(path) }?;
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
        let path = ring_path(&from_kernel_cwd(bytes)?)?;
        return Some(PathTarget {
            client: connection::client()?,
            at: None,
            path: Cow::Owned(path),
        });
    }
    let entry = descriptors::lookup(dirfd)?;
    Some(PathTarget {
        client: connection::session()?,
        at: Some(entry.desc),
        path: Cow::Borrowed(bytes),
    })
}
