//! Directory listings this process keeps, so that listing a directory again costs no
//! `Getdents` round trip and no work in the server while nothing in it changed.
//!
//! A directory opened for reading with `prefetch` is answered with `Response::OpenedDir`: the
//! description and the content table slot where the server counts changes to what the
//! directory lists (a name made, removed or renamed in it, its `..` moved, its removal; see
//! `btfuse_core::ContentWatch`). A stream that lists such a directory from its start reads the
//! slot's version first; if the version shows no change under way and still reads the same
//! when the last (empty) batch has come, the batches are the whole listing at that version,
//! and are kept here by inode ([`keep`]). The next stream of that directory, once the server
//! has allowed its open (permission is checked each time, with the caller's identity then),
//! is served from the kept bytes while the slot still shows their version ([`find`]): one
//! load, no round trip. Slots shared with other inodes only cost a listing fetched again.
//!
//! Nothing here is shared with another process; the bytes kept are what the server sent to
//! this one. What is kept is bounded: a listing of more than [`MOST_ONE`] bytes is not kept,
//! and all kept listings together hold at most [`MOST_KEPT`] bytes (older ones go first).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use btfuse_core::Ino;
use btfuse_core::ring::DirentList;
use btfuse_ring_client::Client;
use hashbrown::HashMap;
use libc::c_int;

/// The largest listing kept, in encoded bytes (about 250,000 entries of short names).
pub(crate) const MOST_ONE: usize = 8 << 20;
/// The most bytes all kept listings may hold together.
pub(crate) const MOST_KEPT: usize = 16 << 20;

/// Where a directory's listing changes are counted, as its open answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The directory.
    pub(crate) ino: Ino,
    /// Its content table slot.
    pub(crate) slot: u32,
}

struct Kept {
    /// The content table the version is from (`Client::content_source`).
    source: u64,
    slot: u32,
    version: u64,
    bytes: Arc<[u8]>,
    /// When it was kept: its key in [`Store::order`].
    kept_at: u64,
}

#[derive(Default)]
struct Store {
    by_ino: HashMap<Ino, Kept>,
    /// The inodes kept, by when (oldest first): removing one is a lookup, not a scan, however
    /// many small listings are kept.
    order: BTreeMap<u64, Ino>,
    /// The next `kept_at`.
    clock: u64,
    bytes: usize,
}

impl Store {
    fn remove(&mut self, ino: Ino) {
        if let Some(old) = self.by_ino.remove(&ino) {
            self.bytes -= old.bytes.len();
            self.order.remove(&old.kept_at);
        }
    }

    fn insert(&mut self, ino: Ino, mut kept: Kept) {
        self.remove(ino);
        let len = kept.bytes.len();
        while self.bytes + len > MOST_KEPT {
            let Some((_, oldest)) = self.order.first_key_value() else {
                break;
            };
            self.remove(*oldest);
        }
        self.bytes += len;
        kept.kept_at = self.clock;
        self.clock += 1;
        self.order.insert(kept.kept_at, ino);
        self.by_ino.insert(ino, kept);
    }

    /// The inodes kept, oldest first.
    #[cfg(test)]
    fn oldest_first(&self) -> Vec<Ino> {
        self.order.values().copied().collect()
    }
}

static STORE: Mutex<Option<Store>> = Mutex::new(None);

/// Whether `bytes` begin where the server begins a listing read from position 0: the
/// directory's own `.`, at cookie 1. A stream whose description a program moved before the
/// stream's first batch (its own `getdents64` or `lseek` on `dirfd`, which POSIX leaves
/// unspecified for the stream) fetched only the rest, which must not be kept as the whole.
fn starts_at_the_beginning(bytes: &[u8], ino: Ino) -> bool {
    DirentList::split_first(bytes)
        .is_some_and(|(first, _)| first.name == b"." && first.cookie == 1 && first.ino == ino)
}

/// Holds the store's lock (across `fork`, so that a child never inherits it taken).
pub(crate) fn hold() -> impl Sized {
    STORE.lock().unwrap_or_else(|p| p.into_inner())
}

fn with_store<T>(f: impl FnOnce(&mut Store) -> T) -> T {
    let mut store = STORE.lock().unwrap_or_else(|p| p.into_inner());
    f(store.get_or_insert_with(Store::default))
}

/// The listing kept for `stamp`'s directory if the server's content table still shows the
/// version it was read at; a stale one is dropped.
pub(crate) fn find(client: &Client, stamp: Stamp) -> Option<Arc<[u8]>> {
    let source = client.content_source();
    with_store(|store| {
        let kept = store.by_ino.get(&stamp.ino)?;
        if kept.source == source
            && kept.slot == stamp.slot
            && client.content_is_current(kept.slot, kept.version)
        {
            return Some(Arc::clone(&kept.bytes));
        }
        store.remove(stamp.ino);
        None
    })
}

/// Keeps `bytes`, the whole listing of `stamp`'s directory as read while its slot showed
/// `version`, if the slot still shows it (nothing changed while the batches came), the
/// listing is small enough, and it starts where a listing starts.
pub(crate) fn keep(client: &Client, stamp: Stamp, version: u64, bytes: &[u8]) {
    if bytes.len() > MOST_ONE
        || !starts_at_the_beginning(bytes, stamp.ino)
        || !client.content_is_current(stamp.slot, version)
    {
        return;
    }
    let kept = Kept {
        source: client.content_source(),
        slot: stamp.slot,
        version,
        bytes: Arc::from(bytes),
        kept_at: 0,
    };
    with_store(|store| store.insert(stamp.ino, kept));
}

thread_local! {
    /// The stamp of the last directory this thread opened over the ring, with the descriptor
    /// number and server description it was given (`None` for a directory opened without
    /// one). `opendir` and `fdopendir` take it for the descriptor they were given.
    static LAST_OPENED: Cell<Option<(c_int, u32, Option<Stamp>)>> = const { Cell::new(None) };
}

/// Notes the directory this thread has just opened as descriptor `fd` (description `desc`).
pub(crate) fn opened(fd: c_int, desc: u32, stamp: Option<Stamp>) {
    let _ = LAST_OPENED.try_with(|last| last.set(Some((fd, desc, stamp))));
}

/// The stamp of the directory this thread last opened, if it was opened as `fd` for
/// description `desc` (both must match, so a number reused since is never mistaken for it).
pub(crate) fn take_opened(fd: c_int, desc: u32) -> Option<Stamp> {
    let last = LAST_OPENED.try_with(Cell::take).ok().flatten()?;
    match last {
        (f, d, stamp) if f == fd && d == desc => stamp,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(len: usize) -> Kept {
        Kept {
            source: 1,
            slot: 0,
            version: 0,
            bytes: Arc::from(vec![0u8; len]),
            kept_at: 0,
        }
    }

    #[test]
    fn the_oldest_listings_go_when_the_bound_is_reached() {
        let mut store = Store::default();
        let third = MOST_KEPT / 3;
        for i in 1..=3 {
            store.insert(Ino(i), kept(third));
        }
        assert_eq!(store.bytes, 3 * third);
        // A fourth does not fit beside three: the first kept goes.
        store.insert(Ino(4), kept(third));
        assert!(!store.by_ino.contains_key(&Ino(1)));
        assert_eq!(store.oldest_first(), [Ino(2), Ino(3), Ino(4)]);
        // Keeping one again replaces it, and it becomes the newest.
        store.insert(Ino(2), kept(10));
        assert_eq!(store.oldest_first(), [Ino(3), Ino(4), Ino(2)]);
        assert_eq!(store.bytes, 2 * third + 10);
        store.remove(Ino(3));
        assert_eq!(store.bytes, third + 10);
        assert_eq!(store.oldest_first(), [Ino(4), Ino(2)]);
        // One as large as the bound empties the store for itself.
        store.insert(Ino(5), kept(MOST_KEPT));
        assert_eq!(store.oldest_first(), [Ino(5)]);
        assert_eq!(store.bytes, MOST_KEPT);
    }

    #[test]
    fn only_a_listing_from_its_start_is_whole() {
        use btfuse_core::ring::DirentBuilder;
        use btfuse_core::{DirEntry, FileType};
        let encoded = |entries: &[(u64, u64, &[u8])]| {
            let mut buf = vec![0u8; 4096];
            let mut builder = DirentBuilder::new(&mut buf);
            for &(ino, cookie, name) in entries {
                let entry = DirEntry {
                    ino: Ino(ino),
                    cookie,
                    kind: FileType::Directory,
                    name,
                };
                assert!(builder.push(&entry).unwrap());
            }
            builder.finish().as_bytes().to_vec()
        };
        let whole = encoded(&[(7, 1, b"."), (2, 2, b".."), (9, 3, b"f")]);
        assert!(starts_at_the_beginning(&whole, Ino(7)));
        assert!(
            !starts_at_the_beginning(&whole, Ino(8)),
            "another directory's"
        );
        let rest = encoded(&[(2, 2, b".."), (9, 3, b"f")]);
        assert!(!starts_at_the_beginning(&rest, Ino(7)));
        let moved = encoded(&[(7, 4, b"."), (9, 5, b"f")]);
        assert!(!starts_at_the_beginning(&moved, Ino(7)));
        assert!(!starts_at_the_beginning(&[], Ino(7)));
    }

    #[test]
    fn a_stamp_is_taken_once_and_only_for_its_descriptor() {
        let stamp = Stamp {
            ino: Ino(7),
            slot: 3,
        };
        opened(5, 9, Some(stamp));
        assert_eq!(take_opened(5, 9), Some(stamp));
        assert_eq!(take_opened(5, 9), None, "taken already");
        opened(5, 9, Some(stamp));
        assert_eq!(take_opened(6, 9), None, "another descriptor");
        opened(5, 9, Some(stamp));
        assert_eq!(take_opened(5, 8), None, "another description");
        opened(5, 9, None);
        assert_eq!(take_opened(5, 9), None, "opened without a stamp");
    }
}
