//! Names in directories: the rules a name obeys, lookup, the ancestors a rename checks, and
//! the path every new entry takes (checks on the parent, the inode budget, the entry).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use spin::RwLockWriteGuard;

use super::MemFs;
use super::inode::{Inode, NewInode, State};
use super::perm::check;
use crate::block::BlockStore;
use crate::error::{Errno, Result};
use crate::types::*;

pub(super) fn is_dot_or_dotdot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// A name for one directory entry: not empty, no `/` or NUL, at most `NAME_MAX` bytes.
pub(super) fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.iter().any(|&b| b == b'/' || b == 0) {
        Err(Errno::InvalidArgument)
    } else if name.len() > NAME_MAX {
        Err(Errno::NameTooLong)
    } else {
        Ok(())
    }
}

/// A directory removed while still referenced (nlink 0) takes no new entries (Linux
/// `IS_DEADDIR`).
pub(super) fn check_not_removed(dir: &State) -> Result<()> {
    if dir.nlink == 0 {
        Err(Errno::NotFound)
    } else {
        Ok(())
    }
}

impl<B: BlockStore> MemFs<B> {
    /// `ino` and the directories above it, up to the root. Takes each directory's lock alone,
    /// for reading: the caller holds `rename_lock` (so the answer stays true) and no inode lock.
    pub(super) fn ancestors(&self, mut ino: Ino) -> Vec<Ino> {
        let mut chain = alloc::vec![ino];
        while ino != Ino::ROOT {
            let Ok(inode) = self.inode(ino) else { break };
            let Ok(parent) = inode.state.read().dir().map(|d| d.parent) else {
                break;
            };
            if parent == ino {
                break;
            }
            ino = parent;
            chain.push(ino);
        }
        chain
    }

    /// The checks every entry-creating call makes on its parent, in order: directory, live,
    /// searchable, valid name, name free; then returns the locked parent.
    pub(super) fn lock_parent_for_create<'a>(
        &self,
        cred: &Credentials,
        parent: &'a Inode,
        name: &[u8],
    ) -> Result<RwLockWriteGuard<'a, State>> {
        if parent.kind != FileType::Directory {
            return Err(Errno::NotADirectory);
        }
        let pst = parent.state.write();
        if pst.freed {
            return Err(Errno::NotFound);
        }
        check(cred, parent.kind, &pst, AccessMask::EXECUTE)?;
        check_name(name)?;
        if is_dot_or_dotdot(name) {
            return Err(Errno::Exists);
        }
        check_not_removed(&pst)?;
        if pst.dir()?.get(&self.hasher, name).is_some() {
            return Err(Errno::Exists);
        }
        Ok(pst)
    }

    /// Creates an inode named `name` in the locked parent `parent`: budget, entry, parent
    /// times.
    pub(super) fn create_locked(
        &self,
        cred: &Credentials,
        parent: Ino,
        pst: &mut State,
        name: &[u8],
        new: NewInode,
    ) -> Result<Arc<Inode>> {
        let NewInode { kind, perm, body } = new;
        if pst.nlink == 0 {
            return Err(Errno::NotFound);
        }
        if kind == FileType::Directory && pst.nlink >= LINK_MAX {
            return Err(Errno::TooManyLinks);
        }
        self.charge_inode()?;
        let now = self.now();
        let state = self.initial_state(cred, pst, kind, perm, body, now);
        let inode = self.new_inode(kind, state);
        let _listing = self.content_change(parent);
        if let Err(e) = pst.dir_mut()?.insert(&self.hasher, name, &inode) {
            inode.lookups.store(0, Ordering::Release);
            inode.state.write().nlink = 0;
            self.release_if_unused(&inode);
            return Err(e);
        }
        if kind == FileType::Directory {
            pst.nlink += 1;
        }
        pst.touch_modified(now);
        Ok(inode)
    }

    pub(super) fn lookup_inner(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        count: bool,
    ) -> Result<Attr> {
        let held;
        let p: &Inode = if parent == Ino::ROOT {
            &self.root
        } else {
            held = self.inode(parent)?;
            &held
        };
        if p.kind != FileType::Directory {
            if count && name == b"." {
                // The kernel's export lookup of an inode it has forgotten (`fuse_get_dentry`
                // asks for "." in the inode itself, whatever its type): the inode, counted.
                let st = p.state.read();
                if st.freed {
                    return Err(Errno::NotFound);
                }
                p.lookups.fetch_add(1, Ordering::AcqRel);
                return Ok(self.attr_of(p, &st));
            }
            return Err(Errno::NotADirectory);
        }
        let pst = p.state.read();
        if pst.freed {
            return Err(Errno::NotFound);
        }
        check(cred, p.kind, &pst, AccessMask::EXECUTE)?;
        if name == b"." {
            if count {
                p.lookups.fetch_add(1, Ordering::AcqRel);
            }
            return Ok(self.attr_of(p, &pst));
        }
        if name == b".." {
            let up = pst.dir()?.parent;
            drop(pst);
            let up = self.inode(up)?;
            if count {
                up.lookups.fetch_add(1, Ordering::AcqRel);
            }
            let ust = up.state.read();
            return Ok(self.attr_of(&up, &ust));
        }
        check_name(name)?;
        let child = &pst
            .dir()?
            .get(&self.hasher, name)
            .ok_or(Errno::NotFound)?
            .inode;
        if count {
            child.lookups.fetch_add(1, Ordering::AcqRel);
        }
        let cst = child.state.read();
        Ok(self.attr_of(child, &cst))
    }

    pub(super) fn make_node(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        new: NewInode,
    ) -> Result<Attr> {
        let p = self.inode(parent)?;
        let mut pst = self.lock_parent_for_create(cred, &p, name)?;
        check(cred, p.kind, &pst, AccessMask::WRITE_EXECUTE)?;
        if matches!(new.kind, FileType::CharDevice | FileType::BlockDevice) && !cred.is_root() {
            return Err(Errno::NotPermitted);
        }
        let inode = self.create_locked(cred, parent, &mut pst, name, new)?;
        let st = inode.state.read();
        Ok(self.attr_of(&inode, &st))
    }
}
