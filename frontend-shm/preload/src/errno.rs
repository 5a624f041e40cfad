//! `errno`: read, set, and the C convention of a failed call (-1 with `errno` set), for every
//! part of the library.

use libc::c_int;

/// This thread's `errno`.
pub(crate) fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno, valid as long as the thread.
    unsafe { *libc::__errno_location() }
}

/// Sets this thread's `errno`.
pub(crate) fn set_errno(code: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = code };
}

/// Sets `errno` and returns -1, the C convention.
pub(crate) fn fail(code: c_int) -> c_int {
    set_errno(code);
    -1
}
