//! Descriptions this process holds alone, whose offset it keeps itself and whose first bytes
//! came with the open.
//!
//! A regular file opened only for reading is opened with `prefetch`: the server answers with
//! the file's first [`PREFETCH`] bytes and the content version that vouches for them
//! (`Response::Prefetched`), and leaves the description's offset at 0. From then on, while
//! no other process can reach the description, this process keeps its offset here:
//!
//! - `read` copies from the bytes held as long as the server's content table still shows their
//!   version (one load, no round trip) and they cover the read, or the file ends within them;
//!   otherwise it reads through the server with `Pread` at the offset kept here. Each read
//!   therefore reads what the file holds at that moment, as a kernel read would.
//! - `lseek` with `SEEK_SET` or `SEEK_CUR` moves the offset here; `pread` is served from the
//!   bytes held when they cover it.
//! - Anything else that uses or shares the offset (another `lseek`, `readv`, `dup`, `fork`, an
//!   exec that passes the descriptor on) first **settles** the description: the offset kept
//!   here is written back to the server (`Lseek`), and the server's description is the one
//!   truth again. Closing drops what is held with no request.
//!
//! The server's offset stays at 0 while this process keeps it, because nothing else can move
//! it: the description is this process's alone until it is shared, and sharing settles first.
//! A read racing a settle from another thread finds the description settled and reads through
//! the server.
//!
//! The access time is set by the server's read at the open, which stands for the first read.
//!
//! The bytes of the last few files opened this way are kept after their descriptions close,
//! by path ([`RECENT`] entries): an open of the same path names them (`known_ino`,
//! `known_version`), and while they are still current the server sends none (`cat`-like
//! loops no longer move the same bytes across the ring every time).
//!
//! **Opened again without asking.** A description of a file whose bytes are held whole (at
//! most [`PREFETCH`]), opened only for reading with no flag but `O_CLOEXEC`, `O_NOFOLLOW`,
//! `O_NOCTTY` or `O_LARGEFILE`, and never settled, is still the server's description of that
//! file at offset 0 when the program closes it: it is **parked** beside the path's bytes
//! instead of closed (one per path, so at most [`RECENT`]). The next open of the same path
//! with the same flags takes it without a round trip if the server's open would be the same
//! one again, which this process can tell from a `stat` answer it keeps (see `attrs`):
//!
//! - the answer stands (the walk's and the inode's stamps hold, the process has the ids it
//!   asked with), names the parked description's inode, and was kept before the parked
//!   description was opened: nothing the server's open checked (the walk, the directories'
//!   and the file's modes and owners, the caller's ids) has changed since that open
//!   succeeded, so an open now would succeed and reach the same inode;
//! - the file's access time is less than a day old (a day-old one is moved by the first read
//!   of an open, which this one would skip).
//!
//! An open of a parked path with no standing answer asks `StatStamped` first (at most twice
//! for each path until an open without asking succeeds), so that the description it then
//! opens is parked with an answer kept before it. Parked descriptions are closed when
//! another takes their place, before `fork` and `exec` (the server's table is then shared),
//! when this process removes or renames a name, and for good once it takes a POSIX record
//! lock (closing any descriptor of a file lets those go, which a parked one would not do).
//! Holding one keeps at most [`PREFETCH`] bytes of a removed file alive in the server.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use btfuse_core::Ino;
use btfuse_core::ring::{MAX_IO, Request, Response, Whence};
use btfuse_ring_client::Client;
use hashbrown::HashMap;
use libc::{c_int, c_void, off_t, size_t, ssize_t};

use crate::connection::{self, PROTOCOL, call};
use crate::errno::fail;

/// Bytes of content an open for reading asks for.
pub(crate) const PREFETCH: u32 = 16 * 1024;
/// Paths whose bytes are kept after their descriptions close.
const RECENT: usize = 8;

/// A file's first bytes as an open brought them.
#[derive(Clone)]
pub(crate) struct Bytes {
    pub(crate) ino: Ino,
    /// Where the server's content table counts the inode's changes.
    slot: u32,
    /// The content version that vouches for `data`.
    pub(crate) version: u64,
    /// The file's bytes from offset 0.
    data: Arc<[u8]>,
    /// `data` is the whole file: a read past it is at the end.
    whole: bool,
}

/// One description's offset and the content held for it.
pub(crate) struct Held {
    /// The file's first bytes (gone once they are stale).
    bytes: Option<Bytes>,
    /// The description's offset.
    offset: u64,
    /// Written back to the server: the server's description is to be used.
    settled: bool,
    /// Where the description may be parked when the program closes it.
    park: Option<Park>,
}

/// What parking a description needs to know of its open.
struct Park {
    /// The server's content table.
    source: u64,
    /// The path opened, from the served root.
    path: Arc<[u8]>,
    /// The inode opened.
    ino: Ino,
    /// The open's flags, but `O_CLOEXEC`.
    flags: c_int,
    /// `attrs::moment()` read before the open was sent.
    opened_after: u64,
}

/// A description parked beside its path's bytes (see the module's docs).
struct Parked {
    desc: u32,
    park: Park,
}

/// The flags an open may have to be parked and taken again.
const PARKABLE: c_int = libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_LARGEFILE;

/// Whether an open with `flags` may take or leave a parked description.
pub(crate) fn parkable(flags: c_int) -> bool {
    flags & !PARKABLE == libc::O_RDONLY
}

/// Descriptions parked, for the quick "none" answer.
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Set for good once this process takes a POSIX record lock.
static NO_PARKING: AtomicBool = AtomicBool::new(false);
/// How many times an open of a parked path may ask `StatStamped` before one is served here.
const MOST_ASKS: u8 = 2;

/// Descriptions held, for the quick "none at all" answer that spares every other descriptor
/// the map's lock.
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// The bytes an earlier open of `path` (from the served root) was sent, by the server whose
/// content table is `source`.
struct Recent {
    source: u64,
    path: Arc<[u8]>,
    bytes: Bytes,
    parked: Option<Parked>,
    /// `StatStamped` asked for this path since an open was last served here.
    asks: u8,
}

#[derive(Default)]
pub(crate) struct Table {
    /// Held descriptions by the server's descriptor number.
    held: HashMap<u32, Arc<Mutex<Held>>>,
    recent: [Option<Recent>; RECENT],
    /// The `recent` entry to replace next.
    next: usize,
    /// Parked descriptions taken out of `recent`, to be closed ([`close_unparked`]).
    unparked: Vec<u32>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn table() -> MutexGuard<'static, Option<Table>> {
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The bytes this process holds for `path` (from the served root of the server whose content
/// table is `source`), to name in an open (`known_ino`, `known_version`).
pub(crate) fn known(source: u64, path: &[u8]) -> Option<Bytes> {
    let table = table();
    let found = table.as_ref().and_then(|t| {
        t.recent
            .iter()
            .flatten()
            .find(|r| r.source == source && *r.path == *path)
    })?;
    Some(found.bytes.clone())
}

fn lock(held: &Mutex<Held>) -> MutexGuard<'_, Held> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps the offset of description `desc`, just opened, whose first bytes are `data` at
/// content `version`. No bytes (`None`) came either because those the open named (`named`) are
/// still current (the answer's inode and version are theirs) or because the file is empty.
/// `asked` is how many bytes the open asked for: fewer means the file ends there. `path` is
/// the one opened, from the served root, if it was named from there, with the server's
/// content source: the bytes are kept for it after the description closes. `parking` is the
/// open's flags and `attrs::moment()` read before it was sent, for an open that may be parked
/// ([`parkable`]).
pub(crate) fn keep(
    desc: u32,
    path: Option<(u64, &[u8])>,
    (ino, slot, version): (Ino, u32, u64),
    (data, named): (Option<Arc<[u8]>>, Option<Bytes>),
    asked: u32,
    parking: Option<(c_int, u64)>,
) {
    let bytes = match (data, named) {
        (Some(data), _) => Bytes {
            ino,
            slot,
            version,
            whole: data.len() < asked as usize,
            data,
        },
        (None, Some(named)) if (named.ino, named.version) == (ino, version) => named,
        (None, _) => Bytes {
            ino,
            slot,
            version,
            data: Arc::from(&[][..]),
            whole: true,
        },
    };
    let mut table = table();
    let table = table.get_or_insert_with(Table::default);
    let mut park = None;
    if let Some((source, path)) = path {
        let path = match table.recent_mut(source, path) {
            Some(r) => {
                r.bytes = bytes.clone();
                r.path.clone()
            }
            None => {
                let path: Arc<[u8]> = Arc::from(path);
                let slot = table.next;
                table.next = (slot + 1) % RECENT;
                let replaced = table.recent[slot].replace(Recent {
                    source,
                    path: path.clone(),
                    bytes: bytes.clone(),
                    parked: None,
                    asks: 0,
                });
                if let Some(parked) = replaced.and_then(|r| r.parked) {
                    table.unpark(parked.desc);
                }
                path
            }
        };
        park = parking.map(|(flags, opened_after)| Park {
            source,
            path,
            ino,
            flags: flags & !libc::O_CLOEXEC,
            opened_after,
        });
    }
    let held = Held {
        bytes: Some(bytes),
        offset: 0,
        settled: false,
        park,
    };
    table.hold(desc, held);
}

impl Table {
    fn hold(&mut self, desc: u32, held: Held) {
        if self.held.insert(desc, Arc::new(Mutex::new(held))).is_none() {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn recent_mut(&mut self, source: u64, path: &[u8]) -> Option<&mut Recent> {
        self.recent
            .iter_mut()
            .flatten()
            .find(|r| r.source == source && *r.path == *path)
    }

    /// Counts parked description `desc`, taken out of `recent`, as one to close.
    fn unpark(&mut self, desc: u32) {
        PARKED.fetch_sub(1, Ordering::Relaxed);
        self.unparked.push(desc);
    }

    /// Takes every parked description out of `recent`, to be closed.
    fn unpark_all(&mut self) {
        for i in 0..RECENT {
            if let Some(parked) = self.recent[i].as_mut().and_then(|r| r.parked.take()) {
                self.unpark(parked.desc);
            }
        }
    }
}

/// Closes the descriptions unparked in `table` (posted, not waited for).
fn close_unparked(client: &Client, table: &mut Option<Table>) {
    let Some(table) = table.as_mut().filter(|t| !t.unparked.is_empty()) else {
        return;
    };
    for desc in table.unparked.drain(..) {
        let (posted, ()) = client.post_then(&Request::Close { fd: desc }, || ());
        if let Err(e) = posted {
            connection::transport_failed(&e);
        }
    }
}

/// Takes the description parked for `path` (from the served root of the server whose content
/// table is `source`) by an open with `flags`, if `stands` says an open now would reach it
/// again (given its inode and the moment before its open): it is held as a new description
/// at offset 0 with the bytes held for the path, and its number is answered. Otherwise
/// whether the caller should ask the server about the path first: a description is parked
/// for it, but no answer stands (at most [`MOST_ASKS`] times until one is taken).
pub(crate) fn open_parked(
    source: u64,
    path: &[u8],
    flags: c_int,
    stands: impl FnOnce(Ino, u64) -> bool,
) -> Result<u32, bool> {
    if PARKED.load(Ordering::Relaxed) == 0 {
        return Err(false);
    }
    let flags = flags & !libc::O_CLOEXEC;
    let mut guard = table();
    let Some(table) = guard.as_mut() else {
        return Err(false);
    };
    let Some(recent) = table.recent_mut(source, path) else {
        return Err(false);
    };
    let ino = recent.bytes.ino;
    let Some(parked) =
        (recent.parked.as_ref()).filter(|p| p.park.flags == flags && p.park.ino == ino)
    else {
        return Err(false);
    };
    if !stands(ino, parked.park.opened_after) {
        let ask = recent.asks < MOST_ASKS;
        recent.asks += u8::from(ask);
        return Err(ask);
    }
    let Parked { desc, park } = recent.parked.take().expect("checked above");
    PARKED.fetch_sub(1, Ordering::Relaxed);
    recent.asks = 0;
    let held = Held {
        bytes: Some(recent.bytes.clone()),
        offset: 0,
        settled: false,
        park: Some(park),
    };
    table.hold(desc, held);
    Ok(desc)
}

/// `f` on the description held as `desc`, if it is: what `f` answers, or `None` (not held,
/// or `f` declines) for the caller to go to the server.
pub(crate) fn with<T>(desc: u32, f: impl FnOnce(&mut Held) -> Option<T>) -> Option<T> {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let held = table().as_ref()?.held.get(&desc).cloned()?;
    f(&mut lock(&held))
}

fn take(table: &mut Option<Table>, desc: u32) -> Option<Arc<Mutex<Held>>> {
    let held = table.as_mut()?.held.remove(&desc)?;
    COUNT.fetch_sub(1, Ordering::Relaxed);
    Some(held)
}

/// Drops what is held for `desc`, which the program is closing: its offset dies with it.
/// Whether the description was parked instead (see the module's docs): the caller then
/// leaves it open in the server.
pub(crate) fn forget(client: &Client, desc: u32) -> bool {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let mut guard = table();
    let Some(held) = take(&mut guard, desc) else {
        return false;
    };
    let mut held = lock(&held);
    let was_settled = core::mem::replace(&mut held.settled, true);
    let parked = held
        .park
        .take()
        .filter(|_| !was_settled && !NO_PARKING.load(Ordering::Relaxed))
        .is_some_and(|park| park_in(client, &mut guard, desc, park));
    close_unparked(client, &mut guard);
    parked
}

/// Parks description `desc`, opened as `park` says, if its path's bytes are still the whole
/// file it opened, as the file is now: a parked description keeps little alive.
fn park_in(client: &Client, table: &mut Option<Table>, desc: u32, park: Park) -> bool {
    let Some(table) = table.as_mut() else {
        return false;
    };
    let Some(recent) = table.recent_mut(park.source, &park.path) else {
        return false;
    };
    let bytes = &recent.bytes;
    if bytes.ino != park.ino
        || !bytes.whole
        || !client.content_is_current(bytes.slot, bytes.version)
    {
        return false;
    }
    let old = recent.parked.replace(Parked { desc, park });
    PARKED.fetch_add(1, Ordering::Relaxed);
    if let Some(old) = old {
        table.unpark(old.desc);
    }
    true
}

/// Closes every parked description (see the module's docs).
pub(crate) fn unpark_all(client: &Client) {
    if PARKED.load(Ordering::Relaxed) != 0 {
        let mut table = table();
        if let Some(t) = table.as_mut() {
            t.unpark_all();
        }
        close_unparked(client, &mut table);
    }
}

/// Closes every parked description and parks none again: this process takes POSIX record
/// locks, which closing any descriptor of a file lets go.
pub(crate) fn stop_parking(client: &Client) {
    NO_PARKING.store(true, Ordering::Relaxed);
    unpark_all(client);
}

/// Writes the offset kept for `desc` back to the server, if one is kept; from then on the
/// server's description is used. An error is the errno of the write-back.
pub(crate) fn settle(client: &Client, desc: u32) -> Result<(), i32> {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    let Some(held) = take(&mut table(), desc) else {
        return Ok(());
    };
    let mut held = lock(&held);
    held.settle(client, desc)
}

/// Settles every description held and keeps the table locked (empty) until the guard goes:
/// for `fork`, whose child must not find offsets kept only in its parent's memory.
pub(crate) fn settle_all(client: Option<&Client>) -> MutexGuard<'static, Option<Table>> {
    let mut table = table();
    // The server's table is about to be shared: what is parked there is closed first.
    if let Some(t) = table.as_mut() {
        t.unpark_all();
        if client.is_none() {
            t.unparked.clear();
        }
    }
    if let Some(client) = client {
        close_unparked(client, &mut table);
    }
    if let Some(all) = table.as_mut() {
        for (desc, held) in all.held.drain() {
            COUNT.fetch_sub(1, Ordering::Relaxed);
            let mut held = lock(&held);
            match client {
                Some(client) => {
                    let _ = held.settle(client, desc);
                }
                None => held.settled = true,
            }
        }
    }
    table
}

impl Held {
    fn settle(&mut self, client: &Client, desc: u32) -> Result<(), i32> {
        if self.settled {
            return Ok(());
        }
        self.settled = true;
        if self.offset == 0 {
            // The server's offset is 0 already.
            return Ok(());
        }
        let request = Request::Lseek {
            fd: desc,
            offset: self.offset as i64,
            whence: Whence::Set,
        };
        call(client, &request, |r| match r {
            Response::Offset(_) => Ok(()),
            _ => Err(PROTOCOL),
        })
    }

    /// The bytes held at `offset`, up to `count`, if they answer a read there: they are
    /// current and either cover it or end where the file does.
    fn local(&mut self, client: &Client, offset: u64, count: usize) -> Option<&[u8]> {
        let bytes = self.bytes.as_ref()?;
        if !client.content_is_current(bytes.slot, bytes.version) {
            self.bytes = None;
            return None;
        }
        let bytes = self.bytes.as_ref()?;
        let start = usize::try_from(offset).ok()?.min(bytes.data.len());
        let rest = &bytes.data[start..];
        (rest.len() >= count || bytes.whole).then(|| &rest[..rest.len().min(count)])
    }

    /// `read(2)` at the offset kept here; `None` if the description has been settled (the
    /// caller reads through the server's description).
    pub(crate) fn read(
        &mut self,
        client: &Client,
        desc: u32,
        buf: *mut c_void,
        count: size_t,
    ) -> Option<ssize_t> {
        if self.settled {
            return None;
        }
        let count = count.min(MAX_IO);
        let offset = self.offset;
        let n = match self.local(client, offset, count) {
            // SAFETY: the caller's buffer holds `count` bytes; `bytes` is at most that long.
            Some(bytes) => unsafe { copy_out(bytes, buf) },
            None => {
                let request = Request::Pread {
                    fd: desc,
                    offset,
                    len: count as u32,
                };
                match read_into(client, &request, buf, count) {
                    Ok(n) => n,
                    Err(e) => return Some(fail(e) as ssize_t),
                }
            }
        };
        self.offset += n as u64;
        Some(n as ssize_t)
    }

    /// `pread(2)` from the bytes held, when they answer it.
    pub(crate) fn pread(
        &mut self,
        client: &Client,
        buf: *mut c_void,
        count: size_t,
        offset: u64,
    ) -> Option<ssize_t> {
        if self.settled {
            return None;
        }
        let bytes = self.local(client, offset, count.min(MAX_IO))?;
        // SAFETY: the caller's buffer holds `count` bytes; `bytes` is at most that long.
        Some(unsafe { copy_out(bytes, buf) } as ssize_t)
    }

    /// `lseek(2)` with `SEEK_SET` or `SEEK_CUR`, moving the offset kept here; `None` for other
    /// whences or a settled description (the caller settles and asks the server).
    pub(crate) fn seek(&mut self, offset: off_t, whence: libc::c_int) -> Option<off_t> {
        if self.settled {
            return None;
        }
        let target = match whence {
            libc::SEEK_SET => Some(offset),
            libc::SEEK_CUR => i64::try_from(self.offset)
                .ok()
                .and_then(|o| o.checked_add(offset)),
            _ => return None,
        };
        match target {
            Some(t) if t >= 0 => {
                self.offset = t as u64;
                Some(t)
            }
            _ => Some(fail(libc::EINVAL) as off_t),
        }
    }
}

/// Copies `bytes` to `buf`; their length.
///
/// # Safety
/// `buf` holds at least `bytes.len()` writable bytes.
unsafe fn copy_out(bytes: &[u8], buf: *mut c_void) -> usize {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len()) };
    bytes.len()
}

/// Sends a read request and copies the data it answers into `buf` (`count` bytes).
fn read_into(
    client: &Client,
    request: &Request<'_>,
    buf: *mut c_void,
    count: usize,
) -> Result<usize, i32> {
    call(client, request, |r| match r {
        // SAFETY: the caller's buffer holds `count` bytes; `data` is at most that long.
        Response::Data(data) if data.len() <= count => Ok(unsafe { copy_out(data, buf) }),
        _ => Err(PROTOCOL),
    })
}
