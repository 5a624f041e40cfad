//! The content table: a page set every client maps read-only, where the server counts the
//! changes to regular files' content, to what directories list and to any inode's attributes,
//! so that a client holding bytes it was sent
//! ([`Response::Prefetched`](btfuse_core::ring::Response::Prefetched)), a listing it read
//! whole ([`Response::OpenedDir`](btfuse_core::ring::Response::OpenedDir)), or the answer to a
//! `stat` of a path ([`Response::Stamped`](btfuse_core::ring::Response::Stamped)), can tell,
//! with a load per slot and no round trip, whether they are still current.
//!
//! # Layout (a sealed memfd)
//!
//! A first 64-byte line whose first 8 bytes name this table among all tables any server ever
//! made (random, nonzero): content a client keeps is only ever checked against the table it
//! came with. Then [`SLOTS`] slots, each alone on its 64-byte line (a write to one file does
//! not take the line of another slot's readers away): the slot's content word at offset 0 of
//! its line, its attribute word at offset 8 ([`ATTRIBUTES`]). A change to content (or a
//! listing) moves both words, a change to attributes alone only the attribute word: held
//! bytes and listings are checked against content words, kept attributes against attribute
//! words. Inodes that share a slot only cost each other a round trip now and then.
//!
//! # Who learns what
//!
//! Every client maps the whole table, so the slot of an inode must not be something a client
//! can work out: it is a keyed hash of the inode number (SipHash, with a key the server draws
//! at start and never sends), and a client learns a file's or a directory's slot only in the
//! answer to an open of it for reading that the server allowed (`Response::Prefetched`'s or
//! `Response::OpenedDir`'s `slot`), or to a `stat` of a path it may walk
//! (`Response::Stamped`: the slots of the directories its walk looked in and of the inode it
//! reached). A client watching the table sees that some files change, as `statfs` shows that
//! blocks come and go, but not which, nor how often a file or directory it could neither open
//! for reading nor `stat` changes; of those it can `stat`, the table tells it no more than
//! their change times would.
//!
//! A word: bits 0..20 count the changes under way (the server's
//! [`ContentWatch::changing`](btfuse_core::ContentWatch::changing) adds 1), bits 20.. count the
//! changes completed ([`changed`](btfuse_core::ContentWatch::changed) adds `2^20 - 1`: one
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

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{Mmap, MmapOptions};

/// Slots in the table.
pub const SLOTS: usize = 4096;
/// Bytes between two slots: one cache line.
pub const STRIDE: usize = 64;
/// Where a slot's attribute word is in its line (the content word is at 0).
pub const ATTRIBUTES: usize = 8;
/// Bytes of the table: its identity's line, then the slots.
pub const TABLE_LEN: usize = (1 + SLOTS) * STRIDE;
/// What one completed change adds to a slot's word.
pub const COMPLETED: u64 = 1 << 20;
/// The bits that count changes under way.
pub const UNDER_WAY: u64 = COMPLETED - 1;

/// Where slot `slot`'s word is; `None` past the table.
fn slot_offset(slot: u32) -> Option<usize> {
    let slot = usize::try_from(slot).ok().filter(|&s| s < SLOTS)?;
    Some((1 + slot) * STRIDE)
}

/// Whether `version` was read while no change was under way in its slot: only such a version
/// may vouch for bytes.
pub const fn is_settled(version: u64) -> bool {
    version & UNDER_WAY == 0
}

/// A client's read-only view of the table.
pub struct ContentView {
    map: Mmap,
}

impl ContentView {
    /// Maps the table the server sent, after checking that it is one nobody can write to.
    pub fn map(fd: &OwnedFd) -> io::Result<ContentView> {
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
    pub fn identity(&self) -> u64 {
        // SAFETY: the first 8 bytes of the mapping, aligned; written once by the server
        // before the table was sent, and never again.
        unsafe { &*self.map.as_ptr().cast::<AtomicU64>() }.load(Ordering::Relaxed)
    }

    /// The content version in `slot` now (one that vouches for nothing for a slot past the
    /// table).
    pub fn version(&self, slot: u32) -> u64 {
        self.word(slot, 0)
    }

    /// The attribute version in `slot` now (one that vouches for nothing for a slot past the
    /// table).
    pub fn attributes(&self, slot: u32) -> u64 {
        self.word(slot, ATTRIBUTES)
    }

    fn word(&self, slot: u32, at: usize) -> u64 {
        let Some(offset) = slot_offset(slot) else {
            return UNDER_WAY;
        };
        let offset = offset + at;
        // SAFETY: the offset is a slot's line plus 0 or 8, so below TABLE_LEN - 8 and 8-byte
        // aligned in a page-aligned mapping; the mapping is read-only, and its words are only
        // accessed atomically, here and by the server.
        let word = unsafe { &*self.map.as_ptr().add(offset).cast::<AtomicU64>() };
        word.load(Ordering::SeqCst)
    }
}
