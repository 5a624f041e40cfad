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
//!
//! The rules live beside this file: `dir.rs` (names and entries), `perm.rs` (permissions and
//! set-ID bits), `xattr.rs` (extended attributes), and `fs_impl.rs` (the operations).
//! `locks.rs` models the lock table on its own ([`locks::LockModel`]).
//!
//! [`Filesystem`]: btfuse_core::Filesystem

mod dir;
mod fs_impl;
pub mod locks;
mod perm;
mod xattr;

use btfuse_core::{
    AccessMask, AtimePolicy, Attr, Clock, Config, Credentials, Errno, Fh, FileType, Ino, LINK_MAX,
    OpenFlags, Result, S_ISGID, TimeSet, Timestamp,
};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use dir::{
    check_name, check_not_removed, dir_horizon, find_entry, insert_entry, is_dot_or_dotdot,
    lookup_dir,
};
use perm::{kill_setid, permits};

/// Seconds in 24 hours: the age at which `Relatime` refreshes atime regardless.
const DAY_SECS: i64 = 24 * 60 * 60;
/// tmpfs's `BOGO_DIRENT_SIZE`: what each entry adds to a directory's size.
const BOGO_DIRENT_SIZE: u64 = 20;
/// Group-execute permission bit.
const S_IXGRP: u32 = 0o010;

/// The reference implementation of [`Filesystem`](btfuse_core::Filesystem) the property test
/// compares `MemFs` against.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use btfuse_core::{Filesystem, SeekWhence};

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
