//! Extended attributes in the model: name checks, namespaces, who may change them, and the
//! blocks their bytes are charged as.

use btfuse_core::{AccessMask, Credentials, Errno, FileType, Result, S_ISVTX, XATTR_NAME_MAX};

use super::perm::permits;
use super::{Model, Node};

/// An xattr namespace, from the name's prefix.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Namespace {
    User,
    Trusted,
    Security,
}

impl Model {
    /// The blocks an inode's extended attributes take from the store: their names and values
    /// rounded up to whole blocks. tmpfs charges these bytes against its inode space instead;
    /// the engine charges them against the size, so that `-o size` bounds them.
    pub(super) fn xattr_blocks(&self, xattrs: &[(Vec<u8>, Vec<u8>)]) -> u64 {
        let bytes: usize = xattrs.iter().map(|(n, v)| n.len() + v.len()).sum();
        (bytes as u64).div_ceil(self.block_size)
    }
}

/// Checks an xattr name: its length, then its namespace.
pub(super) fn xattr_length(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(Errno::Range);
    }
    Ok(())
}

/// The namespace of an xattr name. A bare prefix is `EINVAL` in every namespace: the page says
/// so for `user.`, and Linux's `xattr_resolve_name` does it for all prefix handlers.
pub(super) fn xattr_namespace(name: &[u8]) -> Result<Namespace> {
    let (ns, rest) = if let Some(rest) = name.strip_prefix(b"user.") {
        (Namespace::User, rest)
    } else if let Some(rest) = name.strip_prefix(b"trusted.") {
        (Namespace::Trusted, rest)
    } else if let Some(rest) = name.strip_prefix(b"security.") {
        (Namespace::Security, rest)
    } else {
        return Err(Errno::NotSupported);
    };
    if rest.is_empty() {
        return Err(Errno::InvalidArgument);
    }
    Ok(ns)
}

pub(super) fn file_or_dir(node: &Node) -> bool {
    matches!(node.kind, FileType::RegularFile | FileType::Directory)
}

/// The checks `setxattr` and `removexattr` share after the name checks.
pub(super) fn xattr_may_change(node: &Node, cred: &Credentials, ns: Namespace) -> Result<()> {
    match ns {
        Namespace::Trusted | Namespace::Security => {
            if !cred.is_root() {
                return Err(Errno::NotPermitted);
            }
        }
        Namespace::User => {
            if !file_or_dir(node) {
                return Err(Errno::NotPermitted);
            }
            if node.kind == FileType::Directory
                && node.perm & S_ISVTX != 0
                && !cred.is_root()
                && cred.uid != node.uid
            {
                return Err(Errno::NotPermitted);
            }
            if !permits(node, cred, AccessMask::WRITE) {
                return Err(Errno::PermissionDenied);
            }
        }
    }
    Ok(())
}

/// Copies `data` into `buf` as `getxattr`/`listxattr` do.
pub(super) fn copy_out(data: &[u8], buf: &mut [u8]) -> Result<usize> {
    if buf.is_empty() {
        return Ok(data.len());
    }
    if buf.len() < data.len() {
        return Err(Errno::Range);
    }
    buf[..data.len()].copy_from_slice(data);
    Ok(data.len())
}
