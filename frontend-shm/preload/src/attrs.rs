//! Answers to `stat` of a path that this process keeps, so that asking again costs no round
//! trip and no work in the server while nothing they were made from changed.
//!
//! A `stat`, `lstat`, `fstatat` or `statx` of a path asks `StatStamped`. The server answers `Response::Stamped`: the attributes, or the error the
//! walk met, and the content table slots of every directory the walk looked in and of the
//! inode it reached, each with the attribute version it showed before the walk read anything
//! there (see `btfuse_core::ContentWatch`: a name made, removed or renamed, a mode, owner, time
//! or link count changed, content written, all move the inode's attribute version). The answer
//! is kept here by where the walk starts (the served root, or a directory descriptor's
//! server description), the path and whether a final link is followed ([`keep`]); the next
//! call for the same path from the same start is answered from it ([`find`]) while
//!
//! - every stamp's slot still shows its version (a load each),
//! - the content table is the one the answer came from (`Client::content_source`), and
//! - the process has the ids it had when it asked (`btfuse_ring_client::identity_epoch`): the
//!   server checked the walk with those, and a process that changes its ids asks again, as
//!   the kernel checks again.
//!
//! The answers of walks from a description are forgotten when this process lets the
//! description go ([`forget`]): its number names that directory until then, and only then
//! may the server give the number to another (an answer asked while any description was let
//! go is not kept). Slots shared with other inodes only cost an
//! answer asked again. Nothing here is shared
//! with another process: what is kept is what the server told this one. What is kept is
//! bounded: at most [`MOST_KEPT`] answers and [`MOST_BYTES`] bytes of paths; a store that
//! reaches either is emptied.

use std::sync::Mutex;

use btfuse_core::ring::Stamps;
use btfuse_core::{Attr, Errno};
use btfuse_ring_client::Client;
use hashbrown::HashMap;

/// The most answers kept.
pub(crate) const MOST_KEPT: usize = 1 << 16;
/// The most bytes of paths kept (each at most `PATH_MAX`).
pub(crate) const MOST_BYTES: usize = 8 << 20;

/// One kept answer.
struct Kept {
    /// The content table its stamps are from.
    source: u64,
    /// The identity epoch it was asked under.
    epoch: u64,
    outcome: Result<Attr, Errno>,
    /// `(slot, attribute version)`, each slot once.
    stamps: Box<[(u32, u64)]>,
}

/// The answers for paths walked from one start.
#[derive(Default)]
struct Paths {
    /// By path: `[0]` for `lstat` (a final link not followed), `[1]` for `stat`.
    by_path: [HashMap<Box<[u8]>, Kept>; 2],
    /// Bytes of the paths kept.
    bytes: usize,
}

impl Paths {
    fn len(&self) -> usize {
        self.by_path[0].len() + self.by_path[1].len()
    }
}

#[derive(Default)]
struct Store {
    /// By where the walks start: `None` the served root, `Some(desc)` the directory of the
    /// server's description `desc` (forgotten when this process lets `desc` go, before the
    /// server may give its number to another description).
    by_start: HashMap<Option<u32>, Paths>,
    /// Answers kept in all.
    len: usize,
    /// Bytes of the paths kept in all.
    bytes: usize,
    /// Descriptions let go so far: an answer about a walk from a description is kept only if
    /// none was let go while it was asked (it might have been this one).
    let_go: u64,
}

impl Store {
    fn insert(&mut self, (at, path, follow): Key<'_>, kept: Kept) {
        if self.len >= MOST_KEPT || self.bytes + path.len() > MOST_BYTES {
            *self = Store {
                let_go: self.let_go,
                ..Store::default()
            };
        }
        let paths = self.by_start.entry(at).or_default();
        if paths.by_path[usize::from(follow)]
            .insert(path.into(), kept)
            .is_none()
        {
            paths.bytes += path.len();
            self.bytes += path.len();
            self.len += 1;
        }
    }

    fn remove(&mut self, (at, path, follow): Key<'_>) {
        let Some(paths) = self.by_start.get_mut(&at) else {
            return;
        };
        if paths.by_path[usize::from(follow)].remove(path).is_some() {
            paths.bytes -= path.len();
            self.bytes -= path.len();
            self.len -= 1;
        }
    }

    /// Forgets the answers of walks from `desc`.
    fn forget(&mut self, desc: u32) {
        self.let_go += 1;
        if let Some(paths) = self.by_start.remove(&Some(desc)) {
            self.len -= paths.len();
            self.bytes -= paths.bytes;
        }
    }
}

/// What an answer is kept under: where the walk starts (`None`: the served root, `Some`: a
/// server description), the path, and whether a final link is followed.
pub(crate) type Key<'p> = (Option<u32>, &'p [u8], bool);

static STORE: Mutex<Option<Store>> = Mutex::new(None);

/// Holds the store's lock (across `fork`, so that a child never inherits it taken).
pub(crate) fn hold() -> impl Sized {
    STORE.lock().unwrap_or_else(|p| p.into_inner())
}

fn with_store<T>(f: impl FnOnce(&mut Store) -> T) -> T {
    let mut store = STORE.lock().unwrap_or_else(|p| p.into_inner());
    f(store.get_or_insert_with(Store::default))
}

/// The kept answer to a `stat` of `key`, if it still stands; a stale one is dropped.
pub(crate) fn find(client: &Client, key: Key<'_>) -> Option<Result<Attr, Errno>> {
    let source = client.content_source();
    let epoch = btfuse_ring_client::identity_epoch();
    let (at, path, follow) = key;
    with_store(|store| {
        let kept = store.by_start.get(&at)?.by_path[usize::from(follow)].get(path)?;
        if kept.source == source
            && kept.epoch == epoch
            && kept
                .stamps
                .iter()
                .all(|&(slot, version)| client.attributes_are_current(slot, version))
        {
            return Some(kept.outcome);
        }
        store.remove(key);
        None
    })
}

/// What [`keep`] needs to know of the moment a question was asked: read before asking.
#[derive(Clone, Copy)]
pub(crate) struct Asked {
    /// The identity epoch.
    epoch: u64,
    /// How many descriptions had been let go.
    let_go: u64,
}

/// The moment, for an answer about to be asked.
pub(crate) fn asking() -> Asked {
    Asked {
        epoch: btfuse_ring_client::identity_epoch(),
        let_go: with_store(|store| store.let_go),
    }
}

/// Keeps the server's answer to a `StatStamped` of `key`, asked at `asked`, if the process
/// still has the ids it asked with and, for a walk from a description, let no description go
/// meanwhile.
pub(crate) fn keep(
    client: &Client,
    key: Key<'_>,
    asked: Asked,
    outcome: Result<Attr, Errno>,
    stamps: Stamps<'_>,
) {
    let epoch = asked.epoch;
    if btfuse_ring_client::identity_epoch() != epoch {
        return;
    }
    let kept = Kept {
        source: client.content_source(),
        epoch,
        outcome,
        stamps: stamps.iter().map(|s| (s.slot, s.version)).collect(),
    };
    with_store(|store| {
        if key.0.is_none() || store.let_go == asked.let_go {
            store.insert(key, kept);
        }
    });
}

/// Forgets the answers of walks that started at description `desc`, which this process is
/// letting go of: the server may give its number to another description later.
pub(crate) fn forget(desc: u32) {
    with_store(|store| store.forget(desc));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> Kept {
        Kept {
            source: 1,
            epoch: 0,
            outcome: Err(Errno::NotFound),
            stamps: Box::new([(0, 0)]),
        }
    }

    #[test]
    fn the_store_is_emptied_when_a_bound_is_reached() {
        let mut store = Store::default();
        for i in 0..MOST_KEPT {
            let at = (i % 3 != 0).then_some(i as u32 % 7);
            store.insert((at, format!("/f{i}").as_bytes(), i % 2 == 0), kept());
        }
        assert_eq!(store.len, MOST_KEPT);
        store.insert((None, b"/one-more", true), kept());
        assert_eq!(
            (store.len, store.bytes),
            (1, 9),
            "emptied, then the new one kept"
        );
        // Replacing an answer counts its path once; removing gives its bytes back.
        store.insert((None, b"/one-more", true), kept());
        assert_eq!((store.len, store.bytes), (1, 9));
        store.insert((None, b"/one-more", false), kept());
        store.insert((Some(4), b"/one-more", true), kept());
        assert_eq!(
            (store.len, store.bytes),
            (3, 27),
            "lstat's and another start's"
        );
        store.remove((None, b"/one-more", true));
        store.remove((None, b"/absent", true));
        store.remove((Some(5), b"/one-more", true));
        assert_eq!((store.len, store.bytes), (2, 18));
        // Letting a description go forgets its walks, and only those.
        store.insert((Some(4), b"f", false), kept());
        store.forget(4);
        store.forget(5);
        assert_eq!((store.len, store.bytes, store.let_go), (1, 9, 2));
        assert!(store.by_start.get(&Some(4)).is_none());
        // Paths of PATH_MAX bytes: the byte bound comes first.
        let long = vec![b'a'; libc::PATH_MAX as usize - 1];
        let mut store = Store::default();
        let fit = MOST_BYTES / long.len();
        for i in 0..fit {
            let mut path = long.clone();
            path[..8].copy_from_slice(&(i as u64).to_le_bytes());
            store.insert((None, &path, true), kept());
        }
        assert_eq!(store.len, fit);
        assert!(store.bytes + long.len() > MOST_BYTES, "no room for another");
        store.insert((None, &long, true), kept());
        assert_eq!(
            (store.len, store.bytes),
            (1, long.len()),
            "emptied for the path that did not fit"
        );
    }
}
