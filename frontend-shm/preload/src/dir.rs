//! Directory streams (`opendir`, `readdir`, ...) over btfuse directories.
//!
//! glibc's `readdir` calls its own `getdents64` internally, where no interposer can reach it,
//! so the streams themselves are btfuse's: a `DIR *` this library returns points at a
//! [`Stream`] it owns and remembers; every other `DIR *` goes to libc.

use std::collections::HashSet;
use std::sync::Mutex;

use btfuse_core::FileType;
use btfuse_core::ring::{Request, Response};
use libc::{c_char, c_int};

use crate::calls::{at_target, close};
use crate::real;
use crate::state::{self, PROTOCOL, call, fail, guarded};

/// Bytes asked for per `Getdents`.
const BATCH: u32 = 32 * 1024;

/// A btfuse directory stream.
struct Stream {
    fd: c_int,
    /// Entries fetched and not yet returned: (ino, d_type, name).
    pending: std::collections::VecDeque<(u64, u8, Vec<u8>)>,
    /// The server said the listing is over.
    done: bool,
    /// What `readdir` returns a pointer to.
    current: libc::dirent64,
}

/// The streams this library made, by address.
static STREAMS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn is_ours(dir: *mut libc::DIR) -> bool {
    STREAMS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|s| s.contains(&(dir as usize)))
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

fn new_stream(fd: c_int) -> *mut libc::DIR {
    let stream = Box::new(Stream {
        fd,
        pending: Default::default(),
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
    let fd = unsafe { crate::calls::open(path, flags, 0) };
    if fd < 0 {
        return std::ptr::null_mut();
    }
    guarded(|| new_stream(fd)).unwrap_or(std::ptr::null_mut())
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdopendir(fd: c_int) -> *mut libc::DIR {
    let ours = guarded(|| state::lookup(fd)).flatten();
    match ours {
        Some(entry) if entry.dir => guarded(|| new_stream(fd)).unwrap_or(std::ptr::null_mut()),
        Some(_) => {
            fail(libc::ENOTDIR);
            std::ptr::null_mut()
        }
        // SAFETY: libc's contract, passed on.
        None => unsafe { real::fdopendir()(fd) },
    }
}

/// The next entry of a btfuse stream, or null at the end (errno untouched) or on error.
fn next(stream: &mut Stream) -> *mut libc::dirent64 {
    if stream.pending.is_empty() && !stream.done {
        let Some(entry) = state::lookup(stream.fd) else {
            fail(libc::EBADF);
            return std::ptr::null_mut();
        };
        let Some(client) = state::current_client() else {
            fail(libc::EBADF);
            return std::ptr::null_mut();
        };
        let pending = &mut stream.pending;
        let fetched = call(
            &client,
            &Request::Getdents {
                fd: entry.desc,
                max: BATCH,
            },
            |r| match r {
                Response::Dirents(list) => {
                    for e in list.iter() {
                        pending.push_back((e.ino.0, d_type(e.kind), e.name.to_vec()));
                    }
                    Ok(list.iter().next().is_none())
                }
                _ => Err(PROTOCOL),
            },
        );
        match fetched {
            Ok(empty) => stream.done = empty,
            Err(e) => {
                fail(e);
                return std::ptr::null_mut();
            }
        }
    }
    let Some((ino, kind, name)) = stream.pending.pop_front() else {
        return std::ptr::null_mut();
    };
    let d = &mut stream.current;
    d.d_ino = ino;
    d.d_off = 0;
    d.d_reclen = std::mem::size_of::<libc::dirent64>() as u16;
    d.d_type = kind;
    let len = name.len().min(d.d_name.len() - 1);
    for (dst, &src) in d.d_name.iter_mut().zip(&name[..len]) {
        *dst = src as c_char;
    }
    d.d_name[len] = 0;
    d
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir64(dir: *mut libc::DIR) -> *mut libc::dirent64 {
    let served = guarded(|| {
        if !is_ours(dir) {
            return None;
        }
        // SAFETY: `dir` is a Stream this library made and has not freed.
        Some(next(unsafe { &mut *dir.cast::<Stream>() }))
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::readdir64()(dir) })
}

/// Interposed: on 64-bit Linux `struct dirent` and `struct dirent64` are the same.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir(dir: *mut libc::DIR) -> *mut libc::dirent {
    let served = guarded(|| {
        if !is_ours(dir) {
            return None;
        }
        // SAFETY: as in readdir64; the two structs have one layout on this target.
        Some(next(unsafe { &mut *dir.cast::<Stream>() }).cast::<libc::dirent>())
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::readdir()(dir) })
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closedir(dir: *mut libc::DIR) -> c_int {
    let ours = guarded(|| {
        let mut streams = STREAMS.lock().unwrap_or_else(|p| p.into_inner());
        streams.as_mut().is_some_and(|s| s.remove(&(dir as usize)))
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

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dirfd(dir: *mut libc::DIR) -> c_int {
    let served = guarded(|| {
        // SAFETY: `dir` is one of this library's streams when registered.
        is_ours(dir).then(|| unsafe { (*dir.cast::<Stream>()).fd })
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::dirfd()(dir) })
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rewinddir(dir: *mut libc::DIR) {
    let served = guarded(|| {
        if !is_ours(dir) {
            return None;
        }
        // SAFETY: a registered stream.
        let stream = unsafe { &mut *dir.cast::<Stream>() };
        stream.pending.clear();
        stream.done = false;
        // SAFETY: seeks the stream's own descriptor through this library.
        unsafe { crate::calls::lseek(stream.fd, 0, libc::SEEK_SET) };
        Some(())
    })
    .flatten();
    if served.is_none() {
        // SAFETY: libc's contract, passed on.
        unsafe { real::rewinddir()(dir) }
    }
}
