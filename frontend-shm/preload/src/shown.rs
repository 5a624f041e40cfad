//! Descriptions whose file this process reads in a mapping of its own (`MapFile`).
//!
//! A `pread` through the ring is a round trip: on a machine whose cores are all busy it waits
//! for the server's next time slice. A description read with `pread` [`ASK_AFTER`] times is
//! shown instead: the server sends a read-only mapping of the file (see
//! `btfuse_ring_client::mapped`), and every later `pread` of it copies from there in the
//! caller's own time slice, seeing what the engine holds at that moment as a kernel read
//! would. Bytes past the mapping's span, and every call but `pread`, still go to the server.
//!
//! The access time: a read through the server moves it as the mount's `relatime` says; a
//! read from the mapping does not reach the server, so after each change to the file (the
//! mapping's change count) the first read from the mapping posts a one-byte `Pread`, not
//! waited for, which moves it as that read would have.
//!
//! A mapping is forgotten when its description is let go, before the number can name
//! another description. A server that cannot show the file (no room, a hooked engine) is
//! asked once per description; one still moving a large file into place (`EAGAIN`, a step
//! of 16 MiB per ask) is asked again after as many reads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use btfuse_core::ring::Request;
use btfuse_ring_client::Client;
use btfuse_ring_client::mapped::MappedFile;
use hashbrown::HashMap;
use libc::{c_void, ssize_t};

/// `pread`s of a description through the server before its file is asked to be shown.
const ASK_AFTER: u32 = 8;
/// Most descriptions shown at once in one process (each maps 8 GiB of address space).
const MAX_SHOWN: usize = 64;

#[derive(Default)]
struct Entry {
    /// `pread`s seen, up to [`ASK_AFTER`].
    preads: u32,
    /// The mapping, once shown.
    map: Option<Arc<MappedFile>>,
    /// Asked (or being asked) already.
    asked: bool,
    /// Names the ask, so that an answer for a description let go meanwhile is dropped.
    ticket: u64,
    /// The change count when this description last had the server move the access time.
    told: Option<u64>,
}

static TABLE: Mutex<Option<HashMap<u32, Entry>>> = Mutex::new(None);
static TICKETS: AtomicU64 = AtomicU64::new(1);
/// Entries of [`TABLE`] with a mapping (changed under its lock).
static SHOWN: AtomicUsize = AtomicUsize::new(0);

fn table() -> MutexGuard<'static, Option<HashMap<u32, Entry>>> {
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Holds the table's lock (across `fork`, so that a child never inherits it taken).
pub(crate) fn hold() -> impl Sized {
    table()
}

/// Forgets description `desc`, which this process let go.
pub(crate) fn forget(desc: u32) {
    if let Some(t) = table().as_mut()
        && let Some(e) = t.remove(&desc)
        && e.map.is_some()
    {
        SHOWN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `pread(2)` of description `desc` from its mapping, once it has one; `None`: read through
/// the server.
pub(crate) fn pread(
    client: &Client,
    desc: u32,
    buf: *mut c_void,
    count: usize,
    offset: u64,
) -> Option<ssize_t> {
    let (map, tell) = {
        let mut guard = table();
        let t = guard.get_or_insert_with(HashMap::new);
        let e = t.entry(desc).or_default();
        match &e.map {
            Some(map) => {
                let changes = map.changes();
                let tell = e.told != Some(changes);
                e.told = Some(changes);
                (Arc::clone(map), tell)
            }
            None => {
                if e.asked || SHOWN.load(Ordering::Relaxed) >= MAX_SHOWN {
                    return None;
                }
                e.preads += 1;
                if e.preads < ASK_AFTER {
                    return None;
                }
                let ticket = TICKETS.fetch_add(1, Ordering::Relaxed);
                (e.asked, e.ticket) = (true, ticket);
                drop(guard);
                let asked = client.map_file(desc);
                let mut guard = table();
                if let Err(e) = &asked
                    && e.raw_os_error() == Some(libc::EAGAIN)
                    && let Some(e) = guard.as_mut()?.get_mut(&desc)
                    && e.ticket == ticket
                {
                    // The server moves a large file a step at a time: ask again later.
                    (e.asked, e.preads) = (false, 0);
                }
                let map = Arc::new(asked.ok()?);
                // Let go meanwhile (and perhaps the number reused): not this one's any more.
                let e = guard
                    .as_mut()?
                    .get_mut(&desc)
                    .filter(|e| e.ticket == ticket)?;
                let changes = map.changes();
                e.map = Some(Arc::clone(&map));
                e.told = Some(changes);
                SHOWN.fetch_add(1, Ordering::Relaxed);
                // The reads through the server before it moved the access time already.
                (map, false)
            }
        }
    };
    // SAFETY: the caller's buffer holds `count` bytes.
    let n = unsafe { map.read_at(buf.cast(), count, offset) }?;
    if tell && count > 0 {
        // Not waited for; its answer is nobody's. A failure shows at the next call.
        let _ = client.post(&Request::Pread {
            fd: desc,
            offset,
            len: 1,
        });
    }
    Some(n as ssize_t)
}
