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

use super::{fd, io, path};
use crate::config;
use crate::descriptors;
use crate::errno::{errno, fail};
use crate::guard::guarded;
use crate::paths::{self, c_bytes};

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

unsafe extern "C" fn cookie_close(cookie: *mut c_void) -> c_int {
    // SAFETY: stdio closes a stream once; the cookie came from Box::into_raw.
    let cookie = unsafe { Box::from_raw(cookie.cast::<Cookie>()) };
    if let Some(files) = FILES.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        files.remove(&cookie.stream);
    }
    if cookie.owns_fd {
        // SAFETY: the descriptor belongs to this stream.
        unsafe { fd::close(cookie.fd) }
    } else {
        0
    }
}

/// Streams this library made, with their cookies (for `fileno` and `freopen`).
static FILES: Mutex<Option<HashMap<usize, usize>>> = Mutex::new(None);

/// The cookie of a stream this library made.
fn cookie_of(fp: *mut FILE) -> Option<*mut Cookie> {
    FILES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()?
        .get(&(fp as usize))
        .map(|&c| c as *mut Cookie)
}

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
        .insert(fp as usize, cookie as usize);
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
            let ours = guarded(|| unsafe { paths::at_target(libc::AT_FDCWD, path) }.is_some())
                .unwrap_or(false);
            if !ours {
                // SAFETY: libc's contract, passed on.
                return unsafe { crate::real::$name()(path, mode) };
            }
            // SAFETY: libc's contract.
            let Some(flags) = (unsafe { c_bytes(mode) }).and_then(mode_flags) else {
                fail(libc::EINVAL);
                return std::ptr::null_mut();
            };
            // SAFETY: libc's contract; `open` is this library's.
            let fd = unsafe { path::open(path, flags, 0o666) };
            if fd < 0 {
                return std::ptr::null_mut();
            }
            // A path that led out of the tree was opened by the kernel: glibc's stream, then.
            if guarded(|| descriptors::lookup(fd).is_none()) == Some(true) {
                // SAFETY: `fd` is the kernel file just opened, given to the stream.
                let fp = unsafe { crate::real::fdopen()(fd, mode) };
                if fp.is_null() {
                    // SAFETY: the descriptor just opened.
                    unsafe { crate::real::close()(fd) };
                }
                return fp;
            }
            // SAFETY: `mode` is valid.
            let fp = unsafe { cookie_stream(fd, mode, true) };
            if fp.is_null() {
                // SAFETY: the descriptor just opened.
                unsafe { fd::close(fd) };
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
    if guarded(|| descriptors::lookup(fd).is_some()).unwrap_or(false) {
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
            // SAFETY: a registered cookie lives until its stream is closed.
            let ours = guarded(|| cookie_of(fp).map(|c| unsafe { (*c).fd })).flatten();
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
            let fp = cookie_stream(fd, mode.as_ptr(), false);
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
fn std_index(fp: *mut FILE) -> Option<usize> {
    // SAFETY: reads libc's standard stream variables.
    let current = unsafe { [stdin, stdout, stderr] };
    (0..3).find(|&i| {
        current[i] == fp
            || ORIGINAL[i].load(Ordering::Acquire) == fp
            || SWAPPED[i].load(Ordering::Acquire) == fp
    })
}

/// The standard stream variable for `index`.
fn std_slot(index: usize) -> *mut *mut FILE {
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
unsafe fn remake_std_stream(index: usize, mode: *const c_char) -> *mut FILE {
    let old = SWAPPED[index].load(Ordering::Acquire);
    // SAFETY: the caller's contract; the old stand-in was made here and is replaced in the
    // variable before it is closed.
    unsafe {
        let fp = cookie_stream(index as c_int, mode, false);
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
unsafe fn set_stream_access(fp: *mut FILE, flags: c_int) {
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

/// `freopen` for the streams and files this library serves; `None` hands the call to
/// glibc (neither the stream nor the file is btfuse's).
///
/// # Safety
/// As for `freopen`.
unsafe fn reopen(path: *const c_char, mode: *const c_char, fp: *mut FILE) -> Option<*mut FILE> {
    let (index, cookie, target_is_ours) = guarded(|| {
        let index = std_index(fp);
        let cookie = cookie_of(fp);
        // SAFETY: the caller's contract.
        let target = !path.is_null() && unsafe { paths::at_target(libc::AT_FDCWD, path) }.is_some();
        (index, cookie, target)
    })?;
    let std_is_ours =
        index.is_some_and(|i| guarded(|| descriptors::lookup(i as c_int).is_some()) == Some(true));
    if !target_is_ours && !std_is_ours && (cookie.is_none() || index.is_some()) {
        return None;
    }
    // SAFETY: libc's contract.
    let Some(flags) = (unsafe { c_bytes(mode) }).and_then(mode_flags) else {
        fail(libc::EINVAL);
        return Some(std::ptr::null_mut());
    };
    // SAFETY: this library's calls on the stream's descriptors, with libc's
    // contracts; the stream is the caller's, used by no other thread during the call.
    unsafe {
        if let Some(index) = index {
            let fd = index as c_int;
            libc::fflush(*std_slot(index));
            if path.is_null() {
                // A new mode for the same file: a btfuse stand-in is remade with it.
                return Some(remake_std_stream(index, mode));
            }
            if !target_is_ours {
                // From btfuse back to a kernel file: give the descriptor up (which puts the
                // original stream back), then let glibc reopen the original.
                fd::close(fd);
                let original = *std_slot(index);
                return Some(crate::real::freopen()(path, mode, original));
            }
            let opened = path::open(path, flags, 0o666);
            if opened < 0 {
                // POSIX: the stream is closed even when the open fails.
                let e = errno();
                fd::close(fd);
                fail(e);
                return Some(std::ptr::null_mut());
            }
            if opened != fd {
                let cloexec = flags & libc::O_CLOEXEC;
                let moved = fd::dup3(opened, fd, cloexec);
                let e = errno();
                fd::close(opened);
                if moved < 0 {
                    fail(e);
                    return Some(std::ptr::null_mut());
                }
            }
            return Some(remake_std_stream(index, mode));
        }
        if let Some(cookie) = cookie {
            // A stream made here: its cookie moves to the new file (btfuse's or the kernel's:
            // the callbacks are this library's calls, which serve both).
            libc::fflush(fp);
            let old = (*cookie).fd;
            let reopened = if path.is_null() {
                let status = fd::fcntl(old, libc::F_GETFL, 0);
                let append = (flags & libc::O_APPEND) as libc::c_ulong;
                let status =
                    (status as libc::c_ulong & !(libc::O_APPEND as libc::c_ulong)) | append;
                fd::fcntl(old, libc::F_SETFL, status);
                old
            } else {
                if (*cookie).owns_fd {
                    fd::close(old);
                }
                let opened = path::open(path, flags, 0o666);
                if opened < 0 {
                    // Closed, as POSIX says; the stream stays allocated (as glibc's does) and
                    // fails with EBADF until it is closed.
                    let e = errno();
                    (*cookie).fd = -1;
                    (*cookie).owns_fd = false;
                    fail(e);
                    return Some(std::ptr::null_mut());
                }
                opened
            };
            (*cookie).fd = reopened;
            (*cookie).owns_fd = true;
            set_stream_access(fp, flags);
            libc::clearerr(fp);
            return Some(fp);
        }
        // A glibc stream over a kernel file cannot become a btfuse one in place (glibc does
        // its I/O with internal calls). With a mount at the prefix, glibc reopens it there,
        // through the kernel (the mount and the ring show one filesystem); without one it is
        // refused, the stream left as it was.
        if config::prefix_is_mounted() {
            return Some(crate::real::freopen()(path, mode, fp));
        }
        fail(libc::EOPNOTSUPP);
        Some(std::ptr::null_mut())
    }
}

macro_rules! freopen_fn {
    ($name:ident) => {
        /// Interposed: a standard stream moved onto a btfuse file is this library's stream
        /// over the same descriptor number; a stream made here moves its descriptor; other
        /// streams and files are glibc's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            mode: *const c_char,
            fp: *mut FILE,
        ) -> *mut FILE {
            // SAFETY: libc's contract, passed on.
            unsafe {
                reopen(path, mode, fp).unwrap_or_else(|| crate::real::$name()(path, mode, fp))
            }
        }
    };
}
freopen_fn!(freopen);
freopen_fn!(freopen64);

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
