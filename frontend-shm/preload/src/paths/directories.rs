//! Paths of btfuse directories: the working directory, when it is btfuse's, and the
//! directories this process opened, for `getcwd` after `fchdir`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::c_int;

use crate::descriptors;

/// The working directory, when it is a btfuse directory (the kernel's then lags behind): the
/// description it is open as, and its path from the served root as last set.
pub(crate) static CWD: Mutex<Option<(u32, Vec<u8>)>> = Mutex::new(None);

/// Paths (from the served root) of the directory descriptions this process opened, for
/// `getcwd` after `fchdir`.
static DIR_PATHS: Mutex<Option<HashMap<u32, Vec<u8>>>> = Mutex::new(None);

/// Remembers that directory description `desc` is at `path`.
pub(crate) fn remember_path(desc: u32, path: Vec<u8>) {
    let previous = DIR_PATHS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(desc, path);
    if previous.is_none() {
        DIR_PATH_COUNT.fetch_add(1, Ordering::Relaxed);
    }
}

/// Paths in [`DIR_PATHS`]: closing a file, when there are none, takes no lock.
static DIR_PATH_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Forgets the path of description `desc` (it is being closed; its number may come back for
/// another directory).
pub(crate) fn forget_path(desc: u32) {
    if DIR_PATH_COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(paths) = DIR_PATHS.lock().unwrap_or_else(|p| p.into_inner()).as_mut()
        && paths.remove(&desc).is_some()
    {
        DIR_PATH_COUNT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The path of directory description `desc`, if known.
pub(crate) fn desc_path(desc: u32) -> Option<Vec<u8>> {
    DIR_PATHS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()?
        .get(&desc)
        .cloned()
}

/// The path of the btfuse directory open as descriptor `fd`, if known.
pub(crate) fn dir_path(fd: c_int) -> Option<Vec<u8>> {
    desc_path(descriptors::lookup(fd)?.desc)
}

/// The btfuse working directory's description, if the working directory is btfuse's.
pub(crate) fn cwd_desc() -> Option<u32> {
    CWD.lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|(d, _)| *d)
}
