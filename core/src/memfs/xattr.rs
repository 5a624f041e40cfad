//! Extended attributes: names and namespaces, the per-inode list, and the blocks taken from the
//! store to charge their bytes against its capacity (see the module header's invariants).

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::data::store_err;
use super::perm::check;
use super::{MemFs, State};
use crate::block::{BlockNo, BlockStore};
use crate::error::{Errno, Result};
use crate::types::*;

/// A name stored in the engine.
pub(super) type Name = Box<[u8]>;

/// Extended attributes of one inode, in the order they were set.
#[derive(Default)]
pub(super) struct Xattrs {
    pub(super) entries: Vec<(Name, Box<[u8]>)>,
    /// Names plus values of `entries`.
    pub(super) bytes: usize,
    /// Blocks taken from the store to charge `bytes` against its capacity:
    /// `bytes.div_ceil(block_size)` of them. Never read or written; the bytes live in
    /// `entries`.
    pub(super) charge: Vec<BlockNo>,
}

/// Namespaces of extended attributes the engine stores.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum XattrNamespace {
    User,
    Trusted,
    Security,
}

/// Checks an attribute name and returns its namespace.
pub(super) fn xattr_namespace(name: &[u8]) -> Result<XattrNamespace> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(Errno::Range);
    }
    let (ns, prefix_len) = if name.starts_with(b"user.") {
        (XattrNamespace::User, 5)
    } else if name.starts_with(b"trusted.") {
        (XattrNamespace::Trusted, 8)
    } else if name.starts_with(b"security.") {
        (XattrNamespace::Security, 9)
    } else {
        return Err(Errno::NotSupported);
    };
    if name.len() == prefix_len {
        return Err(Errno::InvalidArgument);
    }
    Ok(ns)
}

/// Copies `value` to `buf` the way the xattr calls reply: length only for an empty buffer,
/// `ERANGE` for a short one.
pub(super) fn copy_out(value: &[u8], buf: &mut [u8]) -> Result<usize> {
    if buf.is_empty() {
        Ok(value.len())
    } else if buf.len() < value.len() {
        Err(Errno::Range)
    } else {
        buf[..value.len()].copy_from_slice(value);
        Ok(value.len())
    }
}

impl<B: BlockStore> MemFs<B> {
    /// Takes blocks from the store until `charge` holds `want` of them, all or nothing:
    /// `ENOSPC` (or the store's error) leaves `charge` as it was.
    pub(super) fn grow_charge(&self, charge: &mut Vec<BlockNo>, want: usize) -> Result<()> {
        let have = charge.len();
        if want <= have {
            return Ok(());
        }
        if (want - have) as u64 > self.store.free_blocks() {
            return Err(Errno::NoSpace);
        }
        charge
            .try_reserve(want - have)
            .map_err(|_| Errno::NoSpace)?;
        for _ in have..want {
            match self.store.allocate() {
                Ok(block) => charge.push(block),
                Err(e) => {
                    self.shrink_charge(charge, have);
                    return Err(store_err(e));
                }
            }
        }
        Ok(())
    }

    /// Gives the blocks of `charge` past the first `keep` back to the store.
    pub(super) fn shrink_charge(&self, charge: &mut Vec<BlockNo>, keep: usize) {
        for block in charge.drain(keep.min(charge.len())..) {
            let freed = self.store.free(block);
            debug_assert!(freed.is_ok(), "charged {block:?} was not allocated");
        }
    }

    /// Sets attribute `name` of `x` to `value` as `setxattr` does, after its permission
    /// checks: the per-inode budget, then the store's capacity. A failure changes nothing.
    pub(super) fn set_xattr_in(
        &self,
        x: &mut Xattrs,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()> {
        let pos = x.entries.iter().position(|(n, _)| &**n == name);
        match (mode, pos) {
            (XattrMode::Create, Some(_)) => return Err(Errno::Exists),
            (XattrMode::Replace, None) => return Err(Errno::NoData),
            _ => {}
        }
        let old = pos.map_or(0, |i| name.len() + x.entries[i].1.len());
        let bytes = x.bytes - old + name.len() + value.len();
        if bytes > self.config.max_xattr_bytes {
            return Err(Errno::NoSpace);
        }
        let blocks = bytes.div_ceil(self.store.block_size());
        self.grow_charge(&mut x.charge, blocks)?;
        match pos {
            Some(i) => x.entries[i].1 = value.into(),
            None => x.entries.push((name.into(), value.into())),
        }
        x.bytes = bytes;
        self.shrink_charge(&mut x.charge, blocks);
        Ok(())
    }

    pub(super) fn xattr_write_permission(
        cred: &Credentials,
        kind: FileType,
        st: &State,
        ns: XattrNamespace,
    ) -> Result<()> {
        match ns {
            XattrNamespace::Trusted | XattrNamespace::Security if !cred.is_root() => {
                Err(Errno::NotPermitted)
            }
            XattrNamespace::Trusted | XattrNamespace::Security => Ok(()),
            XattrNamespace::User => {
                if !matches!(kind, FileType::RegularFile | FileType::Directory) {
                    return Err(Errno::NotPermitted);
                }
                if kind == FileType::Directory
                    && st.perm & S_ISVTX != 0
                    && !cred.is_root()
                    && cred.uid != st.uid
                {
                    return Err(Errno::NotPermitted);
                }
                check(cred, kind, st, AccessMask::WRITE)
            }
        }
    }
}
