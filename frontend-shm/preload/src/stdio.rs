//! stdio streams over btfuse descriptors.
//!
//! A glibc `FILE` reads and writes through libc-internal calls that no interposer reaches, so
//! streams on btfuse files are `fopencookie` streams whose callbacks are this library's
//! `read`, `write`, `lseek` and `close`. `fopen` and `fdopen` make such streams for btfuse
//! files; and while descriptor 0, 1 or 2 is a btfuse descriptor, `stdin`, `stdout` or
//! `stderr` is one too (the program's original stream comes back, flushed, when the
//! descriptor stops being btfuse's).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, Ordering};

use libc::{FILE, c_char, c_int, c_void, size_t, ssize_t};

use crate::calls;
use crate::state::{self, c_bytes, guarded};

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
struct Cookie {
    fd: c_int,
    /// The stream made over it, once made.
    stream: usize,
    /// `fclose` closes the descriptor (`fopen`, `fdopen`); not for the standard streams.
    owns_fd: bool,
}

unsafe extern "C" fn cookie_read(cookie: *mut c_void, buf: *mut c_char, size: size_t) -> ssize_t {
    // SAFETY: the cookie is a live `Cookie`; `buf` holds `size` bytes (stdio's contract).
    unsafe { calls::read((*cookie.cast::<Cookie>()).fd, buf.cast(), size) }
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
        let n = unsafe { calls::write(fd, buf.add(done).cast(), size - done) };
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
        let at = calls::lseek((*cookie.cast::<Cookie>()).fd, *offset, whence);
        if at < 0 {
            return -1;
        }
        *offset = at;
    }
    0
}

unsafe extern "C" fn cookie_close(cookie: *mut c_void) -> c_int {
    // SAFETY: stdio closes a stream once; the cookie came from Box::into_raw.
    let cookie = unsafe { Box::from_raw(cookie.cast::<Cookie>()) };
    if let Some(files) = FILES.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        files.remove(&cookie.stream);
    }
    if cookie.owns_fd {
        // SAFETY: the descriptor belongs to this stream.
        unsafe { calls::close(cookie.fd) }
    } else {
        0
    }
}

/// Streams this library made, with their descriptors (for `fileno`).
static FILES: Mutex<Option<HashMap<usize, c_int>>> = Mutex::new(None);

/// A cookie stream over btfuse descriptor `fd`.
///
/// # Safety
/// `mode` is a valid C string.
unsafe fn cookie_stream(fd: c_int, mode: *const c_char, owns_fd: bool) -> *mut FILE {
    let cookie = Box::into_raw(Box::new(Cookie {
        fd,
        stream: 0,
        owns_fd,
    }));
    let funcs = CookieFunctions {
        read: Some(cookie_read),
        write: Some(cookie_write),
        seek: Some(cookie_seek),
        close: Some(cookie_close),
    };
    // SAFETY: the cookie lives until stdio calls cookie_close.
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
        .insert(fp as usize, fd);
    fp
}

/// `open` flags for an `fopen` mode string, or `None` if it is invalid.
fn mode_flags(mode: &[u8]) -> Option<c_int> {
    let (first, rest) = mode.split_first()?;
    let plus = rest.contains(&b'+');
    let mut flags = match (first, plus) {
        (b'r', false) => libc::O_RDONLY,
        (b'r', true) => libc::O_RDWR,
        (b'w', false) => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        (b'w', true) => libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
        (b'a', false) => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
        (b'a', true) => libc::O_RDWR | libc::O_CREAT | libc::O_APPEND,
        _ => return None,
    };
    if rest.contains(&b'x') {
        flags |= libc::O_EXCL;
    }
    if rest.contains(&b'e') {
        flags |= libc::O_CLOEXEC;
    }
    Some(flags)
}

macro_rules! fopen_fn {
    ($name:ident) => {
        /// Interposed: btfuse files open as cookie streams.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, mode: *const c_char) -> *mut FILE {
            // SAFETY: libc's contract.
            let ours = guarded(|| unsafe { calls::at_target(libc::AT_FDCWD, path) }.is_some())
                .unwrap_or(false);
            if !ours {
                // SAFETY: libc's contract, passed on.
                return unsafe { crate::real::$name()(path, mode) };
            }
            // SAFETY: libc's contract.
            let Some(flags) = (unsafe { c_bytes(mode) }).and_then(mode_flags) else {
                state::fail(libc::EINVAL);
                return std::ptr::null_mut();
            };
            // SAFETY: libc's contract; `open` is this library's.
            let fd = unsafe { calls::open(path, flags, 0o666) };
            if fd < 0 {
                return std::ptr::null_mut();
            }
            // SAFETY: `mode` is valid.
            let fp = unsafe { cookie_stream(fd, mode, true) };
            if fp.is_null() {
                // SAFETY: the descriptor just opened.
                unsafe { calls::close(fd) };
            }
            fp
        }
    };
}
fopen_fn!(fopen);
fopen_fn!(fopen64);

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdopen(fd: c_int, mode: *const c_char) -> *mut FILE {
    if guarded(|| state::lookup(fd).is_some()).unwrap_or(false) {
        // SAFETY: `mode` is libc's contract.
        return unsafe { cookie_stream(fd, mode, true) };
    }
    // SAFETY: libc's contract, passed on.
    unsafe { crate::real::fdopen()(fd, mode) }
}

macro_rules! fileno_fn {
    ($name:ident) => {
        /// Interposed: a cookie stream's descriptor is the btfuse descriptor under it.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(fp: *mut FILE) -> c_int {
            let ours = guarded(|| {
                FILES
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .and_then(|f| f.get(&(fp as usize)).copied())
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            ours.unwrap_or_else(|| unsafe { crate::real::$name()(fp) })
        }
    };
}
fileno_fn!(fileno);
fileno_fn!(fileno_unlocked);

static ORIGINAL: [AtomicPtr<FILE>; 3] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 3];
static SWAPPED: [AtomicPtr<FILE>; 3] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 3];

/// Makes the standard stream of `fd` (0, 1 or 2) match what `fd` now is.
pub(crate) fn sync_std_stream(fd: c_int) {
    let Ok(index) = usize::try_from(fd) else {
        return;
    };
    if index > 2 {
        return;
    }
    let ours = state::lookup(fd).is_some();
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
            libc::fflush(original);
            let mode = if index == 0 { c"r" } else { c"w" };
            let fp = cookie_stream(fd, mode.as_ptr(), false);
            if fp.is_null() {
                return;
            }
            if index == 2 {
                libc::setvbuf(fp, std::ptr::null_mut(), libc::_IONBF, 0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_open_flags() {
        assert_eq!(mode_flags(b"r"), Some(libc::O_RDONLY));
        assert_eq!(mode_flags(b"rb+"), Some(libc::O_RDWR));
        assert_eq!(
            mode_flags(b"w"),
            Some(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
        );
        assert_eq!(
            mode_flags(b"a+e"),
            Some(libc::O_RDWR | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC)
        );
        assert_eq!(
            mode_flags(b"wx"),
            Some(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL)
        );
        assert_eq!(mode_flags(b"q"), None);
        assert_eq!(mode_flags(b""), None);
    }
}
