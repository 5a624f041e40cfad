//! Inodes: their identity, counts and locked state, the sharded table that holds them, the
//! inode budget, times, and the release that frees an inode nothing refers to any more.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::hash::BuildHasher;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hashbrown::HashTable;
use spin::{RwLock, RwLockWriteGuard};

use super::data::FileData;
use super::dir::{BOGO_DIRENT_SIZE, Dir};
use super::xattr::Xattrs;
use super::{AtimePolicy, MemFs, SHARDS};
use crate::block::BlockStore;
use crate::error::{Errno, Result};
use crate::types::*;

/// Seconds after which relatime updates the access time regardless.
pub(super) const RELATIME_SECS: i64 = 24 * 60 * 60;

pub(super) enum Body {
    File(FileData),
    Dir(Box<Dir>),
    Symlink(Box<[u8]>),
    /// A FIFO, socket or device record, with the device number (0 but for devices).
    Special {
        rdev: u32,
    },
}

/// A timestamp packed into 12 bytes (4-byte aligned): three of them in every inode.
#[repr(C, packed(4))]
#[derive(Clone, Copy)]
pub(super) struct Time {
    pub(super) secs: i64,
    pub(super) nanos: u32,
}

impl Time {
    pub(super) fn get(self) -> Timestamp {
        Timestamp {
            secs: self.secs,
            nanos: self.nanos,
        }
    }
}

impl From<Timestamp> for Time {
    fn from(t: Timestamp) -> Time {
        Time {
            secs: t.secs,
            nanos: t.nanos,
        }
    }
}

/// The mutable part of an inode, behind its lock.
pub(super) struct State {
    pub(super) perm: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) nlink: u32,
    pub(super) freed: bool,
    /// Handles open to run the file (`OpenFlags::exec`): while any is, the file may not be
    /// opened for writing or truncated (`ETXTBSY`). Counted up to `u16::MAX` (two bytes fit
    /// beside `freed` where four would grow every inode by eight): with more runs of one file
    /// at once than that, it is writable again while the runs beyond that many still go.
    pub(super) executing: u16,
    /// Whether the store places the file's blocks (`Filesystem::place_file`); one byte,
    /// beside `freed`, where it costs an inode nothing.
    pub(super) placement: Placement,
    pub(super) atime: Time,
    pub(super) mtime: Time,
    pub(super) ctime: Time,
    pub(super) body: Body,
    pub(super) xattrs: Option<Box<Xattrs>>,
}

/// Whether a regular file is placed by its store ([`crate::Filesystem::place_file`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Placement {
    /// Its blocks are wherever `BlockStore::allocate` put them.
    Not,
    /// Its new blocks come from `BlockStore::allocate_for` and the store is told of every
    /// change; older blocks are moved where the store places them a run at a time (which of
    /// them are is the store's to tell: `BlockStore::placed_at`).
    Placed,
}

impl State {
    /// The number the store knows the file by, while it is placed at all.
    pub(super) fn placed_as(&self, ino: Ino) -> Option<u64> {
        (self.placement != Placement::Not).then_some(ino.0)
    }

    pub(super) fn dir(&self) -> Result<&Dir> {
        match &self.body {
            Body::Dir(d) => Ok(d),
            _ => Err(Errno::NotADirectory),
        }
    }

    pub(super) fn dir_mut(&mut self) -> Result<&mut Dir> {
        match &mut self.body {
            Body::Dir(d) => Ok(d),
            _ => Err(Errno::NotADirectory),
        }
    }

    pub(super) fn file_mut(&mut self) -> Option<&mut FileData> {
        match &mut self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }

    pub(super) fn touch_modified(&mut self, now: Timestamp) {
        self.mtime = now.into();
        self.ctime = now.into();
    }
}

/// An inode: identity, reference counts and its locked state.
pub(super) struct Inode {
    pub(super) ino: Ino,
    pub(super) kind: FileType,
    pub(super) lookups: AtomicU64,
    pub(super) opens: AtomicU32,
    pub(super) state: RwLock<State>,
}

/// What a new inode is made of.
pub(super) struct NewInode {
    pub(super) kind: FileType,
    pub(super) perm: u32,
    pub(super) body: Body,
}

impl<B: BlockStore> MemFs<B> {
    pub(super) fn shard(&self, ino: Ino) -> &RwLock<HashTable<Arc<Inode>>> {
        &self.inodes[(ino.0 as usize) % SHARDS]
    }

    pub(super) fn hash_ino(&self, ino: Ino) -> u64 {
        self.hasher.hash_one(ino.0)
    }

    /// Adds an inode to the table.
    pub(super) fn enter_inode(&self, inode: Arc<Inode>) {
        let hash = self.hash_ino(inode.ino);
        let rehash = |i: &Arc<Inode>| self.hash_ino(i.ino);
        self.shard(inode.ino)
            .write()
            .insert_unique(hash, inode, rehash);
    }

    pub(super) fn inode(&self, ino: Ino) -> Result<Arc<Inode>> {
        let hash = self.hash_ino(ino);
        let shard = self.shard(ino).read();
        shard
            .find(hash, |i| i.ino == ino)
            .cloned()
            .ok_or(Errno::NotFound)
    }

    pub(super) fn attr_of(&self, inode: &Inode, st: &State) -> Attr {
        let bs = self.block_size();
        let (size, blocks) = match &st.body {
            Body::File(f) => (f.size, f.blocks.len() as u64 * (bs / 512)),
            Body::Dir(d) => ((d.len() as u64 + 2) * BOGO_DIRENT_SIZE, 0),
            Body::Symlink(t) => (t.len() as u64, 0),
            Body::Special { .. } => (0, 0),
        };
        Attr {
            ino: inode.ino,
            kind: inode.kind,
            perm: st.perm,
            nlink: st.nlink,
            uid: st.uid,
            gid: st.gid,
            rdev: match st.body {
                Body::Special { rdev } => rdev,
                _ => 0,
            },
            size,
            blocks,
            blksize: bs as u32,
            atime: st.atime.get(),
            mtime: st.mtime.get(),
            ctime: st.ctime.get(),
        }
    }

    /// Takes one unit of the inode budget, for a new inode or another name of a
    /// non-directory: `ENOSPC` when `Config::max_inodes` are in use.
    pub(super) fn charge_inode(&self) -> Result<()> {
        let max = self.config.max_inodes;
        self.charged_inodes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| Errno::NoSpace)
    }

    /// Gives back one unit taken by [`charge_inode`](Self::charge_inode).
    pub(super) fn uncharge_inode(&self) {
        let before = self.charged_inodes.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 1, "the root's unit is never given back");
    }

    /// Makes a new inode (one lookup counted) and enters it in the table. The caller has
    /// charged it with [`charge_inode`](Self::charge_inode).
    pub(super) fn new_inode(&self, kind: FileType, state: State) -> Arc<Inode> {
        self.live_inodes.fetch_add(1, Ordering::AcqRel);
        let ino = Ino(self.next_ino.fetch_add(1, Ordering::Relaxed));
        let inode = Arc::new(Inode {
            ino,
            kind,
            lookups: AtomicU64::new(1),
            opens: AtomicU32::new(0),
            state: RwLock::new(state),
        });
        self.enter_inode(inode.clone());
        inode
    }

    /// Frees `inode` if nothing refers to it any more: no link, no lookup, no handle.
    pub(super) fn release_if_unused(&self, inode: &Inode) {
        let placed;
        let body = {
            let mut st = inode.state.write();
            if st.freed || st.nlink > 0 || inode.opens.load(Ordering::Acquire) > 0 {
                return;
            }
            if inode.lookups.load(Ordering::Acquire) > 0 {
                // No name and no handle: nothing can open the inode again, only the kernel's
                // lookup references remain, and they may be forgotten long after the unlink.
                // The data goes now, as tmpfs frees it at unlink; the record stays.
                let placed = core::mem::replace(&mut st.placement, Placement::Not);
                let Body::File(f) = &mut st.body else {
                    return;
                };
                let blocks = core::mem::take(&mut f.blocks);
                drop(st);
                for block in blocks.values() {
                    let freed = self.store.free(*block);
                    debug_assert!(freed.is_ok(), "block {block:?} of a file was not allocated");
                }
                if placed != Placement::Not {
                    self.store.file_gone(inode.ino.0);
                }
                return;
            }
            st.freed = true;
            placed = core::mem::replace(&mut st.placement, Placement::Not);
            if let Some(mut x) = st.xattrs.take() {
                self.shrink_charge(&mut x.charge, 0);
            }
            core::mem::replace(&mut st.body, Body::Special { rdev: 0 })
        };
        let hash = self.hash_ino(inode.ino);
        if let Ok(entry) = self
            .shard(inode.ino)
            .write()
            .find_entry(hash, |i| i.ino == inode.ino)
        {
            entry.remove();
        }
        self.live_inodes.fetch_sub(1, Ordering::AcqRel);
        self.uncharge_inode();
        if let Body::File(f) = body {
            for block in f.blocks.values() {
                let freed = self.store.free(*block);
                debug_assert!(freed.is_ok(), "block {block:?} of a file was not allocated");
            }
            if placed != Placement::Not {
                self.store.file_gone(inode.ino.0);
            }
        }
    }

    /// Updates the access time after a read, as the policy says.
    pub(super) fn accessed(&self, inode: &Inode) {
        let needs = |st: &State, now: Timestamp| match self.config.atime {
            AtimePolicy::Never => false,
            AtimePolicy::Strict => st.atime.get() != now,
            AtimePolicy::Relatime => {
                let atime = st.atime.get();
                atime <= st.mtime.get()
                    || atime <= st.ctime.get()
                    || now.secs.saturating_sub(atime.secs) >= RELATIME_SECS
            }
        };
        if self.config.atime == AtimePolicy::Never {
            return;
        }
        let now = self.now();
        if !needs(&inode.state.read(), now) {
            return;
        }
        let mut st = inode.state.write();
        if !st.freed && needs(&st, now) {
            let _change = self.attribute_change(inode.ino);
            st.atime = now.into();
        }
    }

    /// Locks two distinct inodes' states for writing: a directory before a non-directory (other
    /// calls lock a directory and then an entry in it), else in inode-number order (two
    /// directories here are never one above the other: rename has ruled that out).
    pub(super) fn lock_pair<'a>(
        a: &'a Inode,
        b: &'a Inode,
    ) -> (RwLockWriteGuard<'a, State>, RwLockWriteGuard<'a, State>) {
        let rank = |i: &Inode| (i.kind != FileType::Directory, i.ino);
        if rank(a) < rank(b) {
            let ga = a.state.write();
            (ga, b.state.write())
        } else {
            let gb = b.state.write();
            (a.state.write(), gb)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inodes_stay_compact() {
        // Measured on x86_64; a change that grows these shows up in bytes per inode.
        assert_eq!(core::mem::size_of::<Time>(), 12);
        assert!(
            core::mem::size_of::<State>() <= 104,
            "{}",
            core::mem::size_of::<State>()
        );
        assert!(
            core::mem::size_of::<Inode>() <= 136,
            "{}",
            core::mem::size_of::<Inode>()
        );
    }
}
