//! The kernel's working directory, when the program entered a btfuse mount through the
//! kernel (a relative `chdir` this library did not serve).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::under_a_prefix;
use crate::real;

/// The kernel's working directory when it lies under a btfuse prefix, as `getcwd` gave it;
/// read again after every `chdir`/`fchdir` the kernel makes.
static KERNEL_CWD: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// What is known of the kernel's working directory, so that the common answer ("not under
/// any prefix") takes one load and no lock: [`UNKNOWN`], [`OUTSIDE`] or [`INSIDE`].
static KERNEL_CWD_STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const OUTSIDE: u8 = 1;
const INSIDE: u8 = 2;

/// `rel` joined to the kernel's working directory when that directory is under a btfuse
/// prefix (the program entered the mount through the kernel, e.g. by a relative `chdir`);
/// `None` otherwise.
pub(crate) fn from_kernel_cwd(rel: &[u8]) -> Option<Vec<u8>> {
    if KERNEL_CWD_STATE.load(Ordering::Acquire) == OUTSIDE {
        return None;
    }
    let mut cached = KERNEL_CWD.lock().unwrap_or_else(|p| p.into_inner());
    if KERNEL_CWD_STATE.load(Ordering::Acquire) == UNKNOWN {
        *cached = kernel_cwd_under_a_prefix();
        let state = if cached.is_some() { INSIDE } else { OUTSIDE };
        KERNEL_CWD_STATE.store(state, Ordering::Release);
    }
    let mut full = cached.clone()?;
    drop(cached);
    if full.last() != Some(&b'/') {
        full.push(b'/');
    }
    full.extend_from_slice(rel);
    Some(full)
}

/// The kernel's `getcwd`, if it is under a btfuse prefix.
fn kernel_cwd_under_a_prefix() -> Option<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `buf` holds PATH_MAX bytes.
    let got = unsafe { (real::getcwd())(buf.as_mut_ptr().cast(), buf.len()) };
    if got.is_null() {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0)?;
    buf.truncate(len);
    under_a_prefix(&buf).then_some(buf)
}

/// Forgets the kernel's working directory (it changed).
pub(crate) fn forget_kernel_cwd() {
    let _cached = KERNEL_CWD.lock().unwrap_or_else(|p| p.into_inner());
    KERNEL_CWD_STATE.store(UNKNOWN, Ordering::Release);
}
