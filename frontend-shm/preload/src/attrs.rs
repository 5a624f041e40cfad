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
//! **Directories.** The second question in a while about a name in one directory (one that
//! had to be asked: nothing kept answered it) asks for the directory's names instead
//! (`StatDir`): the server lists it with the caller's rights and answers every name with its
//! attributes and its own stamp, and the walk to the directory with the directory's stamp
//! ([`keep_listing`]). While those hold, a question about any name in it is answered from
//! that listing ([`from_listing`]): the name's attributes while its own stamp holds, `ENOENT`
//! for a name not listed (a link to follow is asked as before). An `open` without `O_CREAT`
//! of a name a standing listing does not hold fails with `ENOENT` the same way. Fetching costs the server a
//! lookup per name, so after a listing was fetched the next fetch of it waits for one
//! question per 16 names it listed, and a listing that went stale before it answered as many
//! questions as its fetch waited for doubles the wait (up to 1,024): a directory that changes
//! between questions is soon asked about name by name again.
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
use std::sync::atomic::{AtomicU64, Ordering};

use btfuse_core::ring::{StampedEntries, Stamps};
use btfuse_core::{Attr, Errno, FileType};
use btfuse_ring_client::Client;
use hashbrown::HashMap;

/// The most answers kept.
pub(crate) const MOST_KEPT: usize = 1 << 16;
/// The most bytes of paths kept (each at most `PATH_MAX`).
pub(crate) const MOST_BYTES: usize = 8 << 20;
/// The most questions a directory's next fetch waits for.
const MOST_NEEDED: u32 = 1024;
/// The most directories whose questions are counted (all forgotten when reached).
const MOST_MISSED: usize = 4096;

/// What a kept answer or listing stands on: while it stands, it is what the server would say.
struct Vouched {
    /// The content table its stamps are from.
    source: u64,
    /// The identity epoch it was asked under.
    epoch: u64,
    /// `(slot, attribute version)`, each slot once.
    stamps: Box<[(u32, u64)]>,
    /// When it was kept (see [`moment`]; set as it is kept).
    moment: u64,
}

impl Vouched {
    /// The server's `stamps` for a question asked under identity epoch `epoch`.
    fn new(client: &Client, epoch: u64, stamps: Stamps<'_>) -> Vouched {
        Vouched {
            source: client.content_source(),
            epoch,
            stamps: stamps.iter().map(|s| (s.slot, s.version)).collect(),
            moment: 0,
        }
    }

    /// Whether it stands (`now`: the content table's source and the identity epoch): every
    /// stamp still shows its version.
    fn stands(&self, client: &Client, now: (u64, u64)) -> bool {
        (self.source, self.epoch) == now
            && (self.stamps.iter())
                .all(|&(slot, version)| client.attributes_are_current(slot, version))
    }
}

/// One kept answer.
struct Kept {
    vouched: Vouched,
    outcome: Result<Attr, Errno>,
}

/// A directory's names as `StatDir` answered them.
struct Listing {
    /// The walk to the directory and the directory itself: while they stand, it lists
    /// exactly `entries`.
    vouched: Vouched,
    /// Each name's attributes and its own `(slot, attribute version)`.
    entries: HashMap<Box<[u8]>, (Attr, u32, u64)>,
    /// Questions it answered.
    answered: u32,
}

impl Listing {
    /// What keeping it under `dir` counts: itself and its names, and their bytes.
    fn counted(&self, dir: &[u8]) -> (usize, usize) {
        let names = self.entries.keys().map(|k| k.len()).sum::<usize>();
        (1 + self.entries.len(), dir.len() + names)
    }
}

/// Questions about names of a directory that had to be asked since its listing was last
/// fetched, and how many make it worth fetching again.
#[derive(Clone, Copy)]
struct Missed {
    count: u32,
    needed: u32,
}

/// The answers for paths walked from one start.
#[derive(Default)]
struct Paths {
    /// By path: `[0]` for `lstat` (a final link not followed), `[1]` for `stat`.
    by_path: [HashMap<Box<[u8]>, Kept>; 2],
    /// Listings, by the directory's path.
    listings: HashMap<Box<[u8]>, Listing>,
    /// Bytes of the paths and names kept.
    bytes: usize,
    /// Answers and listed names kept.
    len: usize,
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
    /// Questions counted by directory (where the walk starts, the directory's path); only
    /// counts, so one left behind by a description let go does no harm.
    missed: HashMap<(Option<u32>, Box<[u8]>), Missed>,
}

impl Store {
    /// Adds `(len, bytes)` kept under start `at` to its totals and the store's, or takes
    /// them away (`gained` false).
    fn count(&mut self, at: Option<u32>, (len, bytes): (usize, usize), gained: bool) {
        let paths = self.by_start.entry(at).or_default();
        for (total_len, total_bytes) in [
            (&mut paths.len, &mut paths.bytes),
            (&mut self.len, &mut self.bytes),
        ] {
            if gained {
                (*total_len, *total_bytes) = (*total_len + len, *total_bytes + bytes);
            } else {
                (*total_len, *total_bytes) = (*total_len - len, *total_bytes - bytes);
            }
        }
    }

    /// Makes room for `(len, bytes)` more: a store that would pass a bound is emptied (the
    /// counts of descriptions let go and of questions stay).
    fn make_room(&mut self, (len, bytes): (usize, usize)) {
        if self.len + len > MOST_KEPT || self.bytes + bytes > MOST_BYTES {
            *self = Store {
                let_go: self.let_go,
                missed: core::mem::take(&mut self.missed),
                ..Store::default()
            };
        }
    }

    fn insert(&mut self, (at, path, follow): Key<'_>, kept: Kept) {
        self.make_room((1, path.len()));
        let paths = self.by_start.entry(at).or_default();
        if paths.by_path[usize::from(follow)]
            .insert(path.into(), kept)
            .is_none()
        {
            self.count(at, (1, path.len()), true);
        }
    }

    /// Keeps `listing` of directory `dir` (walked from `at`), in place of any before.
    fn insert_listing(&mut self, at: Option<u32>, dir: &[u8], listing: Listing) {
        let counted = listing.counted(dir);
        self.remove_listing(at, dir);
        self.make_room(counted);
        if counted.0 > MOST_KEPT || counted.1 > MOST_BYTES {
            return;
        }
        let paths = self.by_start.entry(at).or_default();
        paths.listings.insert(dir.into(), listing);
        self.count(at, counted, true);
    }

    fn remove_listing(&mut self, at: Option<u32>, dir: &[u8]) {
        let old = self
            .by_start
            .get_mut(&at)
            .and_then(|p| p.listings.remove(dir));
        if let Some(old) = old {
            self.count(at, old.counted(dir), false);
        }
    }

    fn remove(&mut self, (at, path, follow): Key<'_>) {
        let old =
            (self.by_start.get_mut(&at)).and_then(|p| p.by_path[usize::from(follow)].remove(path));
        if old.is_some() {
            self.count(at, (1, path.len()), false);
        }
    }

    /// The kept answer to a `stat` of `key`, if it still stands (`now`: the content table's
    /// source and the identity epoch); a stale one is dropped.
    fn path_answer(&mut self, client: &Client, key: Key<'_>, now: (u64, u64)) -> Option<Answer> {
        let (at, path, follow) = key;
        let kept = self.by_start.get(&at)?.by_path[usize::from(follow)].get(path)?;
        if kept.vouched.stands(client, now) {
            return Some((kept.outcome, kept.vouched.moment));
        }
        self.remove(key);
        None
    }

    /// The answer to a `stat` of `key` from a kept listing of its directory, as
    /// [`from_listing`] says.
    fn listing_answer(&mut self, client: &Client, key: Key<'_>, now: (u64, u64)) -> Option<Answer> {
        let (at, path, follow) = key;
        let (dir, name) = split(path)?;
        let listing = self.by_start.get_mut(&at)?.listings.get_mut(dir)?;
        if !listing.vouched.stands(client, now) {
            let (answered, listed) = (listing.answered, listing.entries.len());
            self.remove_listing(at, dir);
            self.went_stale((at, dir), answered, listed);
            return None;
        }
        let answer = match listing.entries.get(name) {
            None => Some(Err(Errno::NotFound)),
            Some((attr, ..)) if follow && attr.kind == FileType::Symlink => None,
            Some(&(attr, slot, version)) => client
                .attributes_are_current(slot, version)
                .then_some(Ok(attr)),
        };
        listing.answered += u32::from(answer.is_some());
        answer.map(|a| (a, listing.vouched.moment))
    }

    /// A listing of `dir` that answered `answered` questions went stale: the next fetch waits
    /// for twice as many questions as it did if it answered fewer than that (a directory that
    /// changes between questions), and for one per 16 names listed (at least two) otherwise.
    fn went_stale(&mut self, (at, dir): (Option<u32>, &[u8]), answered: u32, listed: usize) {
        if let Some(missed) = self.missed.get_mut(&(at, dir.into())) {
            missed.needed = if answered < missed.needed {
                (missed.needed * 2).min(MOST_NEEDED)
            } else {
                (listed / 16).clamp(2, MOST_NEEDED as usize) as u32
            };
        }
    }

    /// Forgets the answers of walks from `desc`.
    fn forget(&mut self, desc: u32) {
        self.let_go += 1;
        if let Some(paths) = self.by_start.remove(&Some(desc)) {
            self.len -= paths.len;
            self.bytes -= paths.bytes;
        }
    }
}

/// A kept answer and the [`moment`] it was kept.
type Answer = (Result<Attr, Errno>, u64);

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

/// What a kept answer must have been asked under to stand now: the content table's source
/// and the identity epoch.
fn now(client: &Client) -> (u64, u64) {
    (
        client.content_source(),
        btfuse_ring_client::identity_epoch(),
    )
}

/// The answer this process keeps for a `stat` of `key`, if one stands: from a listing of its
/// directory first (a walk over a tree asks mostly about names in listed directories), then
/// from an answer kept for the path. Stale ones are dropped. One lock for both.
pub(crate) fn kept(client: &Client, key: Key<'_>) -> Option<Result<Attr, Errno>> {
    kept_since(client, key).map(|(outcome, _)| outcome)
}

/// Like [`kept`], with the [`moment`] the answer was kept: it has stood since before then.
pub(crate) fn kept_since(client: &Client, key: Key<'_>) -> Option<Answer> {
    let now = now(client);
    with_store(|store| {
        store
            .listing_answer(client, key, now)
            .or_else(|| store.path_answer(client, key, now))
    })
}

/// Answers and listings kept so far by this process: each is kept at the moment this reads
/// after it was kept, so an answer whose moment is at most a value read before a request was
/// sent stood (its stamps held) before the server served that request.
static MOMENTS: AtomicU64 = AtomicU64::new(0);

/// The moment now (see [`MOMENTS`]).
pub(crate) fn moment() -> u64 {
    MOMENTS.load(Ordering::Acquire)
}

/// The moment for an answer being kept now.
fn next_moment() -> u64 {
    MOMENTS.fetch_add(1, Ordering::AcqRel) + 1
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
    if btfuse_ring_client::identity_epoch() != asked.epoch {
        return;
    }
    let mut kept = Kept {
        vouched: Vouched::new(client, asked.epoch, stamps),
        outcome,
    };
    with_store(|store| {
        if key.0.is_none() || store.let_go == asked.let_go {
            kept.vouched.moment = next_moment();
            store.insert(key, kept);
        }
    });
}

/// `path` as a directory and a name in it: `None` for a path whose last component is not a
/// name (`.`, `..`, a trailing slash).
fn split(path: &[u8]) -> Option<(&[u8], &[u8])> {
    let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
        Some(0) => (&path[..1], &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b"."[..], path),
    };
    (!name.is_empty() && name != b"." && name != b"..").then_some((dir, name))
}

/// The answer to a `stat` of `key` from a kept listing of its directory, if one stands: the
/// name's entry, or `ENOENT` for a name not listed. `None` also for a link to follow (its
/// target is another walk). A stale listing is dropped.
pub(crate) fn from_listing(client: &Client, key: Key<'_>) -> Option<Result<Attr, Errno>> {
    let now = now(client);
    with_store(|store| store.listing_answer(client, key, now)).map(|(outcome, _)| outcome)
}

/// Counts a question about `key` that had to be asked; returns its directory when enough
/// were asked since that directory's listing was last fetched that fetching it is worth it:
/// two at first, then at least one for every 16 names it listed, and twice as many as last
/// time after a listing that went stale before it answered that many (so a directory that
/// changes between questions is soon asked about name by name again).
pub(crate) fn missed(key: Key<'_>) -> Option<&[u8]> {
    let (at, path, _) = key;
    let (dir, _) = split(path)?;
    with_store(|store| {
        if store.missed.len() >= MOST_MISSED {
            store.missed.clear();
        }
        let missed = store.missed.entry((at, dir.into())).or_insert(Missed {
            count: 0,
            needed: 2,
        });
        missed.count += 1;
        if missed.count < missed.needed {
            return false;
        }
        missed.count = 0;
        true
    })
    .then_some(dir)
}

/// Keeps the server's `StampedDir` for directory `dir` (walked from `at`), asked at `asked`,
/// on the terms of [`keep`].
pub(crate) fn keep_listing(
    client: &Client,
    (at, dir): (Option<u32>, &[u8]),
    asked: Asked,
    stamps: Stamps<'_>,
    entries: StampedEntries<'_>,
) {
    if btfuse_ring_client::identity_epoch() != asked.epoch {
        return;
    }
    let mut listing = Listing {
        vouched: Vouched::new(client, asked.epoch, stamps),
        entries: entries
            .iter()
            .map(|e| (e.name.into(), (e.attr, e.stamp.slot, e.stamp.version)))
            .collect(),
        answered: 0,
    };
    let listed = listing.entries.len();
    with_store(|store| {
        if at.is_some() && store.let_go != asked.let_go {
            return;
        }
        listing.vouched.moment = next_moment();
        if let Some(missed) = store.missed.get_mut(&(at, dir.into())) {
            missed.needed = missed.needed.max((listed / 16) as u32);
        }
        store.insert_listing(at, dir, listing);
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
            vouched: Vouched {
                source: 1,
                epoch: 0,
                stamps: Box::new([(0, 0)]),
                moment: 0,
            },
            outcome: Err(Errno::NotFound),
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

    #[test]
    fn a_listing_that_goes_stale_unused_is_fetched_less_often() {
        let mut store = Store::default();
        let key = (Some(3), &b"d"[..]);
        store.missed.insert(
            (key.0, key.1.into()),
            Missed {
                count: 0,
                needed: 2,
            },
        );
        let needed = |store: &Store| store.missed[&(key.0, key.1.into())].needed;
        // Stale after one answer, twice: the wait doubles, up to its bound.
        store.went_stale(key, 1, 10);
        assert_eq!(needed(&store), 4);
        store.went_stale(key, 1, 10);
        assert_eq!(needed(&store), 8);
        for _ in 0..20 {
            store.went_stale(key, 0, 10);
        }
        assert_eq!(needed(&store), MOST_NEEDED);
        // One that answered as many questions as it waited for: one per 16 names, at least 2.
        store.went_stale(key, MOST_NEEDED, 10);
        assert_eq!(needed(&store), 2);
        store.went_stale(key, 2, 1000);
        assert_eq!(needed(&store), 62);
        store.went_stale((None, b"other"), 0, 10);
        assert_eq!(store.missed.len(), 1, "nothing counted, nothing to change");
    }
}
