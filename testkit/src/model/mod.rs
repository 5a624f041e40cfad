//! The reference model: a [`Filesystem`] written to be obviously correct, not fast.
//!
//! [`Model`] follows `docs/semantics.md` rule by rule, in the order that page lists them, with
//! nothing but `std` collections behind one [`Mutex`]. The property test drives it side by side
//! with [`MemFs`](btfuse_core::MemFs) and demands identical answers, so every deviation of either
//! from the page shows up as a mismatch. Where the page is silent the model does what Linux tmpfs
//! does, and says so in a comment.
//!
//! Identities are deterministic so that the two sides can be compared field by field: inode
//! numbers are handed out sequentially from 2 (the root is 1) and never reused; directory
//! cookies follow the page (`.` = 1, `..` = 2, entries from 3 in insertion order).
//!
//! File data is kept per block (a map from block index to the block's bytes) rather than as one
//! flat buffer, because the property test writes at offsets around 2^40: the map's keys are
//! exactly the allocated blocks, which is what `blocks`, `SEEK_DATA`/`SEEK_HOLE` and the store's
//! free count (with the blocks extended attributes are charged) are computed from. Bytes
//! outside allocated blocks, and bytes of an allocated block past the file size, are always
//! zero.

mod dir;
mod perm;
mod xattr;

use btfuse_core::{
    AccessMask, AtimePolicy, Attr, Clock, Config, Credentials, DirEntry, Errno, FallocateMode, Fh,
    FileType, Filesystem, Ino, LINK_MAX, MAX_FILE_SIZE, NAME_MAX, OpenFlags, PATH_MAX, RenameMode,
    Result, S_ISGID, S_ISUID, SeekWhence, SetAttr, StatFs, TimeSet, Timestamp, XATTR_SIZE_MAX,
    XattrMode,
};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use dir::{
    check_name, check_not_removed, dir_horizon, entry_count, find_entry, insert_entry,
    is_ancestor_or_self, is_dot_or_dotdot, lookup_dir, remove_entry, resolve_name,
};
use perm::{kill_setid, permits, setid_bits_killed, sticky_allows};
use xattr::{Namespace, copy_out, file_or_dir, xattr_length, xattr_may_change, xattr_namespace};

/// Seconds in 24 hours: the age at which `Relatime` refreshes atime regardless.
const DAY_SECS: i64 = 24 * 60 * 60;
/// tmpfs's `BOGO_DIRENT_SIZE`: what each entry adds to a directory's size.
const BOGO_DIRENT_SIZE: u64 = 20;
/// Group-execute permission bit.
const S_IXGRP: u32 = 0o010;

/// The reference implementation of [`Filesystem`] the property test compares `MemFs` against.
pub struct Model {
    config: Config,
    block_size: u64,
    capacity_blocks: u64,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// Everything that changes, behind the model's one lock.
struct State {
    nodes: BTreeMap<u64, Node>,
    handles: BTreeMap<u64, Handle>,
    next_ino: u64,
    next_fh: u64,
    /// Blocks allocated by all live inodes together: file data, and the charge for each
    /// inode's extended attributes ([`Model::xattr_blocks`]).
    used_blocks: u64,
}

/// One inode.
struct Node {
    kind: FileType,
    perm: u32,
    nlink: u32,
    uid: u32,
    gid: u32,
    rdev: u32,
    atime: Timestamp,
    mtime: Timestamp,
    ctime: Timestamp,
    lookups: u64,
    open_handles: u64,
    body: Body,
    /// Extended attributes in the order they were first set.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What an inode holds besides its attributes.
enum Body {
    /// A regular file: its size and its allocated blocks, each `block_size` bytes long.
    File {
        size: u64,
        blocks: BTreeMap<u64, Vec<u8>>,
    },
    /// A directory: its parent (itself for the root) and its entries by cookie.
    Dir {
        parent: u64,
        entries: BTreeMap<u64, (Vec<u8>, u64)>,
        next_cookie: u64,
    },
    /// A symbolic link's target.
    Symlink(Vec<u8>),
    /// A FIFO, socket or device: a record only.
    Special,
}

/// An open handle.
struct Handle {
    ino: u64,
    read: bool,
    write: bool,
    append: bool,
    /// Directories: entries with this cookie or above were created after the handle was
    /// opened (or last read from cookie 0) and are not listed.
    horizon: u64,
}

/// What `create_inode` needs besides the caller and the place.
struct NewInode {
    kind: FileType,
    /// The requested permission bits, before the set-group-ID rules.
    perm: u32,
    rdev: u32,
    body: Body,
}

impl Model {
    /// An empty filesystem: a root directory made from `config`, a store of `capacity_blocks`
    /// blocks of `block_size` bytes, and `clock` for every timestamp.
    pub fn new(
        config: Config,
        block_size: usize,
        capacity_blocks: u64,
        clock: Arc<dyn Clock>,
    ) -> Model {
        let now = clock.now();
        let root = Node {
            kind: FileType::Directory,
            perm: config.root_perm & 0o7777,
            nlink: 2,
            uid: config.root_uid,
            gid: config.root_gid,
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
            lookups: 0,
            open_handles: 0,
            body: Body::Dir {
                parent: Ino::ROOT.0,
                entries: BTreeMap::new(),
                next_cookie: 3,
            },
            xattrs: Vec::new(),
        };
        let state = State {
            nodes: BTreeMap::from([(Ino::ROOT.0, root)]),
            handles: BTreeMap::new(),
            next_ino: 2,
            next_fh: 1,
            used_blocks: 0,
        };
        Model {
            config,
            block_size: block_size as u64,
            capacity_blocks,
            clock,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic inside the model (a bug in it) must not hide behind a poisoned lock.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn attr_of(&self, ino: u64, node: &Node) -> Attr {
        let (size, blocks) = match &node.body {
            Body::File { size, blocks } => (*size, blocks.len() as u64 * self.block_size / 512),
            Body::Dir { entries, .. } => ((entries.len() as u64 + 2) * BOGO_DIRENT_SIZE, 0),
            Body::Symlink(target) => (target.len() as u64, 0),
            Body::Special => (0, 0),
        };
        Attr {
            ino: Ino(ino),
            kind: node.kind,
            perm: node.perm,
            nlink: node.nlink,
            uid: node.uid,
            gid: node.gid,
            rdev: node.rdev,
            size,
            blocks,
            blksize: self.block_size as u32,
            atime: node.atime,
            mtime: node.mtime,
            ctime: node.ctime,
        }
    }

    /// Sets atime to `now` if `Config::atime` says a read should.
    fn touch_atime(&self, node: &mut Node, now: Timestamp) {
        let update = match self.config.atime {
            AtimePolicy::Never => false,
            AtimePolicy::Strict => true,
            AtimePolicy::Relatime => {
                node.atime <= node.mtime
                    || node.atime <= node.ctime
                    // Whole seconds, as Linux's `relatime_need_update` compares them.
                    || now.secs.saturating_sub(node.atime.secs) >= DAY_SECS
            }
        };
        if update {
            node.atime = now;
        }
    }

    /// Sets the size of a regular file: shrinking frees the blocks wholly past the new end and
    /// zeroes the tail of a partial last block; growing allocates nothing.
    fn resize(&self, used_blocks: &mut u64, body: &mut Body, new_size: u64) {
        let Body::File { size, blocks } = body else {
            return;
        };
        if new_size < *size {
            let first_gone = new_size.div_ceil(self.block_size);
            let gone = blocks.split_off(&first_gone);
            *used_blocks -= gone.len() as u64;
            let tail = (new_size % self.block_size) as usize;
            if tail != 0
                && let Some(block) = blocks.get_mut(&(new_size / self.block_size))
            {
                block[tail..].fill(0);
            }
        }
        *size = new_size;
    }

    /// Creates an inode in `parent` under `name` (all checks done) and returns its number.
    fn create_inode(
        &self,
        st: &mut State,
        cred: &Credentials,
        parent: u64,
        name: &[u8],
        new: NewInode,
    ) -> u64 {
        let NewInode {
            kind,
            perm,
            rdev,
            body,
        } = new;
        let now = self.clock.now();
        let ino = st.next_ino;
        st.next_ino += 1;
        let dir = st.nodes.get_mut(&parent).expect("parent checked");
        let mut perm = perm & 0o7777;
        let mut gid = cred.gid;
        if dir.perm & S_ISGID != 0 {
            gid = dir.gid;
            if kind == FileType::Directory {
                perm |= S_ISGID;
            } else if perm & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP
                && !cred.is_root()
                && !cred.in_group(gid)
            {
                perm &= !S_ISGID;
            }
        }
        insert_entry(dir, name, ino);
        dir.mtime = now;
        dir.ctime = now;
        if kind == FileType::Directory {
            dir.nlink += 1;
        }
        let node = Node {
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: cred.uid,
            gid,
            rdev,
            atime: now,
            mtime: now,
            ctime: now,
            lookups: 1,
            open_handles: 0,
            body,
            xattrs: Vec::new(),
        };
        st.nodes.insert(ino, node);
        ino
    }

    /// Steps 3 and 4 of the entry-creating calls (dir, search, name, `EEXIST`), with the
    /// removed-directory check between the name's own checks and the entry lookup.
    fn check_new_entry(
        &self,
        st: &State,
        cred: &Credentials,
        parent: u64,
        name: &[u8],
    ) -> Result<()> {
        let dir = lookup_dir(st, cred, parent)?;
        check_name(name)?;
        if is_dot_or_dotdot(name) {
            return Err(Errno::Exists);
        }
        check_not_removed(dir)?;
        if find_entry(dir, name).is_some() {
            return Err(Errno::Exists);
        }
        Ok(())
    }

    /// Units of `Config::max_inodes` in use: every inode, and every name of a non-directory
    /// beyond its first (tmpfs's `shmem_link` reserves an inode for each, and `shmem_unlink`
    /// gives one back while other names remain).
    fn inodes_charged(st: &State) -> u64 {
        let extra_names: u64 = (st.nodes.values())
            .filter(|n| n.kind != FileType::Directory)
            .map(|n| u64::from(n.nlink.saturating_sub(1)))
            .sum();
        st.nodes.len() as u64 + extra_names
    }

    fn inode_budget(&self, st: &State) -> Result<()> {
        if Self::inodes_charged(st) >= self.config.max_inodes {
            return Err(Errno::NoSpace);
        }
        Ok(())
    }

    /// `open`'s checks and effects on an existing inode; returns the new handle.
    fn open_inode(
        &self,
        st: &mut State,
        cred: &Credentials,
        ino: u64,
        flags: OpenFlags,
    ) -> Result<u64> {
        let now = self.clock.now();
        let node = st.nodes.get_mut(&ino).ok_or(Errno::NotFound)?;
        if node.kind == FileType::Symlink {
            return Err(Errno::TooManySymlinks);
        }
        if flags.directory && node.kind != FileType::Directory {
            return Err(Errno::NotADirectory);
        }
        // O_TRUNC asks for write permission and truncates even on a read-only open (Linux).
        let writes = flags.write || flags.truncate;
        if node.kind == FileType::Directory && writes {
            return Err(Errno::IsADirectory);
        }
        let mask = AccessMask {
            read: flags.read,
            write: writes,
            execute: false,
        };
        if !permits(node, cred, mask) {
            return Err(Errno::PermissionDenied);
        }
        match node.kind {
            FileType::Socket => return Err(Errno::NoSuchDeviceOrAddress),
            FileType::NamedPipe | FileType::CharDevice | FileType::BlockDevice => {
                return Err(Errno::NotSupported);
            }
            _ => {}
        }
        if flags.truncate && node.kind == FileType::RegularFile {
            self.resize(&mut st.used_blocks, &mut node.body, 0);
            node.mtime = now;
            node.ctime = now;
            if !cred.is_root() {
                kill_setid(node, cred);
            }
        }
        node.open_handles += 1;
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(
            fh,
            Handle {
                ino,
                read: flags.read,
                write: flags.write,
                append: flags.append,
                horizon: dir_horizon(&node.body),
            },
        );
        Ok(fh)
    }

    /// Frees `ino` if nothing refers to it any more, returning its blocks to the store.
    fn maybe_free(&self, st: &mut State, ino: u64) {
        let Some(node) = st.nodes.get(&ino) else {
            return;
        };
        if node.nlink == 0 && node.lookups == 0 && node.open_handles == 0 {
            if let Body::File { blocks, .. } = &node.body {
                st.used_blocks -= blocks.len() as u64;
            }
            st.used_blocks -= self.xattr_blocks(&node.xattrs);
            st.nodes.remove(&ino);
        } else if node.nlink == 0 && node.open_handles == 0 {
            // Unreachable data (only lookup references remain): the blocks go at once.
            let freed = match st.nodes.get_mut(&ino).map(|n| &mut n.body) {
                Some(Body::File { blocks, .. }) => core::mem::take(blocks).len() as u64,
                _ => 0,
            };
            st.used_blocks -= freed;
        }
    }

    fn handle(st: &State, fh: Fh) -> Result<&Handle> {
        st.handles.get(&fh.0).ok_or(Errno::BadHandle)
    }

    /// The common part of `mknod`, `mkdir` and `symlink` after their own first checks.
    fn make_node(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        new: NewInode,
    ) -> Result<Attr> {
        let kind = new.kind;
        let mut st = self.lock();
        self.check_new_entry(&st, cred, parent.0, name)?;
        if !permits(&st.nodes[&parent.0], cred, AccessMask::WRITE_EXECUTE) {
            return Err(Errno::PermissionDenied);
        }
        if matches!(kind, FileType::CharDevice | FileType::BlockDevice) && !cred.is_root() {
            return Err(Errno::NotPermitted);
        }
        if kind == FileType::Directory && st.nodes[&parent.0].nlink >= LINK_MAX {
            return Err(Errno::TooManyLinks);
        }
        self.inode_budget(&st)?;
        let ino = self.create_inode(&mut st, cred, parent.0, name, new);
        Ok(self.attr_of(ino, &st.nodes[&ino]))
    }
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Model")
            .field("inodes", &st.nodes.len())
            .field("handles", &st.handles.len())
            .field("used_blocks", &st.used_blocks)
            .finish_non_exhaustive()
    }
}

fn set_time(slot: &mut Timestamp, set: TimeSet, now: Timestamp) {
    match set {
        TimeSet::Omit => {}
        TimeSet::Now => *slot = now,
        TimeSet::At(t) => *slot = t,
    }
}

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn model() -> (Model, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        (
            Model::new(Config::default(), 4096, 64, clock.clone()),
            clock,
        )
    }

    #[test]
    fn root_is_inode_one_and_new_inodes_count_from_two() {
        let (fs, _) = model();
        let root = Credentials::root();
        assert_eq!(fs.getattr(&root, Ino::ROOT).unwrap().nlink, 2);
        assert_eq!(fs.mkdir(&root, Ino::ROOT, b"a", 0o755).unwrap().ino, Ino(2));
        fs.rmdir(&root, Ino::ROOT, b"a").unwrap();
        fs.forget(Ino(2), 1);
        assert_eq!(fs.mkdir(&root, Ino::ROOT, b"b", 0o755).unwrap().ino, Ino(3));
    }

    #[test]
    fn seek_data_and_hole_follow_allocated_blocks() {
        let (fs, _) = model();
        let root = Credentials::root();
        let (_, fh) = fs
            .create(&root, Ino::ROOT, b"f", 0o644, OpenFlags::READ_WRITE)
            .unwrap();
        fs.write(&root, fh, 8192, b"x").unwrap();
        assert_eq!(fs.lseek(&root, fh, 0, SeekWhence::Data), Ok(8192));
        assert_eq!(fs.lseek(&root, fh, 0, SeekWhence::Hole), Ok(0));
        assert_eq!(fs.lseek(&root, fh, 8192, SeekWhence::Hole), Ok(8193));
        assert_eq!(
            fs.lseek(&root, fh, 8193, SeekWhence::Data),
            Err(Errno::NoSuchDeviceOrAddress)
        );
        assert_eq!(fs.getattr(&root, Ino(2)).unwrap().blocks, 8);
    }
}
