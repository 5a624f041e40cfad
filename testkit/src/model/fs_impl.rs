//! The model's [`Filesystem`] operations, each following `docs/semantics.md` rule by rule.

use btfuse_core::{
    AccessMask, Attr, Credentials, DirEntry, Errno, FallocateMode, Fh, FileType, Filesystem, Ino,
    LINK_MAX, MAX_FILE_SIZE, NAME_MAX, OpenFlags, PATH_MAX, RenameMode, Result, S_ISGID, S_ISUID,
    SeekWhence, SetAttr, StatFs, TimeSet, XATTR_SIZE_MAX, XattrMode,
};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::dir::{
    check_name, check_not_removed, dir_horizon, entry_count, find_entry, insert_entry,
    is_ancestor_or_self, is_dot_or_dotdot, lookup_dir, remove_entry, resolve_name,
};
use super::perm::{kill_setid, permits, setid_bits_killed, sticky_allows};
use super::xattr::{
    Namespace, copy_out, file_or_dir, xattr_length, xattr_may_change, xattr_namespace,
};
use super::{Body, Handle, Model, NewInode, S_IXGRP, set_time};

impl Filesystem for Model {
    fn lookup(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr> {
        let mut st = self.lock();
        // The kernel's export lookup (decoding a file handle) asks for "." in an inode of any
        // type: a non-directory answers with itself, counted, whoever asks.
        if name == b"."
            && let Some(node) = st.nodes.get_mut(&parent.0)
            && node.kind != FileType::Directory
        {
            node.lookups += 1;
            return Ok(self.attr_of(parent.0, node));
        }
        let ino = resolve_name(&st, cred, parent.0, name)?;
        let node = st.nodes.get_mut(&ino).ok_or(Errno::NotFound)?;
        node.lookups += 1;
        Ok(self.attr_of(ino, node))
    }

    fn find(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr> {
        let st = self.lock();
        let ino = resolve_name(&st, cred, parent.0, name)?;
        let node = st.nodes.get(&ino).ok_or(Errno::NotFound)?;
        Ok(self.attr_of(ino, node))
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        let mut st = self.lock();
        if let Some(node) = st.nodes.get_mut(&ino.0) {
            node.lookups = node.lookups.saturating_sub(nlookup);
            self.maybe_free(&mut st, ino.0);
        }
    }

    fn getattr(&self, _cred: &Credentials, ino: Ino) -> Result<Attr> {
        let st = self.lock();
        let node = st.nodes.get(&ino.0).ok_or(Errno::NotFound)?;
        Ok(self.attr_of(ino.0, node))
    }

    fn setattr(&self, cred: &Credentials, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        let now = self.clock.now();
        let mut st = self.lock();
        let write_handle = fh
            .and_then(|fh| st.handles.get(&fh.0))
            .is_some_and(|h| h.ino == ino.0 && h.write);
        let node = st.nodes.get(&ino.0).ok_or(Errno::NotFound)?;
        let root = cred.is_root();
        let owner = root || cred.uid == node.uid;
        if let Some(size) = set.size {
            match node.kind {
                FileType::Directory => return Err(Errno::IsADirectory),
                FileType::RegularFile => {}
                _ => return Err(Errno::InvalidArgument),
            }
            if !write_handle && !permits(node, cred, AccessMask::WRITE) {
                return Err(Errno::PermissionDenied);
            }
            if size > MAX_FILE_SIZE {
                return Err(Errno::FileTooLarge);
            }
        }
        if let Some(uid) = set.uid
            && !root
            && (cred.uid != node.uid || uid != node.uid)
        {
            return Err(Errno::NotPermitted);
        }
        if let Some(gid) = set.gid
            && !root
            && (cred.uid != node.uid || !(cred.in_group(gid) || gid == node.gid))
        {
            return Err(Errno::NotPermitted);
        }
        if set.mode.is_some() && !owner {
            return Err(Errno::NotPermitted);
        }
        // A chown that clears a set-ID bit changes the mode (Linux `notify_change`), which
        // only the owner or root may do (`setattr_prepare`). The page lets a caller who may
        // write the file do it too: over FUSE the kernel's request before that caller's write
        // looks the same, and the write would clear the bits anyway.
        let chown = set.uid.is_some() || set.gid.is_some() || set.kill_setid;
        if chown
            && node.kind != FileType::Directory
            && !owner
            && setid_bits_killed(node, cred) != 0
            && !permits(node, cred, AccessMask::WRITE)
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
        if touch && !owner && !permits(node, cred, AccessMask::WRITE) {
            return Err(Errno::PermissionDenied);
        }

        let state = &mut *st;
        let node = state.nodes.get_mut(&ino.0).expect("checked above");
        let mut changed = set.mode.is_some()
            || set.kill_setid
            || set.uid.is_some()
            || set.gid.is_some()
            || set.atime != TimeSet::Omit
            || set.mtime != TimeSet::Omit
            || set.ctime != TimeSet::Omit;
        if let Some(size) = set.size {
            let Body::File { size: old, .. } = node.body else {
                unreachable!("checked above")
            };
            // tmpfs on Linux 6.x moves the times and drops set-ID bits even when the size
            // stays the same.
            let _ = old;
            self.resize(&mut state.used_blocks, &mut node.body, size);
            node.mtime = now;
            if !root {
                kill_setid(node, cred);
            }
            changed = true;
        }
        // chown clears set-ID bits as of before the change (Linux `chown_common` decides on the
        // old group); an explicit mode in the same call is applied after, so it wins.
        if chown && node.kind != FileType::Directory {
            kill_setid(node, cred);
        }
        if let Some(uid) = set.uid {
            node.uid = uid;
        }
        if let Some(gid) = set.gid {
            node.gid = gid;
        }
        if let Some(mode) = set.mode {
            let mut perm = mode & 0o7777;
            if !root && !cred.in_group(node.gid) {
                perm &= !S_ISGID;
            }
            node.perm = perm;
        }
        set_time(&mut node.atime, set.atime, now);
        set_time(&mut node.mtime, set.mtime, now);
        if changed {
            node.ctime = now;
            set_time(&mut node.ctime, set.ctime, now);
        }
        Ok(self.attr_of(ino.0, node))
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
        let (body, rdev) = match kind {
            FileType::RegularFile => (
                Body::File {
                    size: 0,
                    blocks: BTreeMap::new(),
                },
                0,
            ),
            FileType::CharDevice | FileType::BlockDevice => (Body::Special, rdev),
            FileType::NamedPipe | FileType::Socket => (Body::Special, 0),
            // Linux's mknod refuses these types (`may_mknod`); the trait offers mkdir/symlink.
            FileType::Directory => return Err(Errno::NotPermitted),
            FileType::Symlink => return Err(Errno::InvalidArgument),
        };
        self.make_node(
            cred,
            parent,
            name,
            NewInode {
                kind,
                perm,
                rdev,
                body,
            },
        )
    }

    fn mkdir(&self, cred: &Credentials, parent: Ino, name: &[u8], perm: u32) -> Result<Attr> {
        let body = Body::Dir {
            parent: parent.0,
            entries: BTreeMap::new(),
            next_cookie: 3,
        };
        // Linux's vfs_mkdir keeps only the permission and sticky bits of the requested mode.
        let new = NewInode {
            kind: FileType::Directory,
            perm: perm & 0o1777,
            rdev: 0,
            body,
        };
        self.make_node(cred, parent, name, new)
    }

    fn create(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        perm: u32,
        flags: OpenFlags,
    ) -> Result<(Attr, Fh)> {
        let mut st = self.lock();
        let dir = lookup_dir(&st, cred, parent.0)?;
        check_name(name)?;
        if is_dot_or_dotdot(name) {
            // Both name a directory: opening one for creation is EISDIR.
            return Err(if flags.exclusive {
                Errno::Exists
            } else {
                Errno::IsADirectory
            });
        }
        check_not_removed(dir)?;
        let existing = find_entry(dir, name).map(|(_, ino)| ino);
        if let Some(ino) = existing {
            if flags.exclusive {
                return Err(Errno::Exists);
            }
            let node = st.nodes.get(&ino).ok_or(Errno::NotFound)?;
            if node.kind == FileType::Directory {
                return Err(Errno::IsADirectory);
            }
            let fh = self.open_inode(&mut st, cred, ino, flags)?;
            let node = st.nodes.get_mut(&ino).expect("opened");
            node.lookups += 1;
            return Ok((self.attr_of(ino, node), Fh(fh)));
        }
        if !permits(dir, cred, AccessMask::WRITE_EXECUTE) {
            return Err(Errno::PermissionDenied);
        }
        self.inode_budget(&st)?;
        let body = Body::File {
            size: 0,
            blocks: BTreeMap::new(),
        };
        let new = NewInode {
            kind: FileType::RegularFile,
            perm,
            rdev: 0,
            body,
        };
        let ino = self.create_inode(&mut st, cred, parent.0, name, new);
        // A file this call created is opened without permission checks or truncation (Linux
        // `do_open` with `FMODE_CREATED`).
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(
            fh,
            Handle {
                ino,
                read: flags.read,
                write: flags.write,
                append: flags.append,
                horizon: u64::MAX,
            },
        );
        let node = st.nodes.get_mut(&ino).expect("created");
        node.open_handles += 1;
        Ok((self.attr_of(ino, node), Fh(fh)))
    }

    fn unlink(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()> {
        let now = self.clock.now();
        let mut st = self.lock();
        let dir = lookup_dir(&st, cred, parent.0)?;
        check_name(name)?;
        if is_dot_or_dotdot(name) {
            return Err(Errno::IsADirectory);
        }
        let (_, ino) = find_entry(dir, name).ok_or(Errno::NotFound)?;
        if !permits(dir, cred, AccessMask::WRITE_EXECUTE) {
            return Err(Errno::PermissionDenied);
        }
        let node = &st.nodes[&ino];
        if !sticky_allows(dir, node, cred) {
            return Err(Errno::NotPermitted);
        }
        if node.kind == FileType::Directory {
            return Err(Errno::IsADirectory);
        }
        let dir = st.nodes.get_mut(&parent.0).expect("checked");
        remove_entry(dir, name);
        dir.mtime = now;
        dir.ctime = now;
        let node = st.nodes.get_mut(&ino).expect("checked");
        node.nlink -= 1;
        node.ctime = now;
        self.maybe_free(&mut st, ino);
        Ok(())
    }

    fn rmdir(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()> {
        let now = self.clock.now();
        let mut st = self.lock();
        let dir = lookup_dir(&st, cred, parent.0)?;
        check_name(name)?;
        if name == b"." {
            return Err(Errno::InvalidArgument);
        }
        if name == b".." {
            return Err(Errno::NotEmpty);
        }
        let (_, ino) = find_entry(dir, name).ok_or(Errno::NotFound)?;
        if !permits(dir, cred, AccessMask::WRITE_EXECUTE) {
            return Err(Errno::PermissionDenied);
        }
        let node = &st.nodes[&ino];
        if !sticky_allows(dir, node, cred) {
            return Err(Errno::NotPermitted);
        }
        if node.kind != FileType::Directory {
            return Err(Errno::NotADirectory);
        }
        if ino == Ino::ROOT.0 {
            return Err(Errno::Busy);
        }
        if entry_count(node) != 0 {
            return Err(Errno::NotEmpty);
        }
        let dir = st.nodes.get_mut(&parent.0).expect("checked");
        remove_entry(dir, name);
        dir.nlink -= 1;
        dir.mtime = now;
        dir.ctime = now;
        let node = st.nodes.get_mut(&ino).expect("checked");
        node.nlink = 0;
        // The page names only the nlink; tmpfs (`shmem_unlink`) also moves the ctime.
        node.ctime = now;
        self.maybe_free(&mut st, ino);
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
        let now = self.clock.now();
        let mut st = self.lock();
        let (p1, p2) = (parent.0, new_parent.0);
        // 1.
        let dir1 = lookup_dir(&st, cred, p1)?;
        let dir2 = lookup_dir(&st, cred, p2)?;
        check_name(name)?;
        check_name(new_name)?;
        // 2.
        if is_dot_or_dotdot(name) || is_dot_or_dotdot(new_name) {
            return Err(Errno::Busy);
        }
        // 3.
        let (_, src) = find_entry(dir1, name).ok_or(Errno::NotFound)?;
        check_not_removed(dir2)?;
        let tgt = find_entry(dir2, new_name).map(|(_, ino)| ino);
        match (mode, tgt) {
            (RenameMode::Exchange, None) => return Err(Errno::NotFound),
            (RenameMode::NoReplace, Some(_)) => return Err(Errno::Exists),
            _ => {}
        }
        let src_node = &st.nodes[&src];
        let src_is_dir = src_node.kind == FileType::Directory;
        // 4.
        if src_is_dir && is_ancestor_or_self(&st, src, p2) {
            return Err(Errno::InvalidArgument);
        }
        // 5.
        if let Some(tgt) = tgt
            && is_ancestor_or_self(&st, tgt, p1)
        {
            return Err(if mode == RenameMode::Exchange {
                Errno::InvalidArgument
            } else {
                Errno::NotEmpty
            });
        }
        // 6.
        if tgt == Some(src) {
            return Ok(());
        }
        // 7.
        if !permits(dir1, cred, AccessMask::WRITE_EXECUTE) {
            return Err(Errno::PermissionDenied);
        }
        if !sticky_allows(dir1, src_node, cred) {
            return Err(Errno::NotPermitted);
        }
        // 8.
        if !permits(dir2, cred, AccessMask::WRITE_EXECUTE) {
            return Err(Errno::PermissionDenied);
        }
        let tgt_node = tgt.map(|t| &st.nodes[&t]);
        let tgt_is_dir = tgt_node.is_some_and(|t| t.kind == FileType::Directory);
        if let Some(tgt_node) = tgt_node {
            if !sticky_allows(dir2, tgt_node, cred) {
                return Err(Errno::NotPermitted);
            }
            if mode != RenameMode::Exchange {
                if src_is_dir && !tgt_is_dir {
                    return Err(Errno::NotADirectory);
                }
                if !src_is_dir && tgt_is_dir {
                    return Err(Errno::IsADirectory);
                }
            }
        }
        // 9.
        if p1 != p2 {
            if src_is_dir && !permits(src_node, cred, AccessMask::WRITE) {
                return Err(Errno::PermissionDenied);
            }
            if mode == RenameMode::Exchange
                && tgt_is_dir
                && let Some(tgt_node) = tgt_node
                && !permits(tgt_node, cred, AccessMask::WRITE)
            {
                return Err(Errno::PermissionDenied);
            }
        }
        // 10.
        if mode != RenameMode::Exchange && tgt_node.is_some_and(|t| entry_count(t) != 0) {
            return Err(Errno::NotEmpty);
        }
        // 11.
        if p1 != p2 {
            if src_is_dir && dir2.nlink >= LINK_MAX {
                return Err(Errno::TooManyLinks);
            }
            if mode == RenameMode::Exchange && tgt_is_dir && dir1.nlink >= LINK_MAX {
                return Err(Errno::TooManyLinks);
            }
        }

        // Effects. Entries are removed and inserted anew, the renamed source first.
        remove_entry(st.nodes.get_mut(&p1).expect("checked"), name);
        if tgt.is_some() {
            remove_entry(st.nodes.get_mut(&p2).expect("checked"), new_name);
        }
        insert_entry(st.nodes.get_mut(&p2).expect("checked"), new_name, src);
        if src_is_dir && p1 != p2 {
            st.nodes.get_mut(&p1).expect("checked").nlink -= 1;
            st.nodes.get_mut(&p2).expect("checked").nlink += 1;
            if let Body::Dir { parent, .. } = &mut st.nodes.get_mut(&src).expect("checked").body {
                *parent = p2;
            }
        }
        st.nodes.get_mut(&src).expect("checked").ctime = now;
        if let Some(tgt) = tgt {
            if mode == RenameMode::Exchange {
                insert_entry(st.nodes.get_mut(&p1).expect("checked"), name, tgt);
                if tgt_is_dir && p1 != p2 {
                    st.nodes.get_mut(&p2).expect("checked").nlink -= 1;
                    st.nodes.get_mut(&p1).expect("checked").nlink += 1;
                    let node = st.nodes.get_mut(&tgt).expect("checked");
                    if let Body::Dir { parent, .. } = &mut node.body {
                        *parent = p1;
                    }
                }
                st.nodes.get_mut(&tgt).expect("checked").ctime = now;
            } else {
                let node = st.nodes.get_mut(&tgt).expect("checked");
                node.ctime = now;
                if tgt_is_dir {
                    node.nlink = 0;
                    st.nodes.get_mut(&p2).expect("checked").nlink -= 1;
                } else {
                    node.nlink -= 1;
                }
            }
        }
        for p in [p1, p2] {
            let dir = st.nodes.get_mut(&p).expect("checked");
            dir.mtime = now;
            dir.ctime = now;
        }
        if let (Some(tgt), false) = (tgt, mode == RenameMode::Exchange) {
            self.maybe_free(&mut st, tgt);
        }
        Ok(())
    }

    fn link(&self, cred: &Credentials, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        let now = self.clock.now();
        let mut st = self.lock();
        // 2.
        let src = st.nodes.get(&ino.0).ok_or(Errno::NotFound)?;
        // 3, 4.
        self.check_new_entry(&st, cred, new_parent.0, new_name)?;
        // 5.
        if self.config.protected_hardlinks && !cred.is_root() && cred.uid != src.uid {
            let safe = src.kind == FileType::RegularFile
                && src.perm & S_ISUID == 0
                && src.perm & (S_ISGID | S_IXGRP) != S_ISGID | S_IXGRP
                && permits(
                    src,
                    cred,
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
        // 6.
        if !permits(&st.nodes[&new_parent.0], cred, AccessMask::WRITE_EXECUTE) {
            return Err(Errno::PermissionDenied);
        }
        // 8.
        if src.kind == FileType::Directory {
            return Err(Errno::NotPermitted);
        }
        if src.nlink == 0 {
            return Err(Errno::NotFound);
        }
        if src.nlink >= LINK_MAX {
            return Err(Errno::TooManyLinks);
        }
        // 10.
        self.inode_budget(&st)?;
        let dir = st.nodes.get_mut(&new_parent.0).expect("checked");
        insert_entry(dir, new_name, ino.0);
        dir.mtime = now;
        dir.ctime = now;
        let node = st.nodes.get_mut(&ino.0).expect("checked");
        node.nlink += 1;
        node.ctime = now;
        node.lookups += 1;
        Ok(self.attr_of(ino.0, node))
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
        let body = Body::Symlink(target.to_vec());
        let new = NewInode {
            kind: FileType::Symlink,
            perm: 0o777,
            rdev: 0,
            body,
        };
        self.make_node(cred, parent, name, new)
    }

    fn readlink(&self, _cred: &Credentials, ino: Ino) -> Result<Vec<u8>> {
        let now = self.clock.now();
        let mut st = self.lock();
        let node = st.nodes.get_mut(&ino.0).ok_or(Errno::NotFound)?;
        let Body::Symlink(target) = &node.body else {
            return Err(Errno::InvalidArgument);
        };
        let target = target.clone();
        // The page is silent; Linux's readlinkat() touches atime like a read.
        self.touch_atime(node, now);
        Ok(target)
    }

    fn open(&self, cred: &Credentials, ino: Ino, flags: OpenFlags) -> Result<Fh> {
        let mut st = self.lock();
        self.open_inode(&mut st, cred, ino.0, flags).map(Fh)
    }

    fn release(&self, fh: Fh) -> Result<()> {
        let mut st = self.lock();
        let handle = st.handles.remove(&fh.0).ok_or(Errno::BadHandle)?;
        if let Some(node) = st.nodes.get_mut(&handle.ino) {
            node.open_handles -= 1;
        }
        self.maybe_free(&mut st, handle.ino);
        Ok(())
    }

    fn read(&self, _cred: &Credentials, fh: Fh, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let now = self.clock.now();
        let mut st = self.lock();
        let handle = Self::handle(&st, fh)?;
        if !handle.read {
            return Err(Errno::BadHandle);
        }
        let ino = handle.ino;
        let node = st.nodes.get_mut(&ino).expect("a handle keeps its inode");
        let Body::File { size, blocks } = &node.body else {
            return Err(Errno::IsADirectory);
        };
        let end = (*size).min(offset.saturating_add(buf.len() as u64));
        let count = end.saturating_sub(offset) as usize;
        let mut done = 0;
        while done < count {
            let pos = offset + done as u64;
            let within = (pos % self.block_size) as usize;
            let n = (self.block_size as usize - within).min(count - done);
            let out = &mut buf[done..done + n];
            match blocks.get(&(pos / self.block_size)) {
                Some(block) => out.copy_from_slice(&block[within..within + n]),
                None => out.fill(0),
            }
            done += n;
        }
        // An empty buffer reads nothing: no access to record (and FUSE never sends one).
        if !buf.is_empty() {
            self.touch_atime(node, now);
        }
        Ok(count)
    }

    fn write(&self, cred: &Credentials, fh: Fh, offset: u64, data: &[u8]) -> Result<(usize, u64)> {
        let now = self.clock.now();
        let mut st = self.lock();
        let handle = Self::handle(&st, fh)?;
        if !handle.write {
            return Err(Errno::BadHandle);
        }
        let (ino, append) = (handle.ino, handle.append);
        let state = &mut *st;
        let node = state.nodes.get_mut(&ino).expect("a handle keeps its inode");
        let Body::File { size, blocks } = &mut node.body else {
            unreachable!("only regular files open for writing")
        };
        let start = if append { *size } else { offset };
        if data.is_empty() {
            return Ok((0, start));
        }
        // Linux `generic_write_check_limits`: refuse at or past the limit, cut short before it.
        if start >= MAX_FILE_SIZE {
            return Err(Errno::FileTooLarge);
        }
        let data = &data[..data.len().min((MAX_FILE_SIZE - start) as usize)];
        let mut written = 0usize;
        while written < data.len() {
            let pos = start + written as u64;
            let index = pos / self.block_size;
            let within = (pos % self.block_size) as usize;
            let n = (self.block_size as usize - within).min(data.len() - written);
            let block = match blocks.entry(index) {
                Entry::Occupied(block) => block.into_mut(),
                Entry::Vacant(slot) => {
                    if state.used_blocks >= self.capacity_blocks {
                        break;
                    }
                    state.used_blocks += 1;
                    slot.insert(vec![0; self.block_size as usize])
                }
            };
            block[within..within + n].copy_from_slice(&data[written..written + n]);
            written += n;
        }
        if written == 0 {
            return Err(Errno::NoSpace);
        }
        let end = start + written as u64;
        *size = (*size).max(end);
        node.mtime = now;
        node.ctime = now;
        if !cred.is_root() {
            kill_setid(node, cred);
        }
        Ok((written, end))
    }

    fn fallocate(
        &self,
        cred: &Credentials,
        fh: Fh,
        mode: FallocateMode,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        let now = self.clock.now();
        let mut st = self.lock();
        let handle = Self::handle(&st, fh)?;
        if !handle.write {
            return Err(Errno::BadHandle);
        }
        if len == 0 {
            return Err(Errno::InvalidArgument);
        }
        let end = match offset.checked_add(len) {
            Some(end) if end <= MAX_FILE_SIZE => end,
            _ => return Err(Errno::FileTooLarge),
        };
        let ino = handle.ino;
        let state = &mut *st;
        let node = state.nodes.get_mut(&ino).expect("a handle keeps its inode");
        let Body::File { size, blocks } = &mut node.body else {
            unreachable!("only regular files open for writing")
        };
        let bs = self.block_size;
        let (first, last) = (offset / bs, (end - 1) / bs);
        match mode {
            FallocateMode::Allocate | FallocateMode::KeepSize => {
                let present = blocks.range(first..=last).count() as u64;
                let missing = last - first + 1 - present;
                if missing > self.capacity_blocks - state.used_blocks {
                    return Err(Errno::NoSpace);
                }
                for index in first..=last {
                    blocks.entry(index).or_insert_with(|| vec![0; bs as usize]);
                }
                state.used_blocks += missing;
                if mode == FallocateMode::Allocate {
                    *size = (*size).max(end);
                }
            }
            FallocateMode::PunchHole => {
                let present: Vec<u64> = blocks.range(first..=last).map(|(i, _)| *i).collect();
                for index in present {
                    let (block_start, block_end) = (index * bs, (index + 1) * bs);
                    if offset <= block_start && block_end <= end {
                        blocks.remove(&index);
                        state.used_blocks -= 1;
                    } else {
                        let from = offset.max(block_start) - block_start;
                        let to = end.min(block_end) - block_start;
                        let block = blocks.get_mut(&index).expect("listed above");
                        block[from as usize..to as usize].fill(0);
                    }
                }
            }
        }
        node.mtime = now;
        node.ctime = now;
        if !cred.is_root() {
            kill_setid(node, cred);
        }
        Ok(())
    }

    fn lseek(&self, _cred: &Credentials, fh: Fh, offset: u64, whence: SeekWhence) -> Result<u64> {
        let st = self.lock();
        let handle = Self::handle(&st, fh)?;
        let node = &st.nodes[&handle.ino];
        let Body::File { size, blocks } = &node.body else {
            // tmpfs directories accept only SEEK_SET and SEEK_CUR (`offset_dir_llseek`).
            return Err(Errno::InvalidArgument);
        };
        if offset >= *size {
            return Err(Errno::NoSuchDeviceOrAddress);
        }
        let bs = self.block_size;
        match whence {
            SeekWhence::Data => {
                let next = blocks
                    .range(offset / bs..)
                    .next()
                    .map(|(index, _)| index * bs);
                match next {
                    Some(start) if start < *size => Ok(start.max(offset)),
                    _ => Err(Errno::NoSuchDeviceOrAddress),
                }
            }
            SeekWhence::Hole => {
                let mut index = offset / bs;
                while blocks.contains_key(&index) {
                    index += 1;
                }
                Ok((index * bs).max(offset).min(*size))
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
        let now = self.clock.now();
        let listing = {
            let mut st = self.lock();
            let handle = Self::handle(&st, fh)?;
            let ino = handle.ino;
            let node = &st.nodes[&ino];
            // Reading from cookie 0 (a rewind) takes in entries created since the open.
            let horizon = if cookie == 0 {
                dir_horizon(&node.body)
            } else {
                handle.horizon
            };
            let Body::Dir {
                parent, entries, ..
            } = &node.body
            else {
                return Err(Errno::NotADirectory);
            };
            let mut listing = vec![
                (ino, 1, FileType::Directory, b".".to_vec()),
                (*parent, 2, FileType::Directory, b"..".to_vec()),
            ];
            for (c, (name, child)) in entries {
                listing.push((*child, *c, st.nodes[child].kind, name.clone()));
            }
            listing.retain(|entry| entry.1 > cookie && entry.1 < horizon);
            if let Some(h) = st.handles.get_mut(&fh.0) {
                h.horizon = horizon;
            }
            let node = st.nodes.get_mut(&ino).expect("checked");
            self.touch_atime(node, now);
            listing
        };
        // The lock is dropped: a sink may call back into the filesystem.
        for (ino, cookie, kind, name) in &listing {
            let entry = DirEntry {
                ino: Ino(*ino),
                cookie: *cookie,
                kind: *kind,
                name,
            };
            if !sink(entry) {
                break;
            }
        }
        Ok(())
    }

    fn statfs(&self, _cred: &Credentials) -> Result<StatFs> {
        let st = self.lock();
        let free = self.capacity_blocks - st.used_blocks;
        Ok(StatFs {
            block_size: self.block_size as u32,
            blocks: self.capacity_blocks,
            blocks_free: free,
            blocks_available: free,
            files: self.config.max_inodes,
            files_free: (self.config.max_inodes).saturating_sub(Self::inodes_charged(&st)),
            name_max: NAME_MAX as u32,
        })
    }

    fn getxattr(&self, cred: &Credentials, ino: Ino, name: &[u8], buf: &mut [u8]) -> Result<usize> {
        // The name is checked before the inode, as Linux copies it in before the path walk.
        xattr_length(name)?;
        let ns = xattr_namespace(name)?;
        let st = self.lock();
        let node = st.nodes.get(&ino.0).ok_or(Errno::NotFound)?;
        match ns {
            Namespace::Trusted if !cred.is_root() => return Err(Errno::NoData),
            Namespace::User => {
                if !file_or_dir(node) {
                    return Err(Errno::NoData);
                }
                if !permits(node, cred, AccessMask::READ) {
                    return Err(Errno::PermissionDenied);
                }
            }
            _ => {}
        }
        let (_, value) = node
            .xattrs
            .iter()
            .find(|(n, _)| n == name)
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
        let now = self.clock.now();
        xattr_length(name)?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(Errno::ArgumentListTooLong);
        }
        let ns = xattr_namespace(name)?;
        let mut st = self.lock();
        let node = st.nodes.get_mut(&ino.0).ok_or(Errno::NotFound)?;
        xattr_may_change(node, cred, ns)?;
        let existing = node.xattrs.iter().position(|(n, _)| n == name);
        match (mode, existing) {
            (XattrMode::Create, Some(_)) => return Err(Errno::Exists),
            (XattrMode::Replace, None) => return Err(Errno::NoData),
            _ => {}
        }
        let total: usize = node.xattrs.iter().map(|(n, v)| n.len() + v.len()).sum();
        let old = existing.map_or(0, |i| node.xattrs[i].0.len() + node.xattrs[i].1.len());
        if total - old + name.len() + value.len() > self.config.max_xattr_bytes {
            return Err(Errno::NoSpace);
        }
        // The new names and values, rounded up to blocks, must fit in the store beside what
        // the inode's attributes already hold.
        let had = self.xattr_blocks(&node.xattrs);
        let mut xattrs = node.xattrs.clone();
        match existing {
            Some(i) => xattrs[i].1 = value.to_vec(),
            None => xattrs.push((name.to_vec(), value.to_vec())),
        }
        let needs = self.xattr_blocks(&xattrs);
        if needs > had && needs - had > self.capacity_blocks - st.used_blocks {
            return Err(Errno::NoSpace);
        }
        st.used_blocks = st.used_blocks + needs - had;
        let node = st.nodes.get_mut(&ino.0).expect("checked above");
        node.xattrs = xattrs;
        node.ctime = now;
        Ok(())
    }

    fn listxattr(&self, cred: &Credentials, ino: Ino, buf: &mut [u8]) -> Result<usize> {
        let st = self.lock();
        let node = st.nodes.get(&ino.0).ok_or(Errno::NotFound)?;
        let mut list = Vec::new();
        for (name, _) in &node.xattrs {
            if cred.is_root() || !name.starts_with(b"trusted.") {
                list.extend_from_slice(name);
                list.push(0);
            }
        }
        copy_out(&list, buf)
    }

    fn removexattr(&self, cred: &Credentials, ino: Ino, name: &[u8]) -> Result<()> {
        let now = self.clock.now();
        xattr_length(name)?;
        let ns = xattr_namespace(name)?;
        let mut st = self.lock();
        let node = st.nodes.get_mut(&ino.0).ok_or(Errno::NotFound)?;
        xattr_may_change(node, cred, ns)?;
        let i = node
            .xattrs
            .iter()
            .position(|(n, _)| n == name)
            .ok_or(Errno::NoData)?;
        let had = self.xattr_blocks(&node.xattrs);
        node.xattrs.remove(i);
        node.ctime = now;
        let needs = self.xattr_blocks(&node.xattrs);
        st.used_blocks -= had - needs;
        Ok(())
    }

    fn access(&self, cred: &Credentials, ino: Ino, mask: AccessMask) -> Result<()> {
        let st = self.lock();
        let node = st.nodes.get(&ino.0).ok_or(Errno::NotFound)?;
        if permits(node, cred, mask) {
            Ok(())
        } else {
            Err(Errno::PermissionDenied)
        }
    }

    fn fsync(&self, _cred: &Credentials, fh: Fh, _datasync: bool) -> Result<()> {
        let st = self.lock();
        Self::handle(&st, fh).map(|_| ())
    }

    // The model's locks are checked on their own (`model::locks`, `tests/locks.rs`), not
    // through this trait.
    fn locks(&self) -> Option<&btfuse_core::locks::LockTable> {
        None
    }

    fn calls_may_be_skipped(&self) -> bool {
        true
    }
}
