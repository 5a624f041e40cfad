//! Unique names: `mkstemp`, `mkostemp`, `mkstemps`, `mkostemps` (and their `64` names),
//! `mkdtemp` and `mktemp`. glibc makes the name and creates the file with internal calls no
//! interposer sees, so a template under the prefix (or relative to a btfuse working
//! directory) would be created in the kernel's directory instead; here the name is made as
//! glibc makes it and created through this library's `open`, `mkdir` or `lstat`.

use libc::{c_char, c_int};

use super::path::{mkdir, open};
use super::stat::lstat;
use crate::errno::{errno, fail, set_errno};
use crate::guard::guarded;
use crate::paths::at_target;
use crate::real;

/// What to make of a unique name (glibc's `__GT_FILE`, `__GT_DIR`, `__GT_NOCREATE`).
#[derive(Clone, Copy)]
enum Make {
    /// A file opened with these extra flags.
    File(c_int),
    Directory,
    /// The name only (`mktemp`): one nothing has yet.
    Name,
}

/// glibc's bound on attempts (`TMP_MAX`, 62³).
const ATTEMPTS: u32 = 62 * 62 * 62;

/// The characters glibc fills a template with.
const LETTERS: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Whether `template` is btfuse's: named under the prefix or from a btfuse directory.
///
/// # Safety
/// `template` is null or a valid C string.
unsafe fn ours(template: *const c_char) -> bool {
    // SAFETY: the caller's contract.
    guarded(|| unsafe { at_target(libc::AT_FDCWD, template) }.is_some()).unwrap_or(false)
}

/// Six random characters from `LETTERS`.
fn random_letters() -> [u8; 6] {
    let mut bytes = [0u8; 6];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into `bytes`.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), libc::GRND_NONBLOCK) };
    if n != bytes.len() as isize {
        // Too early in boot for the entropy pool: the clock and the pid, as glibc falls back.
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the struct it is given; getpid cannot fail.
        let mut seed = unsafe {
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
            (ts.tv_nsec as u64) ^ ((libc::getpid() as u64) << 32) ^ (ts.tv_sec as u64)
        };
        for b in &mut bytes {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (seed >> 33) as u8;
        }
    }
    bytes.map(|b| LETTERS[usize::from(b) % LETTERS.len()])
}

/// glibc's `__gen_tempname` through this library's calls: fills the six `X` before the last
/// `suffix_len` bytes of `template` and makes what `make` says; the descriptor (files), 0
/// (directories, names) or -1 with `errno` (`EINVAL` for a bad template, `EEXIST` when
/// every attempt met an existing name).
///
/// # Safety
/// `template` is a valid, writable C string.
unsafe fn generate(template: *mut c_char, suffix_len: c_int, make: Make) -> c_int {
    // SAFETY: the caller's contract.
    let len = unsafe { libc::strlen(template) };
    let Ok(suffix_len) = usize::try_from(suffix_len) else {
        return fail(libc::EINVAL);
    };
    if len < 6 + suffix_len {
        return fail(libc::EINVAL);
    }
    let start = len - 6 - suffix_len;
    // SAFETY: `start..start + 6` lies within the string.
    let xs = unsafe { std::slice::from_raw_parts_mut(template.add(start).cast::<u8>(), 6) };
    if xs != b"XXXXXX" {
        return fail(libc::EINVAL);
    }
    let saved = errno();
    for _ in 0..ATTEMPTS {
        xs.copy_from_slice(&random_letters());
        // SAFETY: `template` is a valid C string; these are this library's entry points.
        let rc = unsafe {
            match make {
                Make::File(flags) => {
                    let flags = (flags & !libc::O_ACCMODE) | libc::O_RDWR | libc::O_CREAT;
                    open(template, flags | libc::O_EXCL, 0o600)
                }
                Make::Directory => mkdir(template, 0o700),
                Make::Name => {
                    let mut st: libc::stat = std::mem::zeroed();
                    if lstat(template, &mut st) == 0 {
                        set_errno(libc::EEXIST);
                        -1
                    } else if errno() == libc::ENOENT {
                        set_errno(saved);
                        return 0;
                    } else {
                        -1
                    }
                }
            }
        };
        if rc >= 0 {
            set_errno(saved);
            return rc;
        }
        if errno() != libc::EEXIST {
            return -1;
        }
    }
    fail(libc::EEXIST)
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemp(template: *mut c_char) -> c_int {
    // SAFETY: libc's contract.
    unsafe { mkostemps(template, 0, 0) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemp64(template: *mut c_char) -> c_int {
    // SAFETY: libc's contract.
    unsafe { mkostemps(template, 0, 0) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemp(template: *mut c_char, flags: c_int) -> c_int {
    // SAFETY: libc's contract.
    unsafe { mkostemps(template, 0, flags) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemp64(template: *mut c_char, flags: c_int) -> c_int {
    // SAFETY: libc's contract.
    unsafe { mkostemps(template, 0, flags) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemps(template: *mut c_char, suffix_len: c_int) -> c_int {
    // SAFETY: libc's contract.
    unsafe { mkostemps(template, suffix_len, 0) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemps64(template: *mut c_char, suffix_len: c_int) -> c_int {
    // SAFETY: libc's contract.
    unsafe { mkostemps(template, suffix_len, 0) }
}

/// Interposed: the one every other file form comes to.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemps(
    template: *mut c_char,
    suffix_len: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: libc's contract.
    if unsafe { ours(template) } {
        // SAFETY: libc's contract.
        return unsafe { generate(template, suffix_len, Make::File(flags)) };
    }
    // SAFETY: libc's contract, passed on.
    unsafe { real::mkostemps()(template, suffix_len, flags) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemps64(
    template: *mut c_char,
    suffix_len: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: libc's contract.
    unsafe { mkostemps(template, suffix_len, flags) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdtemp(template: *mut c_char) -> *mut c_char {
    // SAFETY: libc's contract.
    if unsafe { ours(template) } {
        // SAFETY: libc's contract.
        let rc = unsafe { generate(template, 0, Make::Directory) };
        return if rc == 0 {
            template
        } else {
            std::ptr::null_mut()
        };
    }
    // SAFETY: libc's contract, passed on.
    unsafe { real::mkdtemp()(template) }
}

/// Interposed: a name nothing has (racy by design, as glibc warns); an empty string on
/// failure, as glibc answers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mktemp(template: *mut c_char) -> *mut c_char {
    // SAFETY: libc's contract.
    if unsafe { ours(template) } {
        // SAFETY: libc's contract.
        if unsafe { generate(template, 0, Make::Name) } != 0 {
            // SAFETY: the template is a writable C string.
            unsafe { *template = 0 };
        }
        return template;
    }
    // SAFETY: libc's contract, passed on.
    unsafe { real::mktemp()(template) }
}

/// Interposed: glibc's other name for `mktemp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __mktemp(template: *mut c_char) -> *mut c_char {
    // SAFETY: libc's contract.
    unsafe { mktemp(template) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_use_glibcs_letters() {
        for _ in 0..100 {
            assert!(random_letters().iter().all(|b| LETTERS.contains(b)));
        }
    }

    #[test]
    fn bad_templates_are_einval() {
        for (template, suffix) in [("abc", 0), ("XXXXX", 0), ("aXXXXXXb", 0), ("XXXXXX", 1)] {
            let mut t = std::ffi::CString::new(template)
                .unwrap()
                .into_bytes_with_nul();
            // SAFETY: a writable C string.
            let rc = unsafe { generate(t.as_mut_ptr().cast(), suffix, Make::Name) };
            assert_eq!((rc, errno()), (-1, libc::EINVAL), "{template}");
        }
    }
}
