//! Placeholders: the kernel descriptors that give btfuse descriptors their numbers.

use std::sync::atomic::{AtomicI32, Ordering};

use libc::c_int;

use crate::connection::private_fd_floor;
use crate::errno::errno;
use crate::real;

/// The descriptor placeholders are copied from: an `O_PATH` descriptor of `/`, close-on-exec,
/// at a private number (-1 until first needed, and again if the program closes or replaces
/// that number). Copying it (`F_DUPFD`, which takes the lowest free number, as `open` does)
/// costs the kernel no path walk and no file to set up or tear down, about half of what an
/// `open("/", O_PATH)` and its `close` cost.
static PLACEHOLDER_BASE: AtomicI32 = AtomicI32::new(-1);

/// A placeholder kernel descriptor for a new btfuse descriptor: the number the program sees,
/// the lowest free one, as `open` gives. It is an `O_PATH` descriptor of `/`: anything that
/// reaches the kernel with it instead of this library (a read or write from inside libc, a
/// static program after `exec`) fails with `EBADF` rather than quietly reading nothing or
/// writing nowhere.
pub(crate) fn placeholder(cloexec: bool) -> Result<c_int, i32> {
    let command = if cloexec {
        libc::F_DUPFD_CLOEXEC
    } else {
        libc::F_DUPFD
    };
    let mut base = PLACEHOLDER_BASE.load(Ordering::Acquire);
    if base < 0 {
        base = placeholder_base()?;
    }
    // The system call itself: the library's own `fcntl` would look the number up again.
    // SAFETY: F_DUPFD(_CLOEXEC) of a descriptor this library holds.
    let fd = unsafe { libc::syscall(libc::SYS_fcntl, base, command, 0) };
    if fd < 0 {
        return Err(errno());
    }
    Ok(fd as c_int)
}

/// Moves `fd`, just opened by this library, to a private number (close-on-exec), closing the
/// original: the library's own descriptors stay out of the numbers programs choose.
pub(crate) fn move_to_private(fd: c_int) -> Result<c_int, i32> {
    // SAFETY: F_DUPFD_CLOEXEC of a descriptor this library holds (the system call itself:
    // the library's own `fcntl` would look the number up).
    let moved = unsafe {
        libc::syscall(
            libc::SYS_fcntl,
            fd,
            libc::F_DUPFD_CLOEXEC,
            private_fd_floor(),
        )
    } as c_int;
    let error = errno();
    // SAFETY: `fd` is the caller's own descriptor, given up here.
    unsafe { real::close()(fd) };
    if moved < 0 { Err(error) } else { Ok(moved) }
}

/// Opens the placeholders' base descriptor and moves it to a private number.
fn placeholder_base() -> Result<c_int, i32> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: a literal path; `open` returns a descriptor or -1.
    let fd = unsafe { real::open()(c"/".as_ptr(), flags, 0) };
    if fd < 0 {
        return Err(errno());
    }
    let moved = move_to_private(fd)?;
    // Two threads may get here at once: the first one's base stays, the other's goes.
    match PLACEHOLDER_BASE.compare_exchange(-1, moved, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(moved),
        Err(current) => {
            // SAFETY: `moved` is this function's own descriptor.
            unsafe { real::close()(moved) };
            Ok(current)
        }
    }
}

/// The program closed or replaced descriptor `fd`: if it was the placeholders' base, a new
/// one is made when next needed.
pub(crate) fn placeholder_base_gone(fd: c_int) {
    if fd >= 0 {
        let _ = PLACEHOLDER_BASE.compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// The placeholders' base, if one is open.
pub(super) fn base() -> Option<c_int> {
    let base = PLACEHOLDER_BASE.load(Ordering::Acquire);
    (base >= 0).then_some(base)
}
