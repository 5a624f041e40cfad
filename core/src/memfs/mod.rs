//! [`MemFs`]: the in-memory implementation of [`Filesystem`] over any [`BlockStore`].
//!
//! # Layout
//!
//! - **Inode table**: [`SHARDS`] shards, each a `spin::RwLock` around a `hashbrown` map from
//!   inode number to `Arc<Inode>`, chosen by the low bits of the number. Keyed by number, not
//!   by path, so renaming a directory touches two entries and nothing below them.
//! - **Inode**: immutable identity (number, type), atomic reference counts (kernel lookups,
//!   open handles), and a `spin::RwLock<State>` holding everything else: mode, owner, links,
//!   times, extended attributes and the body (file block map, directory with its parent,
//!   symlink target).
//! - **Directory**: an arena red-black tree of entries ordered by readdir cookie
//!   ([`RbTree`]), and a `hashbrown::HashTable` of node handles hashed by name for O(1) average
//!   lookup. The name is stored once, in the tree node.
//! - **File**: its size and a `BTreeMap` from block index to [`BlockNo`]; absent indices are
//!   holes that read as zeros and use no block.
//! - **Handles**: sharded like the inode table; a handle holds an `Arc<Inode>`, so an unlinked
//!   file stays readable until its last handle is released.
//!
//! # Invariants
//!
//! - An inode is in the table exactly while `nlink > 0`, its lookup count is non-zero, or a
//!   handle is open on it. When the last of the three goes, [`MemFs::release_if_unused`]
//!   marks its state `freed`, returns its blocks and removes it from the table, all decided under
//!   its state write lock. A file with neither links nor handles but still looked up gives
//!   back its blocks at once (nothing can reach its data again), as tmpfs does at unlink. Lookup counts only grow while the parent's lock is held and an
//!   entry names the inode (so `nlink > 0`); open counts only grow under the inode's state lock
//!   after checking `freed`. Hence nothing can revive an inode that is being freed.
//! - Bytes of a file at or beyond its size are zero in every block it holds (truncation zeroes
//!   the tail of the last block), so growing a file never exposes old data.
//! - A directory's `nlink` is 2 plus its subdirectories; its `parent` names the directory
//!   holding its one entry (the root's parent is itself).
//! - **Inode budget**: `charged_inodes` counts the units of `Config::max_inodes` in use: one
//!   per live inode (taken at creation, given back when the inode is freed), and one per name
//!   of a non-directory beyond its first (taken by `link`, given back when `unlink` or a
//!   replacing `rename` removes a name while others remain), as tmpfs counts links against
//!   `nr_inodes`. So it always equals `live_inodes` plus the sum over live non-directories of
//!   `nlink - 1` (0 for an unlinked one), and `statfs` reports the rest as free. Names cost
//!   memory as inodes do; without this, links would be an unbounded way to use it.
//! - **Space**: the store's capacity bounds the bytes users store, and every `ENOSPC` path,
//!   `statfs` and [`Usage::blocks_used`] read one figure for it, the store's used blocks. A
//!   file's data are blocks. An inode's extended attributes live on the heap, but their names
//!   plus values are charged as `bytes.div_ceil(block_size)` blocks taken from the store and
//!   kept, never read or written, in `Xattrs::charge`: taken before an attribute grows, all or
//!   nothing (a `setxattr` that fails changes nothing), given back as attributes shrink or go
//!   and when the inode is freed. So the store's used blocks are always the live inodes' file
//!   blocks plus their charges. Real blocks rather than a second counter: the store's own
//!   reservation stays the only arbiter, exact under races, and no allocation path can forget
//!   the charge. The price: attribute bytes are held twice at worst (heap and pool), which is
//!   still bounded by the store's size.
//!
//! # Lock order
//!
//! 1. `rename_lock` (only renames between two different directories take it; it freezes every
//!    directory's parent, so such a rename first walks each parent's ancestors, taking one
//!    directory lock at a time, and then locks the parents),
//! 2. directory state locks, ancestors before descendants; two unrelated directories (only a
//!    rename holds two, under `rename_lock`) in inode-number order,
//! 3. state locks of the entries an operation touches (not parents): directories before
//!    other inodes, two of a kind in inode-number order. (`link`, `unlink` and `create` lock a
//!    directory, then an entry in it; rename's source and target follow the same rule.)
//! 4. table and handle shard locks, which are leaves: nothing is locked while one is held.
//!
//! Block store calls happen under the file's state lock; the store's own locks are below all
//! of these.
//!
//! # Files
//!
//! - `inode.rs`: an inode and its locked state, the inode table and budget, access times, and
//!   freeing an inode nothing refers to.
//! - `dir.rs`: a directory's entries and name index, and [`MemFs::check_directories`].
//! - `names.rs`: the rules a name obeys, lookup, and the path every new entry takes.
//! - `data.rs`: a file's block map and its I/O: read, write, resize, allocate, punch holes.
//! - `perm.rs`: permission checks and the set-ID rules.
//! - `xattr.rs`: extended attributes and the blocks that charge them to the store.
//! - `handle.rs`: open file descriptions and the handle table.
//! - `fs_impl.rs`: the [`Filesystem`] operations, built from the parts above.
//! - `tests.rs`: unit tests of the whole.
//!
//! [`Filesystem`]: crate::fs::Filesystem
//! [`RbTree`]: crate::rbtree::RbTree
//! [`BlockNo`]: crate::block::BlockNo

mod data;
mod dir;
mod fs_impl;
mod handle;
mod inode;
mod names;
mod perm;
mod xattr;

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use spin::{Mutex, RwLock};

use crate::block::BlockStore;
use crate::fs::{Change, ContentWatch};
use crate::types::*;

use dir::Dir;
use handle::{Handle, Sharded};
use inode::{Body, Inode, Placement, State};

/// Number of shards of the inode and handle tables.
pub const SHARDS: usize = 64;

/// When reads update the access time.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum AtimePolicy {
    /// Only when the access time is not after the modification or change time, or is a day
    /// old (Linux's default `relatime` mount option).
    #[default]
    Relatime,
    /// On every read (`strictatime`).
    Strict,
    /// Never (`noatime`).
    Never,
}

/// Settings of a [`MemFs`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Most live inodes, the root included, where every name of a non-directory beyond its
    /// first counts as one more (as tmpfs counts hard links); creating or linking past it is
    /// `ENOSPC`.
    pub max_inodes: u64,
    /// Most bytes of extended attributes per inode (names plus values); more is `ENOSPC`.
    /// Within this budget, the bytes also take room in the store (whole blocks per inode), so a
    /// full store refuses them too.
    pub max_xattr_bytes: usize,
    /// When reads update the access time.
    pub atime: AtimePolicy,
    /// Refuse hard links that Linux's `fs.protected_hardlinks = 1` refuses.
    pub protected_hardlinks: bool,
    /// Permission bits of the root directory.
    pub root_perm: u32,
    /// Owner of the root directory.
    pub root_uid: u32,
    /// Group of the root directory.
    pub root_gid: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_inodes: 1 << 24,
            // Room for two values of the largest size Linux allows, with their names.
            max_xattr_bytes: 2 * (XATTR_SIZE_MAX + XATTR_NAME_MAX),
            atime: AtimePolicy::Relatime,
            protected_hardlinks: true,
            root_perm: 0o755,
            root_uid: 0,
            root_gid: 0,
        }
    }
}

/// What a [`MemFs`] holds right now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Usage {
    /// Live inodes, the root included.
    pub inodes: u64,
    /// Units of [`Config::max_inodes`] in use: `inodes` plus every hard link of a
    /// non-directory beyond its first name. `statfs` reports the rest as free.
    pub inodes_charged: u64,
    /// Open handles.
    pub handles: u64,
    /// Blocks allocated in the store.
    pub blocks_used: u64,
    /// Blocks the store can hold.
    pub blocks_total: u64,
    /// Bytes per block.
    pub block_size: u64,
}

/// The in-memory filesystem. See the module documentation for its layout and lock order.
pub struct MemFs<B: BlockStore> {
    store: B,
    config: Config,
    clock: Box<dyn Clock>,
    hasher: DefaultHashBuilder,
    inodes: Box<[RwLock<HashTable<Arc<Inode>>>]>,
    /// The root, also in `inodes`: every absolute path starts here, and a lookup through this
    /// reference skips the table's lock and a reference count.
    root: Arc<Inode>,
    handles: Sharded<Handle>,
    next_ino: AtomicU64,
    next_fh: AtomicU64,
    live_inodes: AtomicU64,
    /// Units of `Config::max_inodes` in use: `live_inodes` plus, for every non-directory, its
    /// names beyond the first (see the invariants).
    charged_inodes: AtomicU64,
    open_handles: AtomicU64,
    rename_lock: Mutex<()>,
    /// Told about content changes, once a frontend asks ([`Filesystem::watch_content`]).
    ///
    /// [`Filesystem::watch_content`]: crate::fs::Filesystem::watch_content
    watch: spin::Once<Arc<dyn ContentWatch>>,
    /// The file locks of this filesystem, shared by every frontend that serves it.
    locks: crate::locks::LockTable,
}

/// A change under way: [`ContentWatch::changed`] follows when it is dropped, so a change
/// that fails part way is reported as complete too.
struct ContentChange<'a> {
    watch: Option<&'a Arc<dyn ContentWatch>>,
    ino: Ino,
    what: Change,
}

impl Drop for ContentChange<'_> {
    fn drop(&mut self) {
        if let Some(watch) = self.watch {
            watch.changed(self.ino, self.what);
        }
    }
}

impl<B: BlockStore> MemFs<B> {
    /// A filesystem holding only an empty root directory, storing data in `store`.
    pub fn new(store: B, config: Config, clock: impl Clock + 'static) -> MemFs<B> {
        let now = clock.now();
        let root = Arc::new(Inode {
            ino: Ino::ROOT,
            kind: FileType::Directory,
            lookups: AtomicU64::new(0),
            opens: AtomicU32::new(0),
            state: RwLock::new(State {
                perm: config.root_perm & PERM_MASK,
                uid: config.root_uid,
                gid: config.root_gid,
                nlink: 2,
                freed: false,
                executing: 0,
                placement: Placement::Not,
                atime: now.into(),
                mtime: now.into(),
                ctime: now.into(),
                body: Body::Dir(Box::new(Dir::new(Ino::ROOT))),
                xattrs: None,
            }),
        });
        let fs = MemFs {
            store,
            clock: Box::new(clock),
            hasher: DefaultHashBuilder::default(),
            inodes: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
            root: Arc::clone(&root),
            handles: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            next_ino: AtomicU64::new(Ino::ROOT.0 + 1),
            next_fh: AtomicU64::new(1),
            live_inodes: AtomicU64::new(1),
            charged_inodes: AtomicU64::new(1),
            open_handles: AtomicU64::new(0),
            rename_lock: Mutex::new(()),
            watch: spin::Once::new(),
            locks: crate::locks::LockTable::new(),
            config,
        };
        fs.enter_inode(root);
        fs
    }

    /// The block store behind this filesystem.
    pub fn store(&self) -> &B {
        &self.store
    }

    /// The settings this filesystem was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counts of what the filesystem holds.
    pub fn usage(&self) -> Usage {
        Usage {
            inodes: self.live_inodes.load(Ordering::Relaxed),
            inodes_charged: self.charged_inodes.load(Ordering::Relaxed),
            handles: self.open_handles.load(Ordering::Relaxed),
            blocks_used: self.store.used_blocks(),
            blocks_total: self.store.capacity_blocks(),
            block_size: self.store.block_size() as u64,
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Announces a change to `ino`'s content (a directory's: its entries); the returned guard
    /// announces its end. Taken under the inode's write lock, so the announcements for one
    /// inode never overlap.
    fn content_change(&self, ino: Ino) -> ContentChange<'_> {
        self.change(ino, Change::Content)
    }

    /// Announces a change to `ino`'s attributes alone, as [`content_change`] does.
    ///
    /// [`content_change`]: MemFs::content_change
    fn attribute_change(&self, ino: Ino) -> ContentChange<'_> {
        self.change(ino, Change::Attributes)
    }

    fn change(&self, ino: Ino, what: Change) -> ContentChange<'_> {
        let watch = self.watch.get();
        if let Some(watch) = watch {
            watch.changing(ino, what);
        }
        ContentChange { watch, ino, what }
    }

    fn block_size(&self) -> u64 {
        self.store.block_size() as u64
    }
}

impl<B: BlockStore> Drop for MemFs<B> {
    /// Directory entries own their inodes, so dropping the root would drop its tree one level
    /// per stack frame. Emptying every directory first, while the table still holds every
    /// inode, makes the drop flat however deep the tree is.
    fn drop(&mut self) {
        for shard in self.inodes.iter() {
            for inode in shard.read().iter() {
                if let Body::Dir(dir) = &mut inode.state.write().body {
                    dir.index.clear();
                    dir.entries.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
