//! The content table: a page set every client maps read-only, where the server counts the
//! changes to regular files' content, so that a client holding bytes it was sent
//! ([`Response::Prefetched`](btfuse_core::ring::Response::Prefetched)) can tell, with one load
//! and no round trip, whether they are still the file's.
//!
//! # Layout (a sealed memfd)
//!
//! A first 64-byte line whose first 8 bytes name this table among all tables any server ever
//! made (random, nonzero): content a client keeps is only ever checked against the table it
//! came with. Then [`SLOTS`] words of 8 bytes, each alone on its 64-byte line (a write to one
//! file does not take the line of another slot's readers away). Files that share a slot only
//! cost each other a round trip now and then.
//!
//! # Who learns what
//!
//! Every client maps the whole table, so the slot of an inode must not be something a client
//! can work out: it is a keyed hash of the inode number (SipHash, with a key the server draws
//! at start and never sends), and a client learns a file's slot only in the answer to an open
//! of it for reading that the server allowed ([`Response::Prefetched`]'s `slot`). A client
//! watching the table sees that some files change, as `statfs` shows that blocks come and
//! go, but not which, nor how often a file it could not open for reading changes.
//!
//! A slot's word: bits 0..20 count the changes under way ([`ContentWatch::changing`] adds 1),
//! bits 20.. count the changes completed ([`ContentWatch::changed`] adds `2^20 - 1`: one
//! completed, one fewer under way). A version read with no change under way names the content
//! exactly: any change that could have altered it since moves the word before it can be seen.
//!
//! # Who may write
//!
//! The server maps the memfd writable, then seals it with `F_SEAL_FUTURE_WRITE` (and against
//! resizing): from then on nobody, clients included, can map it writable or write to it, so no
//! client can make another's stale bytes look current. A client checks the seals before it
//! maps the table.

#![allow(unsafe_code)]

use std::hash::{BuildHasher, RandomState};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use btfuse_core::{ContentWatch, Ino};
use memmap2::{Mmap, MmapMut, MmapOptions};

/// Slots in the table.
pub(crate) const SLOTS: usize = 4096;
/// Bytes between two slots: one cache line.
const STRIDE: usize = 64;
/// Bytes of the table: its identity's line, then the slots.
pub(crate) const TABLE_LEN: usize = (1 + SLOTS) * STRIDE;
/// What one completed change adds to a slot's word.
const COMPLETED: u64 = 1 << 20;
/// The bits that count changes under way.
const UNDER_WAY: u64 = COMPLETED - 1;

/// Where slot `slot`'s word is; `None` past the table.
fn slot_offset(slot: u32) -> Option<usize> {
    let slot = usize::try_from(slot).ok().filter(|&s| s < SLOTS)?;
    Some((1 + slot) * STRIDE)
}

/// Whether `version` was read while no change was under way in its slot: only such a version
/// may vouch for bytes.
pub(crate) const fn is_settled(version: u64) -> bool {
    version & UNDER_WAY == 0
}

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

    fn word(&self, ino: Ino) -> &AtomicU64 {
        let offset = (1 + self.slot(ino) as usize) * STRIDE;
        // SAFETY: the offset is below TABLE_LEN - 8 (the slot is below SLOTS) and 8-byte
        // aligned in a page-aligned mapping; the word is only accessed atomically, here and by
        // clients.
        unsafe { &*self.map.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// The version of `ino`'s content now.
    pub(crate) fn version(&self, ino: Ino) -> u64 {
        self.word(ino).load(Ordering::SeqCst)
    }

    /// The memfd, to send to a client.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

impl ContentWatch for ContentTable {
    fn changing(&self, ino: Ino) {
        // SeqCst on both sides: a reader whose load comes after this in the single order sees
        // the change under way; one whose load comes before read the content before it.
        self.word(ino).fetch_add(1, Ordering::SeqCst);
    }

    fn changed(&self, ino: Ino) {
        self.word(ino).fetch_add(UNDER_WAY, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for ContentTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentTable")
            .field("fd", &self.fd.as_raw_fd())
            .finish_non_exhaustive()
    }
}

/// A client's read-only view of the table.
pub(crate) struct ContentView {
    map: Mmap,
}

impl ContentView {
    /// Maps the table the server sent, after checking that it is one nobody can write to.
    pub(crate) fn map(fd: &OwnedFd) -> io::Result<ContentView> {
        if !crate::sys::is_sealed_table(fd, TABLE_LEN as u64) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "ring protocol: the content table is not a sealed memfd of the expected size",
            ));
        }
        // SAFETY: a read-only shared mapping of a memfd sealed against resizing; its words are
        // only read atomically (`version`), as the server writes them concurrently.
        let map = unsafe { MmapOptions::new().len(TABLE_LEN).map(fd)? };
        Ok(ContentView { map })
    }

    /// The table's identity (see the layout).
    pub(crate) fn identity(&self) -> u64 {
        // SAFETY: the first 8 bytes of the mapping, aligned; written once by the server
        // before the table was sent, and never again.
        unsafe { &*self.map.as_ptr().cast::<AtomicU64>() }.load(Ordering::Relaxed)
    }

    /// The version in `slot` now (one that vouches for nothing for a slot past the table).
    pub(crate) fn version(&self, slot: u32) -> u64 {
        let Some(offset) = slot_offset(slot) else {
            return UNDER_WAY;
        };
        // SAFETY: as in `ContentTable::word`; the mapping is read-only and read atomically.
        let word = unsafe { &*self.map.as_ptr().add(offset).cast::<AtomicU64>() };
        word.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
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
        table.changing(a);
        let during = view.version(slot);
        assert!(!is_settled(during));
        table.changing(b);
        table.changed(a);
        assert!(
            !is_settled(view.version(slot)),
            "b, in the same slot, is still changing"
        );
        table.changed(b);
        let after = view.version(slot);
        assert!(is_settled(after));
        assert_ne!(after, before);
        assert_eq!(view.version(table.slot(c)), 0, "another slot did not move");
        assert!(!is_settled(view.version(SLOTS as u32)), "past the table");
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
