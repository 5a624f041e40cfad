//! Cookie streams: glibc `FILE`s whose callbacks are this library's `read`, `write` and
//! `lseek`, since a glibc stream reads and writes through libc-internal calls no interposer
//! reaches. While descriptor 0, 1 or 2 is a btfuse descriptor, `stdin`, `stdout` or `stderr`
//! is such a stream, a stand-in over the same number ([`sync_std_stream`]); the program's
//! original stream comes back, flushed, when the descriptor stops being btfuse's. The
//! streams `fopen` and `fdopen` make are [`stdio`](super::stdio)'s, closed by its callback.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, Ordering};

use libc::{FILE, c_char, c_int, c_void, size_t, ssize_t};

use super::io;
use crate::descriptors;

#[repr(C)]
struct CookieFunctions {
    read: Option<unsafe extern "C" fn(*mut c_void, *mut c_char, size_t) -> ssize_t>,
    write: Option<unsafe extern "C" fn(*mut c_void, *const c_char, size_t) -> ssize_t>,
    seek: Option<unsafe extern "C" fn(*mut c_void, *mut i64, c_int) -> c_int>,
    close: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
}

unsafe extern "C" {
    fn fopencookie(cookie: *mut c_void, mode: *const c_char, funcs: CookieFunctions) -> *mut FILE;
    static mut stdin: *mut FILE;
    static mut stdout: *mut FILE;
    static mut stderr: *mut FILE;
}

/// What a cookie stream stands on.
pub(super) struct Cookie {
    pub(super) fd: c_int,
    /// The stream made over it, once made.
    stream: usize,
    /// `fclose` closes the descriptor (`fopen`, `fdopen`); not for the standard streams.
    pub(super) owns_fd: bool,
}

unsafe extern "C" fn cookie_read(cookie: *mut c_void, buf: *mut c_char, size: size_t) -> ssize_t {
    // SAFETY: the cookie is a live `Cookie`; `buf` holds `size` bytes (stdio's contract).
    unsafe { io::read((*cookie.cast::<Cookie>()).fd, buf.cast(), size) }
}

unsafe extern "C" fn cookie_write(
    cookie: *mut c_void,
    buf: *const c_char,
    size: size_t,
) -> ssize_t {
    // SAFETY: as in cookie_read.
    let fd = unsafe { (*cookie.cast::<Cookie>()).fd };
    let mut done = 0;
    while done < size {
        // SAFETY: `buf` holds `size` bytes.
        let n = unsafe { io::write(fd, buf.add(done).cast(), size - done) };
        if n <= 0 {
            return if done > 0 { done as ssize_t } else { -1 };
        }
        done += n as usize;
    }
    done as ssize_t
}

unsafe extern "C" fn cookie_seek(cookie: *mut c_void, offset: *mut i64, whence: c_int) -> c_int {
    // SAFETY: as in cookie_read; `offset` is stdio's.
    unsafe {
        let at = io::lseek((*cookie.cast::<Cookie>()).fd, *offset, whence);
        if at < 0 {
            return -1;
        }
        *offset = at;
    }
    0
}

/// A cookie stream's `fclose` callback: the stand-ins' own, or, for the streams `fopen` and
/// `fdopen` make, one that closes the descriptor with this library's `close`.
pub(super) type Close = unsafe extern "C" fn(*mut c_void) -> c_int;

/// The cookie of a stream being closed, no longer registered.
///
/// # Safety
/// `cookie` is the cookie of a stream made by [`cookie_stream`], which stdio is closing (it
/// does so once).
pub(super) unsafe fn take_cookie(cookie: *mut c_void) -> Box<Cookie> {
    debug_assert!(!cookie.is_null());
    // SAFETY: the caller's contract; the cookie came from Box::into_raw.
    let cookie = unsafe { Box::from_raw(cookie.cast::<Cookie>()) };
    if let Some(files) = FILES.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        files.remove(&cookie.stream);
    }
    cookie
}

/// `fclose` of a stand-in for a standard stream: the descriptor is the program's and stays.
unsafe extern "C" fn close_stand_in(cookie: *mut c_void) -> c_int {
    // SAFETY: stdio closes a stream once; stand-ins are made by `cookie_stream`.
    drop(unsafe { take_cookie(cookie) });
    0
}

/// Streams this library made, with their cookies (for `fileno` and `freopen`).
static FILES: Mutex<Option<HashMap<usize, usize>>> = Mutex::new(None);

/// The cookie of a stream this library made.
#[unsafe(link_section = ".text.hot.btfuse")]
pub(super) fn cookie_of(fp: *mut FILE) -> Option<*mut Cookie> {
    FILES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()?
        .get(&(fp as usize))
        .map(|&c| c as *mut Cookie)
}

/// A cookie stream over btfuse descriptor `fd`, which `close` ends.
///
/// # Safety
/// `mode` is a valid C string.
pub(super) unsafe fn cookie_stream(
    fd: c_int,
    mode: *const c_char,
    owns_fd: bool,
    close: Close,
) -> *mut FILE {
    let cookie = Box::into_raw(Box::new(Cookie {
        fd,
        stream: 0,
        owns_fd,
    }));
    let funcs = CookieFunctions {
        read: Some(cookie_read),
        write: Some(cookie_write),
        seek: Some(cookie_seek),
        close: Some(close),
    };
    // SAFETY: the cookie lives until stdio calls `close`.
    let fp = unsafe { fopencookie(cookie.cast(), mode, funcs) };
    if fp.is_null() {
        // SAFETY: stdio did not take the cookie.
        drop(unsafe { Box::from_raw(cookie) });
        return fp;
    }
    // SAFETY: stdio has not called back yet for a stream it just returned.
    unsafe { (*cookie).stream = fp as usize };
    FILES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(fp as usize, cookie as usize);
    fp
}

static ORIGINAL: [AtomicPtr<FILE>; 3] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 3];
static SWAPPED: [AtomicPtr<FILE>; 3] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 3];

/// Makes the standard stream of `fd` (0, 1 or 2) match what `fd` now is.
#[unsafe(link_section = ".text.hot.btfuse")]
pub(super) fn sync_std_stream(fd: c_int) {
    let Ok(index) = usize::try_from(fd) else {
        return;
    };
    if index > 2 {
        return;
    }
    let ours = descriptors::lookup(fd).is_some();
    let swapped = SWAPPED[index].load(Ordering::Acquire);
    // SAFETY: the standard stream variables are libc's; this library only swaps them for
    // streams it made, and flushes before every swap.
    unsafe {
        let slot: *mut *mut FILE = match index {
            0 => &raw mut stdin,
            1 => &raw mut stdout,
            _ => &raw mut stderr,
        };
        if ours && swapped.is_null() {
            let original = *slot;
            // Output the program buffered before the switch goes where glibc would send it
            // at the next flush: to what the descriptor is now.
            let pending = take_pending_output(original);
            let mode = if index == 0 { c"r" } else { c"w" };
            let fp = cookie_stream(fd, mode.as_ptr(), false, close_stand_in);
            if fp.is_null() {
                return;
            }
            if index == 2 {
                libc::setvbuf(fp, std::ptr::null_mut(), libc::_IONBF, 0);
            }
            if !pending.is_empty() {
                libc::fwrite(pending.as_ptr().cast(), 1, pending.len(), fp);
            }
            ORIGINAL[index].store(original, Ordering::Release);
            SWAPPED[index].store(fp, Ordering::Release);
            *slot = fp;
        } else if !ours && !swapped.is_null() {
            libc::fflush(swapped);
            *slot = ORIGINAL[index].swap(std::ptr::null_mut(), Ordering::AcqRel);
            SWAPPED[index].store(std::ptr::null_mut(), Ordering::Release);
            libc::fclose(swapped);
        }
    }
}

/// The head of glibc's `struct _IO_FILE` (public in `bits/types/struct_FILE.h`): the flags
/// and the buffer pointers.
#[repr(C)]
struct FileHead {
    flags: c_int,
    read_ptr: *mut c_char,
    read_end: *mut c_char,
    read_base: *mut c_char,
    write_base: *mut c_char,
    write_ptr: *mut c_char,
}

/// glibc's `_IO_NO_READS` and `_IO_NO_WRITES` flags.
const NO_READS: c_int = 4;
const NO_WRITES: c_int = 8;

/// Takes the bytes written to glibc stream `fp` and not yet flushed out of its buffer.
///
/// # Safety
/// `fp` is a live glibc stream no other thread is using.
unsafe fn take_pending_output(fp: *mut FILE) -> Vec<u8> {
    // SAFETY: the caller's contract; glibc's public layout.
    unsafe {
        let head = &mut *fp.cast::<FileHead>();
        if head.write_base.is_null() || head.write_ptr <= head.write_base {
            return Vec::new();
        }
        let len = head.write_ptr.offset_from(head.write_base) as usize;
        let pending = std::slice::from_raw_parts(head.write_base.cast::<u8>(), len).to_vec();
        head.write_ptr = head.write_base;
        pending
    }
}

/// Which standard stream `fp` is (0, 1 or 2): the one in the variable now, or the
/// original it stands in for.
pub(super) fn std_index(fp: *mut FILE) -> Option<usize> {
    // SAFETY: reads libc's standard stream variables.
    let current = unsafe { [stdin, stdout, stderr] };
    (0..3).find(|&i| {
        current[i] == fp
            || ORIGINAL[i].load(Ordering::Acquire) == fp
            || SWAPPED[i].load(Ordering::Acquire) == fp
    })
}

/// The standard stream variable for `index`.
pub(super) fn std_slot(index: usize) -> *mut *mut FILE {
    match index {
        0 => &raw mut stdin,
        1 => &raw mut stdout,
        _ => &raw mut stderr,
    }
}

/// Remakes the stream standing in for standard stream `index` (over a btfuse descriptor)
/// with `mode`, which `freopen` gave. Buffered even for standard error, as glibc's
/// `freopen` leaves it.
///
/// # Safety
/// `mode` is a valid C string.
pub(super) unsafe fn remake_std_stream(index: usize, mode: *const c_char) -> *mut FILE {
    let old = SWAPPED[index].load(Ordering::Acquire);
    // SAFETY: the caller's contract; the old stand-in was made here and is replaced in the
    // variable before it is closed.
    unsafe {
        let fp = cookie_stream(index as c_int, mode, false, close_stand_in);
        if fp.is_null() {
            return fp;
        }
        SWAPPED[index].store(fp, Ordering::Release);
        *std_slot(index) = fp;
        if !old.is_null() {
            libc::fclose(old);
        }
        fp
    }
}

/// Sets the read and write permissions of cookie stream `fp` for `mode`, as glibc's own
/// `freopen` re-initialises them.
///
/// # Safety
/// `fp` is a live stream made here.
pub(super) unsafe fn set_stream_access(fp: *mut FILE, flags: c_int) {
    // SAFETY: the caller's contract; glibc's public layout.
    unsafe {
        let head = &mut *fp.cast::<FileHead>();
        head.flags &= !(NO_READS | NO_WRITES);
        match flags & libc::O_ACCMODE {
            libc::O_RDONLY => head.flags |= NO_WRITES,
            libc::O_WRONLY => head.flags |= NO_READS,
            _ => {}
        }
    }
}
