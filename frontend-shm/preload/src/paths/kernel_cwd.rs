//! The kernel's working directory, when the program entered a btfuse mount through the
//! kernel (a relative `chdir` this library did not serve).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::under_a_prefix;
use crate::real;

/// The kernel's working directory when it lies under a btfuse prefix, as `getcwd` gave it;
/// read again after every `chdir`/`fchdir` the kernel makes.
static KERNEL_CWD: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// What is known of the kernel's working directory, so that the common answer ("not under
/// any prefix") takes one load and no lock: [`UNKNOWN`], [`OUTSIDE`] or [`INSIDE`] in the low
/// two bits, and above them a count of the changes [`forget_kernel_cwd`] saw, so that an
/// answer found for a directory since left is not stored over the forgetting.
static KERNEL_CWD_STATE: AtomicU32 = AtomicU32::new(UNKNOWN);
const UNKNOWN: u32 = 0;
const OUTSIDE: u32 = 1;
const INSIDE: u32 = 2;
const STATE_BITS: u32 = 3;

/// `rel` joined to the kernel's working directory when that directory is under a btfuse
/// prefix (the program entered the mount through the kernel, e.g. by a relative `chdir`);
/// `None` otherwise.
///
/// The common answer is found without a lock or an allocation: this runs for relative names
/// of calls made while an allocator initialises itself or in a signal handler.
#[unsafe(link_section = ".text.hot.btfuse")]
pub(crate) fn from_kernel_cwd(rel: &[u8]) -> Option<Vec<u8>> {
    let known = KERNEL_CWD_STATE.load(Ordering::Acquire);
    match known & STATE_BITS {
        OUTSIDE => return None,
        UNKNOWN if !kernel_cwd_may_be_under_a_prefix() => {
            // A chdir since the load leaves the state as `forget_kernel_cwd` set it.
            let _ = KERNEL_CWD_STATE.compare_exchange(
                known,
                (known & !STATE_BITS) | OUTSIDE,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            return None;
        }
        _ => {}
    }
    let mut cached = KERNEL_CWD.lock().unwrap_or_else(|p| p.into_inner());
    let known = KERNEL_CWD_STATE.load(Ordering::Acquire);
    if known & STATE_BITS != INSIDE {
        *cached = kernel_cwd_under_a_prefix();
        let state = if cached.is_some() { INSIDE } else { OUTSIDE };
        KERNEL_CWD_STATE.store((known & !STATE_BITS) | state, Ordering::Release);
    }
    let mut full = cached.clone()?;
    drop(cached);
    if full.last() != Some(&b'/') {
        full.push(b'/');
    }
    full.extend_from_slice(rel);
    Some(full)
}

/// The kernel's `getcwd` into `buf` (no allocation); `None` if it fails.
fn kernel_getcwd(buf: &mut [u8; libc::PATH_MAX as usize]) -> Option<&[u8]> {
    // SAFETY: `buf` holds PATH_MAX bytes; libc's getcwd with a buffer does not allocate.
    let got = unsafe { (real::getcwd())(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf
        .iter()
        .position(|&b| b == 0)
        .filter(|_| !got.is_null())?;
    Some(&buf[..len])
}

/// Whether the kernel's working directory may be under a btfuse prefix (it is, or `getcwd`
/// failed), found with a buffer on the stack.
fn kernel_cwd_may_be_under_a_prefix() -> bool {
    let mut buf = [0u8; libc::PATH_MAX as usize];
    kernel_getcwd(&mut buf).is_none_or(under_a_prefix)
}

/// The kernel's `getcwd`, if it is under a btfuse prefix.
fn kernel_cwd_under_a_prefix() -> Option<Vec<u8>> {
    let mut buf = [0u8; libc::PATH_MAX as usize];
    let cwd = kernel_getcwd(&mut buf)?;
    under_a_prefix(cwd).then(|| cwd.to_vec())
}

/// Whether the kernel's working directory is the btfuse one, `path` (from the served
/// root), so that a process without the btfuse one resolves relative names where this one
/// does: only with a mount at the prefix (the kernel follows a btfuse `chdir` there), and
/// only if `getcwd` spells exactly the prefix and `path` (a directory entered through a
/// symbolic link has another spelling; it is not taken for the same).
pub(crate) fn kernel_cwd_is(path: &[u8]) -> bool {
    let Some(config) = crate::config::config() else {
        return false;
    };
    if !crate::config::prefix_is_mounted() {
        return false;
    }
    let mut buf = [0u8; libc::PATH_MAX as usize];
    let Some(rest) = kernel_getcwd(&mut buf).and_then(|cwd| cwd.strip_prefix(config.prefix()))
    else {
        return false;
    };
    // The served root is `/`, and so is the kernel's name for a mount at `/`.
    trim_slash(rest) == trim_slash(path)
}

fn trim_slash(path: &[u8]) -> &[u8] {
    path.strip_suffix(b"/").unwrap_or(path)
}

/// Forgets the kernel's working directory (it changed).
pub(crate) fn forget_kernel_cwd() {
    let _cached = KERNEL_CWD.lock().unwrap_or_else(|p| p.into_inner());
    let known = KERNEL_CWD_STATE.load(Ordering::Relaxed);
    let changes = (known & !STATE_BITS).wrapping_add(STATE_BITS + 1);
    KERNEL_CWD_STATE.store(changes | UNKNOWN, Ordering::Release);
}
