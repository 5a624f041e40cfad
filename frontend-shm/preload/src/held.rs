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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use btfuse_core::Ino;
use btfuse_core::ring::{MAX_IO, Request, Response, Whence};
use btfuse_ring_client::Client;
use hashbrown::HashMap;
use libc::{c_void, off_t, size_t, ssize_t};

use crate::connection::{PROTOCOL, call};
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
}

/// Descriptions held, for the quick "none at all" answer that spares every other descriptor
/// the map's lock.
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// The bytes an earlier open of `path` (from the served root) was sent, by the server whose
/// content table is `source`.
struct Recent {
    source: u64,
    path: Vec<u8>,
    bytes: Bytes,
}

#[derive(Default)]
pub(crate) struct Table {
    /// Held descriptions by the server's descriptor number.
    held: HashMap<u32, Arc<Mutex<Held>>>,
    recent: [Option<Recent>; RECENT],
    /// The `recent` entry to replace next.
    next: usize,
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
            .find(|r| r.source == source && r.path == path)
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
/// content source: the bytes are kept for it after the description closes.
pub(crate) fn keep(
    desc: u32,
    path: Option<(u64, &[u8])>,
    (ino, slot, version): (Ino, u32, u64),
    (data, named): (Option<Arc<[u8]>>, Option<Bytes>),
    asked: u32,
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
    if let Some((source, path)) = path {
        let same = table
            .recent
            .iter_mut()
            .flatten()
            .find(|r| r.source == source && r.path == path);
        match same {
            Some(r) => r.bytes = bytes.clone(),
            None => {
                let slot = table.next;
                table.next = (slot + 1) % RECENT;
                table.recent[slot] = Some(Recent {
                    source,
                    path: path.to_vec(),
                    bytes: bytes.clone(),
                });
            }
        }
    }
    let held = Held {
        bytes: Some(bytes),
        offset: 0,
        settled: false,
    };
    if table
        .held
        .insert(desc, Arc::new(Mutex::new(held)))
        .is_none()
    {
        COUNT.fetch_add(1, Ordering::Relaxed);
    }
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

/// Drops what is held for `desc`, which is being closed: its offset dies with it.
pub(crate) fn forget(desc: u32) {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(held) = take(&mut table(), desc) {
        lock(&held).settled = true;
    }
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
