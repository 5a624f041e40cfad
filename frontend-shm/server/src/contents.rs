//! The content table's writing side: the server maps it writable, counts each change to a
//! regular file's content, a directory's listing or an inode's attributes in the slot of its
//! inode, and hands the sealed memfd to every client.
//! The layout, the meaning of a slot's word and who may write are
//! [`btfuse_ring_client::contents`]'s.

#![allow(unsafe_code)]

use std::hash::{BuildHasher, RandomState};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use btfuse_core::{Change, ContentWatch, Ino};
use btfuse_ring_client::contents::{ATTRIBUTES, SLOTS, STRIDE, TABLE_LEN, UNDER_WAY};
use memmap2::{MmapMut, MmapOptions};

/// The server's side: counts changes, and is handed to every client.
pub(crate) struct ContentTable {
    map: MmapMut,
    /// The key of the slots' hash; never leaves the server.
    key: RandomState,
    /// The sealed memfd, sent to clients (who can only map it read-only).
    fd: OwnedFd,
}

impl ContentTable {
    /// Creates and seals a new table, all versions 0.
    pub(crate) fn new() -> io::Result<ContentTable> {
        let fd = crate::sys::memfd(c"btfuse-contents", TABLE_LEN as u64)?;
        // SAFETY: a fresh memfd of TABLE_LEN bytes that only this process holds. The identity
        // is written before any client has the table; after that the mapping is touched only
        // through atomics (`word`), since clients read it concurrently.
        let mut map = unsafe { MmapOptions::new().len(TABLE_LEN).map_mut(&fd)? };
        let identity = crate::sys::random_u64()?.max(1);
        map[..8].copy_from_slice(&identity.to_le_bytes());
        crate::sys::seal_future_writes(&fd)?;
        Ok(ContentTable {
            map,
            key: RandomState::new(),
            fd,
        })
    }

    /// The slot that counts `ino`'s changes.
    pub(crate) fn slot(&self, ino: Ino) -> u32 {
        (self.key.hash_one(ino.0) % SLOTS as u64) as u32
    }

    /// `ino`'s slot's content word (`at` 0) or attribute word (`at` [`ATTRIBUTES`]).
    fn word(&self, ino: Ino, at: usize) -> &AtomicU64 {
        debug_assert!(at == 0 || at == ATTRIBUTES);
        let offset = (1 + self.slot(ino) as usize) * STRIDE + at;
        // SAFETY: the offset is a slot's line (the slot is below SLOTS) plus 0 or 8, so below
        // TABLE_LEN - 8 and 8-byte aligned in a page-aligned mapping; the word is only
        // accessed atomically, here and by clients.
        unsafe { &*self.map.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// The version of `ino`'s content now.
    pub(crate) fn version(&self, ino: Ino) -> u64 {
        self.word(ino, 0).load(Ordering::SeqCst)
    }

    /// The version of `ino`'s attributes now.
    pub(crate) fn attributes(&self, ino: Ino) -> u64 {
        self.word(ino, ATTRIBUTES).load(Ordering::SeqCst)
    }

    /// The words a change of kind `what` moves: content changes attributes with it.
    fn words(&self, ino: Ino, what: Change) -> impl Iterator<Item = &AtomicU64> {
        let content = (what == Change::Content).then(|| self.word(ino, 0));
        content.into_iter().chain([self.word(ino, ATTRIBUTES)])
    }

    /// The memfd, to send to a client.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

impl ContentWatch for ContentTable {
    fn changing(&self, ino: Ino, what: Change) {
        // SeqCst on both sides: a reader whose load comes after this in the single order sees
        // the change under way; one whose load comes before read the inode before it.
        for word in self.words(ino, what) {
            word.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn changed(&self, ino: Ino, what: Change) {
        for word in self.words(ino, what) {
            word.fetch_add(UNDER_WAY, Ordering::SeqCst);
        }
    }
}

impl std::fmt::Debug for ContentTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentTable")
            .field("fd", &self.fd.as_raw_fd())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use btfuse_ring_client::contents::{ContentView, is_settled};

    use super::*;

    #[test]
    fn versions_move_with_changes_and_settle_after_them() {
        let table = ContentTable::new().unwrap();
        let view = ContentView::map(table.fd()).unwrap();
        let a = Ino(7);
        // Another inode in the same slot, and one in another.
        let b = (8..)
            .map(Ino)
            .find(|&i| table.slot(i) == table.slot(a))
            .unwrap();
        let c = (8..)
            .map(Ino)
            .find(|&i| table.slot(i) != table.slot(a))
            .unwrap();
        let slot = table.slot(a);
        let before = view.version(slot);
        assert!(is_settled(before));
        table.changing(a, Change::Content);
        let during = view.version(slot);
        assert!(!is_settled(during));
        assert!(
            !is_settled(view.attributes(slot)),
            "content moves attributes"
        );
        table.changing(b, Change::Content);
        table.changed(a, Change::Content);
        assert!(
            !is_settled(view.version(slot)),
            "b, in the same slot, is still changing"
        );
        table.changed(b, Change::Content);
        let after = view.version(slot);
        assert!(is_settled(after));
        assert_ne!(after, before);
        assert_eq!(
            view.attributes(slot),
            after,
            "two changes counted in each word"
        );
        assert_eq!(view.version(table.slot(c)), 0, "another slot did not move");
        assert!(!is_settled(view.version(SLOTS as u32)), "past the table");
        assert!(!is_settled(view.attributes(SLOTS as u32)), "past the table");

        // Attributes alone move only the attribute word.
        table.changing(a, Change::Attributes);
        assert!(!is_settled(view.attributes(slot)));
        assert_eq!(view.version(slot), after, "content untouched");
        table.changed(a, Change::Attributes);
        assert!(is_settled(view.attributes(slot)));
        assert_ne!(view.attributes(slot), after);
        assert_eq!(view.version(slot), after);
        assert_eq!(table.attributes(a), view.attributes(slot));
        assert_eq!(table.version(a), view.version(slot));
        let other = ContentTable::new().unwrap();
        let other = ContentView::map(other.fd()).unwrap();
        assert_ne!(view.identity(), 0);
        assert_ne!(view.identity(), other.identity());
    }

    #[test]
    fn nobody_can_write_the_table_once_sealed() {
        let table = ContentTable::new().unwrap();
        // SAFETY: asks for a writable shared mapping, which must be refused.
        let writable = unsafe { MmapOptions::new().len(TABLE_LEN).map_mut(table.fd()) };
        assert!(writable.is_err());
        // SAFETY: a one-byte write from a live buffer; the seal must refuse it.
        let n = unsafe { libc::pwrite(table.fd().as_raw_fd(), [1u8].as_ptr().cast(), 1, 0) };
        assert_eq!(n, -1);
    }
}

#[cfg(test)]
mod keyed {
    use super::*;

    #[test]
    fn slots_are_keyed_so_no_client_can_place_an_inode() {
        let (one, two) = (ContentTable::new().unwrap(), ContentTable::new().unwrap());
        let inodes: Vec<Ino> = (1..=64).map(Ino).collect();
        let placed = |t: &ContentTable| inodes.iter().map(|&i| t.slot(i)).collect::<Vec<_>>();
        // Two servers place the same inodes differently: the placement is the key's, not
        // the inode number's (64 agreements by chance: 1 in 4096^64).
        assert_ne!(placed(&one), placed(&two));
        assert!(placed(&one).iter().all(|&s| (s as usize) < SLOTS));
        // Consecutive inodes are not consecutive slots.
        assert_ne!(
            placed(&one),
            (0..64)
                .map(|s| (one.slot(Ino(1)) + s) % SLOTS as u32)
                .collect::<Vec<_>>()
        );
    }
}
