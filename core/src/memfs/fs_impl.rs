//! [`MemFs`]'s implementation of [`Filesystem`]: one method per operation, its checks in the
//! order `docs/semantics.md` gives, built from the parts in the files beside this one.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hash::BuildHasher;
use core::sync::atomic::Ordering;

use super::data::FileData;
use super::dir::Dir;
use super::inode::{Body, NewInode, Placement};
use super::names::{check_name, check_not_removed, is_dot_or_dotdot};
use super::perm::{check, check_sticky, permitted};
use super::xattr::{XattrNamespace, copy_out, xattr_namespace};
use super::{MemFs, SHARDS};
use crate::block::BlockStore;
use crate::error::{Errno, Result};
use crate::fs::{ContentWatch, Filesystem};
use crate::types::*;

impl<B: BlockStore> Filesystem for MemFs<B> {
    fn lookup(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.lookup_inner(cred, parent, name, true)
    }

    fn find(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.lookup_inner(cred, parent, name, false)
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        let Ok(inode) = self.inode(ino) else { return };
        let before = inode
            .lookups
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(nlookup))
            })
            .unwrap_or(0);
        if before <= nlookup {
            self.release_if_unused(&inode);
        }
    }

    fn looked_up(&self, ino: Ino) -> bool {
        ino == Ino::ROOT
            || self
                .inode(ino)
                .is_ok_and(|inode| inode.lookups.load(Ordering::SeqCst) > 0)
    }

    fn getattr(&self, _cred: &Credentials, ino: Ino) -> Result<Attr> {
        let inode = self.inode(ino)?;
        let st = inode.state.read();
        if st.freed {
            return Err(Errno::NotFound);
        }
        Ok(self.attr_of(&inode, &st))
    }

    fn setattr(&self, cred: &Credentials, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        let inode = self.inode(ino)?;
        let writable_handle = match fh {
            Some(fh) => {
                let h = self.handle(fh)?;
                h.write && h.inode.ino == ino
            }
            None => false,
        };
        let mut st = inode.state.write();
        if st.freed {
            return Err(Errno::NotFound);
        }
        let owner = cred.is_root() || cred.uid == st.uid;
        if let Some(size) = set.size {
            match inode.kind {
                FileType::Directory => return Err(Errno::IsADirectory),
                FileType::RegularFile => {}
                _ => return Err(Errno::InvalidArgument),
            }
            if !writable_handle {
                check(cred, inode.kind, &st, AccessMask::WRITE)?;
                // Linux `vfs_truncate` takes write access after the permission check.
                if st.executing > 0 {
                    return Err(Errno::TextBusy);
                }
            }
            if size > MAX_FILE_SIZE {
                return Err(Errno::FileTooLarge);
            }
        }
        let may_chown = |uid: u32| cred.is_root() || (cred.uid == st.uid && uid == st.uid);
        if set.uid.is_some_and(|uid| !may_chown(uid)) {
            return Err(Errno::NotPermitted);
        }
        let may_chgrp = |gid: u32| {
            cred.is_root() || (cred.uid == st.uid && (gid == st.gid || cred.in_group(gid)))
        };
        if set.gid.is_some_and(|gid| !may_chgrp(gid)) {
            return Err(Errno::NotPermitted);
        }
        if set.mode.is_some() && !owner {
            return Err(Errno::NotPermitted);
        }
        // A chown (or the kernel's request to drop set-ID bits) that has a bit to clear is a
        // mode change: Linux's `notify_change` makes it one, and `setattr_prepare` lets only
        // the owner or root change a mode. With nothing to clear, anyone may ask: ctime moves.
        // A caller who may write the file may ask too: through FUSE, the kernel's request
        // before such a caller's write or fallocate (`file_remove_privs`) is the same empty
        // SETATTR as `chown(f, -1, -1)`, and a writer clears the bits by writing anyway.
        let chown = set.uid.is_some() || set.gid.is_some() || set.kill_setid;
        if chown
            && inode.kind != FileType::Directory
            && !owner
            && st.setid_bits_chown_clears(cred) != 0
            && !permitted(cred, inode.kind, &st, AccessMask::WRITE)
        {
            return Err(Errno::NotPermitted);
        }
        // Linux `vfs_utimes`: setting both times to now (a "touch") needs ownership or write
        // permission; any other time change needs ownership.
        let touch = set.atime == TimeSet::Now && set.mtime == TimeSet::Now;
        let any_time = set.atime != TimeSet::Omit || set.mtime != TimeSet::Omit;
        if any_time && !owner && !touch {
            return Err(Errno::NotPermitted);
        }
        if touch && !owner {
            check(cred, inode.kind, &st, AccessMask::WRITE)?;
        }

        let now = self.now();
        // A new size changes the content; anything else only what `stat` shows.
        let _change = if set.size.is_some() {
            self.content_change(inode.ino)
        } else {
            self.attribute_change(inode.ino)
        };
        let mut changed = false;
        if let Some(size) = set.size {
            let owner = st.placed_as(inode.ino);
            let file = st.file_mut().ok_or(Errno::InvalidArgument)?;
            self.set_size(owner, file, size)?;
            st.drop_privileges_on_write(cred);
            st.touch_modified(now);
            changed = true;
        }
        // A chown, or the kernel's request to drop set-ID bits, clears them as Linux's
        // `chown_common` does, judged on the group before the change.
        if chown {
            if inode.kind != FileType::Directory {
                st.drop_privileges_on_chown(cred);
            }
            if let Some(uid) = set.uid {
                st.uid = uid;
            }
            if let Some(gid) = set.gid {
                st.gid = gid;
            }
            changed = true;
        }
        if let Some(mode) = set.mode {
            let mut perm = mode & PERM_MASK;
            if !cred.is_root() && !cred.in_group(st.gid) {
                perm &= !S_ISGID;
            }
            st.perm = perm;
            changed = true;
        }
        match set.atime {
            TimeSet::Omit => {}
            TimeSet::Now => (st.atime, changed) = (now.into(), true),
            TimeSet::At(t) => (st.atime, changed) = (t.into(), true),
        }
        match set.mtime {
            TimeSet::Omit => {}
            TimeSet::Now => (st.mtime, changed) = (now.into(), true),
            TimeSet::At(t) => (st.mtime, changed) = (t.into(), true),
        }
        match set.ctime {
            TimeSet::At(t) => st.ctime = t.into(),
            TimeSet::Now => st.ctime = now.into(),
            TimeSet::Omit if changed => st.ctime = now.into(),
            TimeSet::Omit => {}
        }
        Ok(self.attr_of(&inode, &st))
    }

    fn mknod(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        kind: FileType,
        perm: u32,
        rdev: u32,
    ) -> Result<Attr> {
        let body = match kind {
            FileType::RegularFile => Body::File(FileData::default()),
            FileType::Directory | FileType::Symlink => return Err(Errno::InvalidArgument),
            FileType::CharDevice | FileType::BlockDevice => Body::Special { rdev },
            FileType::NamedPipe | FileType::Socket => Body::Special { rdev: 0 },
        };
        self.make_node(cred, parent, name, NewInode { kind, perm, body })
    }

    fn mkdir(&self, cred: &Credentials, parent: Ino, name: &[u8], perm: u32) -> Result<Attr> {
        let body = Body::Dir(Box::new(Dir::new(parent)));
        let kind = FileType::Directory;
        // Linux `vfs_mkdir` keeps only the permission and sticky bits of the requested mode.
        let perm = perm & 0o1777;
        self.make_node(cred, parent, name, NewInode { kind, perm, body })
    }

    fn create(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        perm: u32,
        flags: OpenFlags,
    ) -> Result<(Attr, Fh)> {
        let p = self.inode(parent)?;
        if p.kind != FileType::Directory {
            return Err(Errno::NotADirectory);
        }
        let mut pst = p.state.write();
        if pst.freed {
            return Err(Errno::NotFound);
        }
        check(cred, p.kind, &pst, AccessMask::EXECUTE)?;
        check_name(name)?;
        let existing = if is_dot_or_dotdot(name) {
            Some(Ino(0))
        } else {
            check_not_removed(&pst)?;
            pst.dir()?.get(&self.hasher, name).map(|e| e.ino())
        };
        if let Some(ino) = existing {
            if flags.exclusive {
                return Err(Errno::Exists);
            }
            if ino == Ino(0) {
                return Err(Errno::IsADirectory);
            }
            let child = self.inode(ino)?;
            if child.kind == FileType::Directory {
                return Err(Errno::IsADirectory);
            }
            let mut cst = child.state.write();
            let fh = self.open_locked(cred, &child, &mut cst, flags)?;
            child.lookups.fetch_add(1, Ordering::AcqRel);
            return Ok((self.attr_of(&child, &cst), fh));
        }
        check(cred, p.kind, &pst, AccessMask::WRITE_EXECUTE)?;
        let body = Body::File(FileData::default());
        let new = NewInode {
            kind: FileType::RegularFile,
            perm,
            body,
        };
        let inode = self.create_locked(cred, parent, &mut pst, name, new)?;
        // Counted while the parent is still locked, so no unlink can free it in between.
        inode.opens.fetch_add(1, Ordering::AcqRel);
        drop(pst);
        let attr = self.attr_of(&inode, &inode.state.read());
        Ok((attr, self.open_handle(inode, flags, u64::MAX)))
    }

    fn unlink(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()> {
        let p = self.inode(parent)?;
        if p.kind != FileType::Directory {
            return Err(Errno::NotADirectory);
        }
        let child = {
            let mut pst = p.state.write();
            if pst.freed {
                return Err(Errno::NotFound);
            }
            check(cred, p.kind, &pst, AccessMask::EXECUTE)?;
            check_name(name)?;
            if is_dot_or_dotdot(name) {
                return Err(Errno::IsADirectory);
            }
            let ino = pst
                .dir()?
                .get(&self.hasher, name)
                .ok_or(Errno::NotFound)?
                .ino();
            check(cred, p.kind, &pst, AccessMask::WRITE_EXECUTE)?;
            let child = self.inode(ino)?;
            let mut cst = child.state.write();
            check_sticky(cred, &pst, cst.uid)?;
            if child.kind == FileType::Directory {
                return Err(Errno::IsADirectory);
            }
            let now = self.now();
            // The parent's listing, and the inode's link count and change time.
            let _changes = (self.content_change(parent), self.attribute_change(ino));
            pst.dir_mut()?.remove(&self.hasher, name);
            pst.touch_modified(now);
            if cst.nlink > 1 {
                // A name beyond the first goes: its unit of the inode budget comes back. The
                // last name's unit is the inode's own, given back when the inode is freed.
                self.uncharge_inode();
            }
            cst.nlink -= 1;
            cst.ctime = now.into();
            drop(cst);
            child
        };
        self.release_if_unused(&child);
        Ok(())
    }

    fn rmdir(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()> {
        let p = self.inode(parent)?;
        if p.kind != FileType::Directory {
            return Err(Errno::NotADirectory);
        }
        let child = {
            let mut pst = p.state.write();
            if pst.freed {
                return Err(Errno::NotFound);
            }
            check(cred, p.kind, &pst, AccessMask::EXECUTE)?;
            check_name(name)?;
            if name == b"." {
                return Err(Errno::InvalidArgument);
            }
            if name == b".." {
                return Err(Errno::NotEmpty);
            }
            let ino = pst
                .dir()?
                .get(&self.hasher, name)
                .ok_or(Errno::NotFound)?
                .ino();
            check(cred, p.kind, &pst, AccessMask::WRITE_EXECUTE)?;
            let child = self.inode(ino)?;
            let mut cst = child.state.write();
            check_sticky(cred, &pst, cst.uid)?;
            if child.kind != FileType::Directory {
                return Err(Errno::NotADirectory);
            }
            if cst.dir()?.len() > 0 {
                return Err(Errno::NotEmpty);
            }
            let now = self.now();
            // The parent loses an entry; the removed directory lists nothing from now on.
            let _listings = (self.content_change(parent), self.content_change(ino));
            pst.dir_mut()?.remove(&self.hasher, name);
            pst.nlink -= 1;
            pst.touch_modified(now);
            cst.nlink = 0;
            cst.ctime = now.into();
            drop(cst);
            child
        };
        self.release_if_unused(&child);
        Ok(())
    }

    fn rename(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        mode: RenameMode,
    ) -> Result<()> {
        let p1 = self.inode(parent)?;
        if p1.kind != FileType::Directory {
            return Err(Errno::NotADirectory);
        }
        let p2 = match self.inode(new_parent) {
            Ok(p2) if p2.kind == FileType::Directory => p2,
            unusable => {
                // Checked in the order of the walk: P1 first.
                let g1 = p1.state.read();
                if g1.freed {
                    return Err(Errno::NotFound);
                }
                check(cred, FileType::Directory, &g1, AccessMask::EXECUTE)?;
                return Err(unusable.err().unwrap_or(Errno::NotADirectory));
            }
        };
        let same_dir = p1.ino == p2.ino;
        let _rename_guard = (!same_dir).then(|| self.rename_lock.lock());
        // Each parent with the directories above it; frozen while `rename_lock` is held.
        let (above1, above2) = if same_dir {
            (Vec::new(), Vec::new())
        } else {
            (self.ancestors(p1.ino), self.ancestors(p2.ino))
        };
        let (mut g1, mut g2) = if same_dir {
            (p1.state.write(), None)
        } else if above2.contains(&p1.ino) {
            let g1 = p1.state.write();
            (g1, Some(p2.state.write()))
        } else if above1.contains(&p2.ino) || p2.ino < p1.ino {
            let g2 = p2.state.write();
            (p1.state.write(), Some(g2))
        } else {
            let g1 = p1.state.write();
            (g1, Some(p2.state.write()))
        };
        macro_rules! st2 {
            () => {
                match g2.as_mut() {
                    Some(g) => &mut **g,
                    None => &mut *g1,
                }
            };
        }
        if g1.freed {
            return Err(Errno::NotFound);
        }
        check(cred, FileType::Directory, &g1, AccessMask::EXECUTE)?;
        if st2!().freed {
            return Err(Errno::NotFound);
        }
        check(cred, FileType::Directory, st2!(), AccessMask::EXECUTE)?;
        check_name(name)?;
        check_name(new_name)?;
        if is_dot_or_dotdot(name) || is_dot_or_dotdot(new_name) {
            return Err(Errno::Busy);
        }
        let (src_ino, src_kind) = {
            let e = g1.dir()?.get(&self.hasher, name).ok_or(Errno::NotFound)?;
            (e.ino(), e.kind())
        };
        check_not_removed(st2!())?;
        let target = st2!()
            .dir()?
            .get(&self.hasher, new_name)
            .map(|e| (e.ino(), e.kind()));
        match (mode, target) {
            (RenameMode::Exchange, None) => return Err(Errno::NotFound),
            (RenameMode::NoReplace, Some(_)) => return Err(Errno::Exists),
            _ => {}
        }
        let exchange = mode == RenameMode::Exchange;
        if !same_dir {
            if src_kind == FileType::Directory && above2.contains(&src_ino) {
                return Err(Errno::InvalidArgument);
            }
            if let Some((tgt_ino, _)) = target
                && above1.contains(&tgt_ino)
            {
                return Err(if exchange {
                    Errno::InvalidArgument
                } else {
                    Errno::NotEmpty
                });
            }
        }
        if target.is_some_and(|(ino, _)| ino == src_ino) {
            return Ok(());
        }
        check(cred, FileType::Directory, &g1, AccessMask::WRITE_EXECUTE)?;
        let src = self.inode(src_ino)?;
        let tgt = match target {
            Some((ino, _)) => Some(self.inode(ino)?),
            None => None,
        };
        let (mut cs, mut ct) = match &tgt {
            Some(t) => {
                let (a, b) = Self::lock_pair(&src, t);
                (a, Some(b))
            }
            None => (src.state.write(), None),
        };
        check_sticky(cred, &g1, cs.uid)?;
        let src_dir = src_kind == FileType::Directory;
        let tgt_dir = target.is_some_and(|(_, k)| k == FileType::Directory);
        check(cred, FileType::Directory, st2!(), AccessMask::WRITE_EXECUTE)?;
        if let Some(ct) = &ct {
            check_sticky(cred, st2!(), ct.uid)?;
            if !exchange && src_dir && !tgt_dir {
                return Err(Errno::NotADirectory);
            }
            if !exchange && !src_dir && tgt_dir {
                return Err(Errno::IsADirectory);
            }
        }
        if !same_dir {
            if src_dir {
                check(cred, FileType::Directory, &cs, AccessMask::WRITE)?;
            }
            if let (true, true, Some(ct)) = (exchange, tgt_dir, &ct) {
                check(cred, FileType::Directory, ct, AccessMask::WRITE)?;
            }
        }
        if !exchange
            && tgt_dir
            && let Some(ct) = &ct
            && ct.dir()?.len() > 0
        {
            return Err(Errno::NotEmpty);
        }
        if !same_dir {
            if src_dir && !tgt_dir && st2!().nlink >= LINK_MAX {
                return Err(Errno::TooManyLinks);
            }
            if exchange && tgt_dir && !src_dir && g1.nlink >= LINK_MAX {
                return Err(Errno::TooManyLinks);
            }
        }

        // Every check passed: reserve memory so that nothing below can fail halfway.
        {
            let d2 = st2!().dir_mut()?;
            let entries = &d2.entries;
            let hasher = &self.hasher;
            d2.index
                .try_reserve(1, |&id| hasher.hash_one(Dir::node_name(entries, id)))
                .map_err(|_| Errno::NoSpace)?;
            d2.entries.try_reserve(1).map_err(|_| Errno::NoSpace)?;
        }
        let now = self.now();
        let h = &self.hasher;
        // The listings that change: each parent's, and a directory's own whose `..` moves or
        // that is replaced (it lists nothing from then on). The moved inode's change time and
        // the replaced one's link count change too: attributes, where no listing does.
        let moved_listing = src_dir && !same_dir;
        let replaced_listing = |kind| kind == FileType::Directory && !(exchange && same_dir);
        let _changes = (
            self.content_change(p1.ino),
            (!same_dir).then(|| self.content_change(p2.ino)),
            if moved_listing {
                self.content_change(src_ino)
            } else {
                self.attribute_change(src_ino)
            },
            target.map(|(ino, kind)| {
                if replaced_listing(kind) {
                    self.content_change(ino)
                } else {
                    self.attribute_change(ino)
                }
            }),
        );
        if let Some(ct) = ct.as_mut() {
            st2!().dir_mut()?.remove(h, new_name);
            if exchange {
                g1.dir_mut()?.remove(h, name);
                st2!().dir_mut()?.insert(h, new_name, &src)?;
                if let Some(t) = &tgt {
                    g1.dir_mut()?.insert(h, name, t)?;
                }
                if !same_dir {
                    if src_dir {
                        g1.nlink -= 1;
                        st2!().nlink += 1;
                        cs.dir_mut()?.parent = p2.ino;
                    }
                    if tgt_dir {
                        st2!().nlink -= 1;
                        g1.nlink += 1;
                        ct.dir_mut()?.parent = p1.ino;
                    }
                }
            } else {
                if tgt_dir {
                    ct.nlink = 0;
                    st2!().nlink -= 1;
                } else {
                    if ct.nlink > 1 {
                        // As in unlink: a replaced name beyond the first gives its unit back.
                        self.uncharge_inode();
                    }
                    ct.nlink -= 1;
                }
                g1.dir_mut()?.remove(h, name);
                st2!().dir_mut()?.insert(h, new_name, &src)?;
                if src_dir && !same_dir {
                    g1.nlink -= 1;
                    st2!().nlink += 1;
                    cs.dir_mut()?.parent = p2.ino;
                }
            }
            ct.ctime = now.into();
        } else {
            g1.dir_mut()?.remove(h, name);
            st2!().dir_mut()?.insert(h, new_name, &src)?;
            if src_dir && !same_dir {
                g1.nlink -= 1;
                st2!().nlink += 1;
                cs.dir_mut()?.parent = p2.ino;
            }
        }
        cs.ctime = now.into();
        g1.touch_modified(now);
        st2!().touch_modified(now);
        drop((cs, ct, g1, g2));
        if let (Some(t), false) = (tgt, exchange) {
            self.release_if_unused(&t);
        }
        Ok(())
    }

    fn link(&self, cred: &Credentials, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        let src = self.inode(ino)?;
        let p = self.inode(new_parent)?;
        if src.kind == FileType::Directory {
            // A directory is never locked under another directory that might be below it;
            // its owner is read before, and the answer is EPERM whatever happens meanwhile.
            let uid = src.state.read().uid;
            let pst = self.lock_parent_for_create(cred, &p, new_name)?;
            if self.config.protected_hardlinks && !cred.is_root() && cred.uid != uid {
                return Err(Errno::NotPermitted);
            }
            check(cred, p.kind, &pst, AccessMask::WRITE_EXECUTE)?;
            return Err(Errno::NotPermitted);
        }
        let mut pst = self.lock_parent_for_create(cred, &p, new_name)?;
        let mut cst = src.state.write();
        if self.config.protected_hardlinks && !cred.is_root() && cred.uid != cst.uid {
            let safe = src.kind == FileType::RegularFile
                && cst.perm & S_ISUID == 0
                && cst.perm & (S_ISGID | 0o010) != (S_ISGID | 0o010)
                && permitted(
                    cred,
                    src.kind,
                    &cst,
                    AccessMask {
                        read: true,
                        write: true,
                        execute: false,
                    },
                );
            if !safe {
                return Err(Errno::NotPermitted);
            }
        }
        check(cred, p.kind, &pst, AccessMask::WRITE_EXECUTE)?;
        if cst.freed || cst.nlink == 0 {
            return Err(Errno::NotFound);
        }
        if cst.nlink >= LINK_MAX {
            return Err(Errno::TooManyLinks);
        }
        if pst.nlink == 0 {
            return Err(Errno::NotFound);
        }
        // Every name pins memory as an inode does: each one beyond the first takes a unit of
        // the inode budget (tmpfs's `shmem_link` reserves an inode likewise).
        self.charge_inode()?;
        // The new name's directory, and the inode's link count and change time.
        let _changes = (self.content_change(new_parent), self.attribute_change(ino));
        if let Err(e) = pst
            .dir_mut()
            .and_then(|d| d.insert(&self.hasher, new_name, &src))
        {
            self.uncharge_inode();
            return Err(e);
        }
        let now = self.now();
        pst.touch_modified(now);
        cst.nlink += 1;
        cst.ctime = now.into();
        src.lookups.fetch_add(1, Ordering::AcqRel);
        Ok(self.attr_of(&src, &cst))
    }

    fn symlink(&self, cred: &Credentials, parent: Ino, name: &[u8], target: &[u8]) -> Result<Attr> {
        if target.is_empty() {
            return Err(Errno::NotFound);
        }
        if target.len() >= PATH_MAX {
            return Err(Errno::NameTooLong);
        }
        if target.contains(&0) {
            return Err(Errno::InvalidArgument);
        }
        let body = Body::Symlink(target.into());
        let kind = FileType::Symlink;
        self.make_node(
            cred,
            parent,
            name,
            NewInode {
                kind,
                perm: 0o777,
                body,
            },
        )
    }

    fn readlink(&self, _cred: &Credentials, ino: Ino) -> Result<Vec<u8>> {
        let inode = self.inode(ino)?;
        let target = match &inode.state.read().body {
            Body::Symlink(t) => t.to_vec(),
            _ => return Err(Errno::InvalidArgument),
        };
        self.accessed(&inode);
        Ok(target)
    }

    fn open(&self, cred: &Credentials, ino: Ino, flags: OpenFlags) -> Result<Fh> {
        let inode = self.inode(ino)?;
        let mut st = inode.state.write();
        self.open_locked(cred, &inode, &mut st, flags)
    }

    fn release(&self, fh: Fh) -> Result<()> {
        let handle = self.handles[(fh.0 as usize) % SHARDS]
            .write()
            .remove(&fh.0)
            .ok_or(Errno::BadHandle)?;
        self.open_handles.fetch_sub(1, Ordering::Relaxed);
        if handle.exec {
            let mut st = handle.inode.state.write();
            st.executing = st.executing.saturating_sub(1);
        }
        if handle.inode.opens.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.release_if_unused(&handle.inode);
        }
        Ok(())
    }

    fn read(&self, _cred: &Credentials, fh: Fh, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let h = self.handle(fh)?;
        if !h.read {
            return Err(Errno::BadHandle);
        }
        let n = self.read_locked(&h.inode.state.read(), offset, buf)?;
        if !buf.is_empty() {
            self.accessed(&h.inode);
        }
        Ok(n)
    }

    fn write(&self, cred: &Credentials, fh: Fh, offset: u64, data: &[u8]) -> Result<(usize, u64)> {
        let h = self.handle(fh)?;
        if !h.write {
            return Err(Errno::BadHandle);
        }
        let mut st = h.inode.state.write();
        let owner = st.placed_as(h.inode.ino);
        let file = match &mut st.body {
            Body::File(f) => f,
            Body::Dir(_) => return Err(Errno::IsADirectory),
            _ => return Err(Errno::InvalidArgument),
        };
        let offset = if h.append { file.size } else { offset };
        if offset >= MAX_FILE_SIZE && !data.is_empty() {
            return Err(Errno::FileTooLarge);
        }
        let len = data
            .len()
            .min((MAX_FILE_SIZE - offset).min(usize::MAX as u64) as usize);
        if len == 0 {
            return Ok((0, offset));
        }
        let _change = self.content_change(h.inode.ino);
        let n = self.write_locked(owner, file, offset, &data[..len])?;
        st.drop_privileges_on_write(cred);
        st.touch_modified(self.now());
        Ok((n, offset + n as u64))
    }

    fn fallocate(
        &self,
        cred: &Credentials,
        fh: Fh,
        mode: FallocateMode,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        let h = self.handle(fh)?;
        if !h.write {
            return Err(Errno::BadHandle);
        }
        if len == 0 {
            return Err(Errno::InvalidArgument);
        }
        let end = offset.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE);
        let end = end.ok_or(Errno::FileTooLarge)?;
        let mut st = h.inode.state.write();
        let owner = st.placed_as(h.inode.ino);
        let file = match &mut st.body {
            Body::File(f) => f,
            Body::Dir(_) => return Err(Errno::IsADirectory),
            _ => return Err(Errno::InvalidArgument),
        };
        let _change = self.content_change(h.inode.ino);
        match mode {
            FallocateMode::Allocate | FallocateMode::KeepSize => {
                self.allocate_range(owner, file, offset, end)?;
                if mode == FallocateMode::Allocate && end > file.size {
                    file.size = end;
                    self.data_changed(owner, file);
                }
            }
            FallocateMode::PunchHole => self.punch_range(owner, file, offset, end)?,
        }
        st.drop_privileges_on_write(cred);
        st.touch_modified(self.now());
        Ok(())
    }

    fn lseek(&self, _cred: &Credentials, fh: Fh, offset: u64, whence: SeekWhence) -> Result<u64> {
        let h = self.handle(fh)?;
        let st = h.inode.state.read();
        let file = match &st.body {
            Body::File(f) => f,
            _ => return Err(Errno::InvalidArgument),
        };
        if offset >= file.size {
            return Err(Errno::NoSuchDeviceOrAddress);
        }
        let bs = self.block_size();
        let first = offset / bs;
        match whence {
            SeekWhence::Data => {
                let (&index, _) = file
                    .blocks
                    .range(first..)
                    .next()
                    .ok_or(Errno::NoSuchDeviceOrAddress)?;
                let pos = offset.max(index * bs);
                if pos >= file.size {
                    Err(Errno::NoSuchDeviceOrAddress)
                } else {
                    Ok(pos)
                }
            }
            SeekWhence::Hole => {
                let mut expected = first;
                for (&index, _) in file.blocks.range(first..) {
                    if index != expected {
                        break;
                    }
                    expected += 1;
                }
                Ok(offset.max(expected * bs).min(file.size))
            }
        }
    }

    fn readdir(
        &self,
        _cred: &Credentials,
        fh: Fh,
        cookie: u64,
        sink: &mut dyn FnMut(DirEntry<'_>) -> bool,
    ) -> Result<()> {
        let h = self.dir_handle(fh)?;
        let inode = &h.inode;
        {
            let st = inode.state.read();
            let dir = st.dir()?;
            // Reading from cookie 0 (a rewind) takes in entries created since the open.
            let horizon = if cookie == 0 {
                h.horizon.store(dir.next_cookie, Ordering::Relaxed);
                dir.next_cookie
            } else {
                h.horizon.load(Ordering::Relaxed)
            };
            let dots = [(inode.ino, 1, &b"."[..]), (dir.parent, 2, &b".."[..])];
            let mut go_on = true;
            for (ino, c, name) in dots {
                if go_on && cookie < c {
                    go_on = sink(DirEntry {
                        ino,
                        cookie: c,
                        kind: FileType::Directory,
                        name,
                    });
                }
            }
            if go_on {
                let mut cursor = h.cursor.lock();
                let resume = match *cursor {
                    Some((c, id)) if c == cookie && c > 2 => dir
                        .entries
                        .get(id)
                        .filter(|(k, _)| **k == c)
                        .map(|_| dir.entries.next(id)),
                    _ => None,
                };
                let mut next = resume.unwrap_or_else(|| dir.entries.first_after(&cookie.max(2)));
                while let Some(id) = next {
                    let Some((&c, e)) = dir.entries.get(id) else {
                        break;
                    };
                    if c >= horizon {
                        break;
                    }
                    let entry = DirEntry {
                        ino: e.ino(),
                        cookie: c,
                        kind: e.kind(),
                        name: e.name(),
                    };
                    if !sink(entry) {
                        break;
                    }
                    *cursor = Some((c, id));
                    next = dir.entries.next(id);
                }
            }
        }
        self.accessed(inode);
        Ok(())
    }

    fn statfs(&self, _cred: &Credentials) -> Result<StatFs> {
        let used = self.store.used_blocks();
        let total = self.store.capacity_blocks();
        let inodes = self.charged_inodes.load(Ordering::Relaxed);
        Ok(StatFs {
            block_size: self.store.block_size() as u32,
            blocks: total,
            blocks_free: total.saturating_sub(used),
            blocks_available: total.saturating_sub(used),
            files: self.config.max_inodes,
            files_free: self.config.max_inodes.saturating_sub(inodes),
            name_max: NAME_MAX as u32,
        })
    }

    fn getxattr(&self, cred: &Credentials, ino: Ino, name: &[u8], buf: &mut [u8]) -> Result<usize> {
        let ns = xattr_namespace(name)?;
        let inode = self.inode(ino)?;
        let st = inode.state.read();
        match ns {
            XattrNamespace::Trusted if !cred.is_root() => return Err(Errno::NoData),
            XattrNamespace::User => {
                if !matches!(inode.kind, FileType::RegularFile | FileType::Directory) {
                    return Err(Errno::NoData);
                }
                check(cred, inode.kind, &st, AccessMask::READ)?;
            }
            _ => {}
        }
        let x = st.xattrs.as_deref().ok_or(Errno::NoData)?;
        let (_, value) = x
            .entries
            .iter()
            .find(|(n, _)| &**n == name)
            .ok_or(Errno::NoData)?;
        copy_out(value, buf)
    }

    fn setxattr(
        &self,
        cred: &Credentials,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()> {
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return Err(Errno::Range);
        }
        if value.len() > XATTR_SIZE_MAX {
            return Err(Errno::ArgumentListTooLong);
        }
        let ns = xattr_namespace(name)?;
        let inode = self.inode(ino)?;
        let mut st = inode.state.write();
        if st.freed {
            return Err(Errno::NotFound);
        }
        Self::xattr_write_permission(cred, inode.kind, &st, ns)?;
        let _change = self.attribute_change(ino);
        let x = st.xattrs.get_or_insert_with(Default::default);
        let set = self.set_xattr_in(x, name, value, mode);
        if x.entries.is_empty() {
            st.xattrs = None;
        }
        set?;
        st.ctime = self.now().into();
        Ok(())
    }

    fn listxattr(&self, cred: &Credentials, ino: Ino, buf: &mut [u8]) -> Result<usize> {
        let inode = self.inode(ino)?;
        let st = inode.state.read();
        let visible = |n: &[u8]| cred.is_root() || !n.starts_with(b"trusted.");
        let entries = st.xattrs.as_deref().map_or(&[][..], |x| &x.entries[..]);
        let total: usize = entries
            .iter()
            .filter(|(n, _)| visible(n))
            .map(|(n, _)| n.len() + 1)
            .sum();
        if buf.is_empty() {
            return Ok(total);
        }
        if buf.len() < total {
            return Err(Errno::Range);
        }
        let mut at = 0;
        for (n, _) in entries.iter().filter(|(n, _)| visible(n)) {
            buf[at..at + n.len()].copy_from_slice(n);
            buf[at + n.len()] = 0;
            at += n.len() + 1;
        }
        Ok(total)
    }

    fn removexattr(&self, cred: &Credentials, ino: Ino, name: &[u8]) -> Result<()> {
        let ns = xattr_namespace(name)?;
        let inode = self.inode(ino)?;
        let mut st = inode.state.write();
        if st.freed {
            return Err(Errno::NotFound);
        }
        Self::xattr_write_permission(cred, inode.kind, &st, ns)?;
        let x = st.xattrs.as_deref_mut().ok_or(Errno::NoData)?;
        let i = x
            .entries
            .iter()
            .position(|(n, _)| &**n == name)
            .ok_or(Errno::NoData)?;
        let _change = self.attribute_change(ino);
        let (n, v) = x.entries.remove(i);
        x.bytes -= n.len() + v.len();
        self.shrink_charge(&mut x.charge, x.bytes.div_ceil(self.store.block_size()));
        if x.entries.is_empty() {
            st.xattrs = None;
        }
        st.ctime = self.now().into();
        Ok(())
    }

    fn access(&self, cred: &Credentials, ino: Ino, mask: AccessMask) -> Result<()> {
        let inode = self.inode(ino)?;
        let st = inode.state.read();
        if st.freed {
            return Err(Errno::NotFound);
        }
        check(cred, inode.kind, &st, mask)
    }

    fn fsync(&self, _cred: &Credentials, fh: Fh, _datasync: bool) -> Result<()> {
        self.handle(fh).map(|_| ())
    }

    fn locks(&self) -> Option<&crate::locks::LockTable> {
        Some(&self.locks)
    }

    fn calls_may_be_skipped(&self) -> bool {
        true
    }

    fn place_file(&self, ino: Ino, from: u64, most: u64) -> Result<Option<u64>> {
        let inode = self.inode(ino)?;
        let mut st = inode.state.write();
        if st.freed {
            return Err(Errno::NotFound);
        }
        let Body::File(file) = &mut st.body else {
            return Err(match inode.kind {
                FileType::Directory => Errno::IsADirectory,
                _ => Errno::InvalidArgument,
            });
        };
        // Placed from now on, before any block moves: what is allocated meanwhile is placed,
        // and the store hears of every change whatever happens.
        let placing = self.place_locked(file, ino.0, from, most);
        st.placement = Placement::Placed;
        placing
    }

    fn unplace_file(&self, ino: Ino) -> Result<()> {
        let inode = self.inode(ino)?;
        let mut st = inode.state.write();
        // Opens are counted under this lock: none can begin while the blocks move.
        if inode.opens.load(Ordering::Acquire) > 0 {
            return Err(Errno::Busy);
        }
        if st.placement == Placement::Not {
            return Ok(());
        }
        let Body::File(file) = &mut st.body else {
            return Err(Errno::InvalidArgument);
        };
        self.unplace_locked(file, ino.0)?;
        st.placement = Placement::Not;
        Ok(())
    }

    fn watch_content(&self, watch: Arc<dyn ContentWatch>) -> bool {
        let mut installed = false;
        self.watch.call_once(|| {
            installed = true;
            watch
        });
        installed
    }
}
