//! A directory's entries: the red-black tree that orders them by readdir cookie, the name
//! index beside it, and the check that the two (and the inodes they name) agree.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::{Inode, MemFs};
use crate::block::BlockStore;
use crate::error::{Errno, Result};
use crate::rbtree::{NodeId, RbTree};
use crate::types::*;

/// Bytes a directory's size grows by per entry, as tmpfs counts it.
pub(super) const BOGO_DIRENT_SIZE: u64 = 20;

/// First cookie of a real entry: 1 and 2 are `.` and `..`.
pub(super) const FIRST_COOKIE: u64 = 3;

/// Longest name stored inside a directory entry itself; longer ones go to the heap.
pub(super) const INLINE_NAME: usize = 22;

/// A directory entry's name: inline when it fits (most names do), so the common lookup reads
/// the name from the tree slot it already loaded, and a short name costs no allocation.
/// 24 bytes either way.
pub(super) enum NameBuf {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Heap(Box<[u8]>),
}

impl NameBuf {
    pub(super) fn new(name: &[u8]) -> NameBuf {
        if name.len() <= INLINE_NAME {
            let mut bytes = [0u8; INLINE_NAME];
            bytes[..name.len()].copy_from_slice(name);
            NameBuf::Inline {
                len: name.len() as u8,
                bytes,
            }
        } else {
            NameBuf::Heap(name.into())
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            NameBuf::Inline { len, bytes } => &bytes[..usize::from(*len)],
            NameBuf::Heap(name) => name,
        }
    }
}

/// Bits of [`Entry::ino_kind`] that hold the inode's type: the top three. Inode numbers come
/// from a counter and never reach 2^61.
pub(super) const KIND_SHIFT: u32 = 61;

/// One directory entry, stored in the directory's tree: inode number and type packed into one
/// word (what readdir needs), the name, and the inode itself (what lookup needs, without a trip
/// through the inode table).
pub(super) struct Entry {
    pub(super) ino_kind: u64,
    pub(super) name: NameBuf,
    pub(super) inode: Arc<Inode>,
}

impl Entry {
    pub(super) fn new(inode: &Arc<Inode>, name: &[u8]) -> Entry {
        let ino_kind = pack_ino_kind(inode.ino, inode.kind);
        Entry {
            ino_kind,
            name: NameBuf::new(name),
            inode: inode.clone(),
        }
    }

    pub(super) fn ino(&self) -> Ino {
        unpack_ino_kind(self.ino_kind).0
    }

    pub(super) fn kind(&self) -> FileType {
        unpack_ino_kind(self.ino_kind).1
    }

    pub(super) fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }
}

/// An inode number and type in one word: the type in the top three bits.
pub(super) fn pack_ino_kind(ino: Ino, kind: FileType) -> u64 {
    debug_assert!(ino.0 < 1 << KIND_SHIFT);
    let code = match kind {
        FileType::RegularFile => 0,
        FileType::Directory => 1,
        FileType::Symlink => 2,
        FileType::NamedPipe => 3,
        FileType::Socket => 4,
        FileType::CharDevice => 5,
        FileType::BlockDevice => 6,
    };
    ino.0 | (code << KIND_SHIFT)
}

/// The inverse of [`pack_ino_kind`].
pub(super) fn unpack_ino_kind(word: u64) -> (Ino, FileType) {
    let kind = match word >> KIND_SHIFT {
        0 => FileType::RegularFile,
        1 => FileType::Directory,
        2 => FileType::Symlink,
        3 => FileType::NamedPipe,
        4 => FileType::Socket,
        5 => FileType::CharDevice,
        _ => FileType::BlockDevice,
    };
    (Ino(word & ((1 << KIND_SHIFT) - 1)), kind)
}

/// A directory's entries: ordered by cookie in `entries`, indexed by name in `index`.
pub(super) struct Dir {
    pub(super) entries: RbTree<u64, Entry>,
    pub(super) index: HashTable<NodeId>,
    pub(super) next_cookie: u64,
    /// The directory holding this one's entry (the root's is itself). Changed only under
    /// `rename_lock`, so a rename holding it can walk ancestors one lock at a time.
    pub(super) parent: Ino,
}

impl Dir {
    pub(super) fn new(parent: Ino) -> Dir {
        Dir {
            entries: RbTree::new(),
            index: HashTable::new(),
            next_cookie: FIRST_COOKIE,
            parent,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn node_name(entries: &RbTree<u64, Entry>, id: NodeId) -> &[u8] {
        match entries.get(id) {
            Some((_, e)) => e.name(),
            None => &[],
        }
    }

    pub(super) fn get(&self, hasher: &DefaultHashBuilder, name: &[u8]) -> Option<&Entry> {
        let hash = hasher.hash_one(name);
        let entries = &self.entries;
        let id = self
            .index
            .find(hash, |&id| Self::node_name(entries, id) == name)?;
        entries.get(*id).map(|(_, e)| e)
    }

    /// Adds an entry the caller knows is absent; `ENOSPC` if memory for it cannot be had.
    pub(super) fn insert(
        &mut self,
        hasher: &DefaultHashBuilder,
        name: &[u8],
        inode: &Arc<Inode>,
    ) -> Result<()> {
        let entries = &self.entries;
        self.index
            .try_reserve(1, |&id| hasher.hash_one(Self::node_name(entries, id)))
            .map_err(|_| Errno::NoSpace)?;
        self.entries.try_reserve(1).map_err(|_| Errno::NoSpace)?;
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let entry = Entry::new(inode, name);
        let id = self.entries.insert(cookie, entry).map_err(|_| Errno::Io)?;
        let entries = &self.entries;
        self.index.insert_unique(hasher.hash_one(name), id, |&id| {
            hasher.hash_one(Self::node_name(entries, id))
        });
        Ok(())
    }

    pub(super) fn remove(&mut self, hasher: &DefaultHashBuilder, name: &[u8]) -> Option<Entry> {
        let hash = hasher.hash_one(name);
        let entries = &self.entries;
        let found = self
            .index
            .find_entry(hash, |&id| Self::node_name(entries, id) == name)
            .ok()?;
        let (id, _) = found.remove();
        Some(self.entries.remove(id).1)
    }
}

impl<B: BlockStore> MemFs<B> {
    /// Checks every directory's structure: its red-black tree invariants, that the name index
    /// and the tree hold the same entries, that every entry names a live inode of the recorded
    /// type, and that a subdirectory's `parent` is the directory listing it. Returns the first
    /// violation with the directory's inode number. For tests: it locks one directory at a time,
    /// so run it while nothing else changes the tree.
    pub fn check_directories(&self) -> core::result::Result<(), (Ino, &'static str)> {
        let mut dirs = Vec::new();
        for shard in self.inodes.iter() {
            dirs.extend(
                shard
                    .read()
                    .iter()
                    .filter(|i| i.kind == FileType::Directory)
                    .cloned(),
            );
        }
        for inode in dirs {
            let fail = |why| Err((inode.ino, why));
            let st = inode.state.read();
            let Ok(dir) = st.dir() else {
                return fail("directory without a directory body");
            };
            if dir.entries.check_invariants().is_err() {
                return fail("red-black tree invariant broken");
            }
            if dir.index.len() != dir.entries.len() {
                return fail("name index and tree differ in size");
            }
            let mut subdirs = 0;
            for (_, &cookie, entry) in dir.entries.iter() {
                if cookie < FIRST_COOKIE || cookie >= dir.next_cookie {
                    return fail("cookie out of range");
                }
                if dir.get(&self.hasher, entry.name()).map(|e| e.ino()) != Some(entry.ino()) {
                    return fail("entry not found through the name index");
                }
                let Ok(child) = self.inode(entry.ino()) else {
                    return fail("entry names no inode");
                };
                if child.kind != entry.kind() {
                    return fail("entry type differs from the inode's");
                }
                if child.kind == FileType::Directory {
                    subdirs += 1;
                    if child.state.read().dir().map(|d| d.parent) != Ok(inode.ino) {
                        return fail("subdirectory's parent is not this directory");
                    }
                }
            }
            if !st.freed && st.nlink != 0 && st.nlink != 2 + subdirs {
                return fail("directory nlink is not 2 + subdirectories");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ZeroClock;
    use crate::block::MemPool;
    use crate::fs::Filesystem;
    use crate::memfs::Config;

    #[test]
    fn entries_stay_compact() {
        assert_eq!(core::mem::size_of::<NameBuf>(), 24);
        assert_eq!(core::mem::size_of::<Entry>(), 40);
        let long = [b'n'; 200];
        for name in [
            &b"a"[..],
            &[b'x'; INLINE_NAME],
            &[b'y'; INLINE_NAME + 1],
            &long,
        ] {
            assert_eq!(NameBuf::new(name).as_bytes(), name);
        }
        for kind in [
            FileType::RegularFile,
            FileType::BlockDevice,
            FileType::Directory,
        ] {
            for ino in [Ino(1), Ino((1 << KIND_SHIFT) - 1)] {
                assert_eq!(unpack_ino_kind(pack_ino_kind(ino, kind)), (ino, kind));
            }
        }
    }

    #[test]
    fn check_directories_detects_corruption() {
        let fs = MemFs::new(MemPool::new(1 << 20), Config::default(), ZeroClock);
        let root = Credentials::root();
        let a = fs.mkdir(&root, Ino::ROOT, b"a", 0o755).unwrap();
        let b = fs.mkdir(&root, a.ino, b"b", 0o755).unwrap();
        assert_eq!(fs.check_directories(), Ok(()));
        let b_inode = fs.inode(b.ino).unwrap();
        b_inode.state.write().dir_mut().unwrap().parent = Ino::ROOT;
        assert_eq!(
            fs.check_directories(),
            Err((a.ino, "subdirectory's parent is not this directory"))
        );
        b_inode.state.write().dir_mut().unwrap().parent = a.ino;
        fs.inode(a.ino).unwrap().state.write().nlink = 5;
        assert_eq!(
            fs.check_directories(),
            Err((a.ino, "directory nlink is not 2 + subdirectories"))
        );
    }
}
