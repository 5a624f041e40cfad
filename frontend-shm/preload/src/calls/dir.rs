//! Directory streams (`opendir`, `readdir`, ...) over btfuse directories.
//!
//! glibc's `readdir` calls its own `getdents64` internally, where no interposer can reach it,
//! so the streams themselves are btfuse's: a `DIR *` this library returns points at a
//! `Stream` it owns and remembers; every other `DIR *` goes to libc.
//!
//! Positions are the server's readdir cookies: `d_off`, `telldir`, `seekdir` and `lseek` on
//! a directory descriptor all speak them. `getdents64` on a btfuse directory descriptor lays
//! the server's entries out as the kernel's `struct dirent64` records.
//!
//! A stream of a directory whose open told where its listing's changes are counted lists it
//! from the listing this process keeps while that is current, with no round trip, and keeps
//! the listing it fetched whole from the start otherwise (see [`listings`]). Such a stream
//! does not move the description's position; `seekdir` and `rewinddir` set it before the
//! server is asked again. A program that moves the description under a stream itself
//! (`getdents64` or `lseek` on `dirfd`, unspecified for the stream by POSIX) may then get the
//! whole kept listing where glibc's stream would go on from the moved position.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use btfuse_core::FileType;
use btfuse_core::ring::{DirentList, MAX_IO, Request, Response, Whence};
use btfuse_ring_client::Client;
use libc::{c_char, c_int};

use super::fd::close;
use super::path;
use crate::connection::{self, PROTOCOL, call};
use crate::descriptors;
use crate::errno::{errno, fail, set_errno};
use crate::guard::guarded;
use crate::listings::{self, Stamp};
use crate::paths::at_target;
use crate::real;

/// Bytes asked for by a stream's first `Getdents` (what glibc's own streams read at once).
const FIRST_BATCH: u32 = 32 * 1024;
/// The most a stream asks for at once: each full batch doubles the next one up to this, so
/// a large directory is listed in few round trips (each of which, on a machine whose cores
/// are busy, may wait for the server to get a CPU) while a small one costs no more memory.
const MOST_BATCH: u32 = 256 * 1024;

/// A btfuse directory stream.
struct Stream {
    fd: c_int,
    /// Entries fetched and not yet returned, as the ring encodes them (a `DirentList`'s
    /// bytes): each `readdir` takes the next one from `cursor` on, with no copy of its own.
    /// While the listing is gathered to be kept, every batch from the start, in order.
    batch: Vec<u8>,
    /// The whole listing, as this process keeps it: served instead of `batch` when present.
    kept: Option<Arc<[u8]>>,
    cursor: usize,
    /// Where the directory's listing changes are counted, as its open answered.
    stamp: Option<Stamp>,
    /// The version the listing is being gathered at, from its start: `batch` keeps every
    /// batch, and the listing is kept at its end if the version still holds.
    gathering: Option<u64>,
    /// Bytes the next `Getdents` asks for.
    ask: u32,
    /// The position after the entry last returned, or last set (what `telldir` answers).
    /// It starts at 0, as glibc's does even when `fdopendir` gets a descriptor that was
    /// read from already.
    position: u64,
    /// The server said the listing is over.
    done: bool,
    /// What `readdir` returns a pointer to.
    current: libc::dirent64,
}

/// The streams this library made, by address.
static STREAMS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

/// The stream `is_ours` last found in [`STREAMS`] (0: none): a loop of `readdir` on one
/// stream asks the set once. Cleared under the set's lock when that stream closes, before it
/// is freed, so an address that libc reuses for a stream of its own is never taken for it.
static LAST_FOUND: AtomicUsize = AtomicUsize::new(0);

#[unsafe(link_section = ".text.hot.btfuse")]
fn is_ours(dir: *mut libc::DIR) -> bool {
    let address = dir as usize;
    if address != 0 && LAST_FOUND.load(Ordering::Acquire) == address {
        return true;
    }
    let streams = STREAMS.lock().unwrap_or_else(|p| p.into_inner());
    let ours = streams.as_ref().is_some_and(|s| s.contains(&address));
    if ours {
        LAST_FOUND.store(address, Ordering::Release);
    }
    ours
}

fn d_type(kind: FileType) -> u8 {
    match kind {
        FileType::RegularFile => libc::DT_REG,
        FileType::Directory => libc::DT_DIR,
        FileType::Symlink => libc::DT_LNK,
        FileType::CharDevice => libc::DT_CHR,
        FileType::BlockDevice => libc::DT_BLK,
        FileType::NamedPipe => libc::DT_FIFO,
        FileType::Socket => libc::DT_SOCK,
    }
}

fn new_stream(fd: c_int, stamp: Option<Stamp>) -> *mut libc::DIR {
    let stream = Box::new(Stream {
        fd,
        batch: Vec::new(),
        kept: None,
        cursor: 0,
        stamp,
        gathering: None,
        ask: FIRST_BATCH,
        position: 0,
        done: false,
        // SAFETY: an all-zero dirent64 is a valid value.
        current: unsafe { std::mem::zeroed() },
    });
    let ptr = Box::into_raw(stream) as usize;
    STREAMS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(ptr);
    ptr as *mut libc::DIR
}

/// Interposed.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.hot.btfuse")]
pub unsafe extern "C" fn opendir(path: *const c_char) -> *mut libc::DIR {
    let ours = guarded(|| {
        // SAFETY: libc's contract.
        unsafe { at_target(libc::AT_FDCWD, path) }.is_some()
    })
    .unwrap_or(false);
    if !ours {
        // SAFETY: libc's contract, passed on.
        return unsafe { real::opendir()(path) };
    }
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // Opened through this library's `open`, which serves btfuse paths over the ring.
    // SAFETY: libc's contract; `open` is this library's.
    let fd = unsafe { path::open(path, flags, 0) };
    if fd < 0 {
        return std::ptr::null_mut();
    }
    // A path that led out of the tree was opened by the kernel: glibc's stream, then.
    if guarded(|| descriptors::lookup(fd).is_none()) == Some(true) {
        // SAFETY: `fd` is the kernel directory just opened, given to the stream.
        return unsafe { real::fdopendir()(fd) };
    }
    guarded(|| new_stream(fd, stamp_of(fd))).unwrap_or(std::ptr::null_mut())
}

/// The stamp this thread's last directory open left for descriptor `fd`, if any: for a
/// stream that lists a description just opened, from its start.
fn stamp_of(fd: c_int) -> Option<Stamp> {
    let entry = descriptors::lookup(fd)?;
    listings::take_opened(fd, entry.desc)
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdopendir(fd: c_int) -> *mut libc::DIR {
    let ours = guarded(|| descriptors::lookup(fd)).flatten();
    match ours {
        // No kept listing: the descriptor may have been read from since its open, and the
        // stream goes on from where it is.
        Some(entry) if entry.dir => {
            guarded(|| new_stream(fd, None)).unwrap_or(std::ptr::null_mut())
        }
        Some(_) => {
            fail(libc::ENOTDIR);
            std::ptr::null_mut()
        }
        // SAFETY: libc's contract, passed on.
        None => unsafe { real::fdopendir()(fd) },
    }
}

/// The next entry of a btfuse stream, or null at the end (errno untouched) or on error.
///
/// A program tells the end from an error by errno alone, so errno must come back as it was:
/// the ring call may leave one behind from its own system calls (a futex wait that found the
/// value changed, a liveness probe that found no data: `EAGAIN`), which a reader like
/// Python's `os.listdir` would report as a failed listing.
fn next(stream: &mut Stream) -> *mut libc::dirent64 {
    let saved = errno();
    let entry = next_entry(stream);
    if !entry.is_null() || stream.done {
        set_errno(saved);
    }
    entry
}

fn next_entry(stream: &mut Stream) -> *mut libc::dirent64 {
    if stream.kept.is_none() && stream.cursor >= stream.batch.len() && !stream.done {
        let Some(entry) = descriptors::lookup(stream.fd) else {
            fail(libc::EBADF);
            return std::ptr::null_mut();
        };
        let Some(client) = connection::current_client() else {
            fail(libc::EBADF);
            return std::ptr::null_mut();
        };
        let from_start = stream.position == 0 && stream.batch.is_empty();
        if let Some(stamp) = stream.stamp.filter(|_| from_start) {
            if let Some(kept) = listings::find(&client, stamp) {
                stream.kept = Some(kept);
                stream.cursor = 0;
            } else {
                stream.gathering = client.settled_version(stamp.slot);
            }
        }
        if stream.kept.is_none()
            && let Err(e) = fetch(stream, &client, entry.desc)
        {
            stream.batch.clear();
            stream.cursor = 0;
            stream.gathering = None;
            fail(e);
            return std::ptr::null_mut();
        }
    }
    let bytes = stream.kept.as_deref().unwrap_or(&stream.batch);
    // The list was checked when it came; a batch that ended early ends the listing here as
    // it would have there.
    let Some((entry, rest)) = DirentList::split_first(&bytes[stream.cursor..]) else {
        stream.cursor = bytes.len();
        stream.done |= stream.kept.is_some();
        return std::ptr::null_mut();
    };
    stream.cursor = bytes.len() - rest.len();
    stream.position = entry.cookie;
    let d = &mut stream.current;
    d.d_ino = entry.ino.0;
    d.d_off = entry.cookie as i64;
    d.d_reclen = std::mem::size_of::<libc::dirent64>() as u16;
    d.d_type = d_type(entry.kind);
    let len = entry.name.len().min(d.d_name.len() - 1);
    for (dst, &src) in d.d_name.iter_mut().zip(&entry.name[..len]) {
        *dst = src as c_char;
    }
    d.d_name[len] = 0;
    d
}

/// Fetches the stream's next batch. At the end of a listing gathered from its start, keeps it.
fn fetch(stream: &mut Stream, client: &Client, desc: u32) -> Result<(), i32> {
    let gathering = stream.gathering.is_some();
    let batch = &mut stream.batch;
    let empty = call(
        client,
        &Request::Getdents {
            fd: desc,
            max: stream.ask,
        },
        |r| match r {
            Response::Dirents(list) => {
                if !gathering {
                    batch.clear();
                }
                batch.extend_from_slice(list.as_bytes());
                Ok(list.is_empty())
            }
            _ => Err(PROTOCOL),
        },
    )?;
    if !gathering {
        stream.cursor = 0;
    }
    stream.done = empty;
    if let (Some(version), Some(stamp)) = (stream.gathering, stream.stamp) {
        if empty {
            listings::keep(client, stamp, version, &stream.batch);
            stream.gathering = None;
        } else if stream.batch.len() > listings::MOST_ONE {
            // Too large to keep: from now on a batch replaces the one before.
            stream.gathering = None;
            stream.batch.drain(..stream.cursor);
            stream.cursor = 0;
        }
    }
    if empty {
        // Listed to the end: the memory goes back.
        stream.batch = Vec::new();
        stream.cursor = 0;
    } else {
        stream.ask = stream.ask.saturating_mul(2).min(MOST_BATCH);
    }
    Ok(())
}

interpose! {
    /// Interposed.
    fn readdir64(dir: *mut libc::DIR) -> *mut libc::dirent64 {
        if !is_ours(dir) {
            return None;
        }
        // SAFETY: `dir` is a Stream this library made and has not freed.
        Some(next(unsafe { &mut *dir.cast::<Stream>() }))
    }

    /// Interposed: on 64-bit Linux `struct dirent` and `struct dirent64` are the same.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn readdir(dir: *mut libc::DIR) -> *mut libc::dirent {
        if !is_ours(dir) {
            return None;
        }
        // SAFETY: as in readdir64; the two structs have one layout on this target.
        Some(next(unsafe { &mut *dir.cast::<Stream>() }).cast::<libc::dirent>())
    }
}

/// Interposed.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.hot.btfuse")]
pub unsafe extern "C" fn closedir(dir: *mut libc::DIR) -> c_int {
    let ours = guarded(|| {
        let mut streams = STREAMS.lock().unwrap_or_else(|p| p.into_inner());
        let removed = streams.as_mut().is_some_and(|s| s.remove(&(dir as usize)));
        if removed {
            // Under the lock, before the stream is freed (see `LAST_FOUND`).
            let _ =
                LAST_FOUND.compare_exchange(dir as usize, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        removed
    })
    .unwrap_or(false);
    if !ours {
        // SAFETY: libc's contract, passed on.
        return unsafe { real::closedir()(dir) };
    }
    // SAFETY: `dir` was made by `new_stream` and is no longer registered.
    let stream = unsafe { Box::from_raw(dir.cast::<Stream>()) };
    // SAFETY: closes the stream's descriptor through this library's `close`.
    unsafe { close(stream.fd) }
}

interpose! {
    /// Interposed.
    fn dirfd(dir: *mut libc::DIR) -> c_int {
        // SAFETY: `dir` is one of this library's streams when registered.
        is_ours(dir).then(|| unsafe { (*dir.cast::<Stream>()).fd })
    }
}

interpose! {
    /// Interposed.
    fn rewinddir(dir: *mut libc::DIR) -> () {
        if !is_ours(dir) {
            return None;
        }
        // SAFETY: a registered stream.
        let stream = unsafe { &mut *dir.cast::<Stream>() };
        set_position(stream, 0);
        Some(())
    }
}

/// Moves a btfuse stream to `position` (a cookie from `telldir` or `d_off`, 0 for the start).
fn set_position(stream: &mut Stream, position: u64) {
    stream.batch.clear();
    stream.kept = None;
    stream.gathering = None;
    stream.cursor = 0;
    stream.done = false;
    stream.position = position;
    // The stream's position is the description's: seek it. A failure shows at the next
    // `readdir`, as it would for libc's streams.
    if let Some((entry, client)) = descriptors::lookup(stream.fd).zip(connection::current_client())
    {
        let _ = call(
            &client,
            &Request::Lseek {
                fd: entry.desc,
                offset: position as i64,
                whence: Whence::Set,
            },
            |_| Ok(()),
        );
    }
}

interpose! {
    /// Interposed: the position is the readdir cookie of the description.
    fn seekdir(dir: *mut libc::DIR, position: libc::c_long) -> () {
        if !is_ours(dir) {
            return None;
        }
        // SAFETY: a registered stream.
        let stream = unsafe { &mut *dir.cast::<Stream>() };
        set_position(stream, position as u64);
        Some(())
    }
}

interpose! {
    /// Interposed: where the entry after the one last returned is (a readdir cookie).
    fn telldir(dir: *mut libc::DIR) -> libc::c_long {
        if !is_ours(dir) {
            return None;
        }
        // SAFETY: a registered stream.
        Some(unsafe { (*dir.cast::<Stream>()).position } as libc::c_long)
    }
}

/// The size of a `struct dirent64` record for a name of `name_len` bytes: the fixed part,
/// the name and its NUL, rounded up to 8 bytes as the kernel lays them out.
fn record_len(name_len: usize) -> usize {
    (std::mem::offset_of!(libc::dirent64, d_name) + name_len + 1).next_multiple_of(8)
}

/// Lays `entries` out as the kernel's `getdents64` does, as many as fit in `buf`: how many
/// bytes were written, the cookie after the last entry written, and whether all were.
fn lay_out(entries: &DirentList<'_>, buf: &mut [u8]) -> (usize, Option<u64>, bool) {
    let name_at = std::mem::offset_of!(libc::dirent64, d_name);
    let mut used = 0;
    let mut last = None;
    for e in entries.iter() {
        let len = record_len(e.name.len());
        let Some(record) = buf.get_mut(used..used + len) else {
            return (used, last, false);
        };
        record.fill(0);
        record[0..8].copy_from_slice(&e.ino.0.to_ne_bytes());
        record[8..16].copy_from_slice(&(e.cookie as i64).to_ne_bytes());
        record[16..18].copy_from_slice(&(len as u16).to_ne_bytes());
        record[18] = d_type(e.kind);
        record[name_at..name_at + e.name.len()].copy_from_slice(e.name);
        used += len;
        last = Some(e.cookie);
    }
    (used, last, true)
}

/// One `Getdents` of at most `max` bytes (the ring's encoding) laid out into `buf`; moves
/// the description back to just after the last entry that fit. `Ok(0)` at the end.
fn getdents_into(client: &Client, desc: u32, max: u32, buf: &mut [u8]) -> Result<usize, i32> {
    let (used, last, all) = call(client, &Request::Getdents { fd: desc, max }, |r| match r {
        Response::Dirents(list) => Ok(lay_out(&list, buf)),
        _ => Err(PROTOCOL),
    })?;
    if !all {
        let Some(last) = last else {
            return Err(libc::EINVAL);
        };
        let seek = Request::Lseek {
            fd: desc,
            offset: last as i64,
            whence: Whence::Set,
        };
        call(client, &seek, |_| Ok(()))?;
    }
    Ok(used)
}

interpose! {
    /// Interposed: `getdents64` on a btfuse directory descriptor fills the buffer with
    /// `struct dirent64` records (`d_off` is the position after each, for `lseek`), as many as
    /// fit, and moves the position past them.
    fn getdents64(fd: c_int, buf: *mut libc::c_void, count: usize) -> isize {
        let entry = descriptors::lookup(fd)?;
        let client = connection::current_client().or_else(connection::client)?;
        if !entry.dir {
            return Some(fail(libc::ENOTDIR) as isize);
        }
        // SAFETY: the caller's buffer holds `count` bytes.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), count) };
        // An entry takes at most 4/3 of its ring size as a record (19 + n bytes against
        // (20 + n) rounded up to 8), so three quarters of the buffer always fits whole.
        let cap = u32::try_from(count.min(MAX_IO)).unwrap_or(u32::MAX);
        let safe = cap / 4 * 3;
        let result = match getdents_into(&client, entry.desc, safe.max(1), out) {
            // The first entry is larger than three quarters of the buffer: ask for it alone
            // with the whole buffer; it may still fit as a record.
            Err(libc::EINVAL) => getdents_one(&client, entry.desc, cap, out),
            other => other,
        };
        Some(match result {
            Ok(n) => n as isize,
            Err(e) => fail(e) as isize,
        })
    }
}

/// `getdents64` into a buffer too small for three quarters of the first entry's ring size:
/// the position is read first, so that it can be put back if even one record does not fit.
fn getdents_one(client: &Client, desc: u32, cap: u32, out: &mut [u8]) -> Result<usize, i32> {
    let here = Request::Lseek {
        fd: desc,
        offset: 0,
        whence: Whence::Cur,
    };
    let start = call(client, &here, |r| match r {
        Response::Offset(n) => Ok(n),
        _ => Err(PROTOCOL),
    })?;
    match getdents_into(client, desc, cap, out) {
        Err(libc::EINVAL) => {
            let back = Request::Lseek {
                fd: desc,
                offset: start as i64,
                whence: Whence::Set,
            };
            call(client, &back, |_| Ok(()))?;
            Err(libc::EINVAL)
        }
        other => other,
    }
}
