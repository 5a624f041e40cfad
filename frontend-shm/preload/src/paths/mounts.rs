//! Whether another filesystem is mounted below the prefix, which only an `rmdir` asks (the
//! kernel refuses to remove a mount point with `EBUSY`, and the ring cannot see kernel
//! mounts). `/proc/self/mountinfo` is read once and kept open at a private number; it is read
//! again only when the kernel reports that the mount table changed (`poll` on it gives
//! `POLLPRI`), in a new process (`fork`: the copy it inherited shares its parent's change
//! mark) or in another mount namespace (`unshare` and `setns`, which this library
//! intercepts: see [`namespace_changed`]). An `rmdir` then costs a `poll` and a `getpid`,
//! where reading the table cost hundreds of microseconds.

use std::io::{Read, Seek, SeekFrom};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use libc::c_int;

use crate::real;

/// The open table, at a private number (-1: none).
static WATCH_FD: AtomicI32 = AtomicI32::new(-1);

/// What was read from it, and for which process and namespace.
struct Seen {
    pid: libc::pid_t,
    namespace: u64,
    below: bool,
}

/// Counts this process's changes of mount namespace (see [`namespace_changed`]).
static NAMESPACE_EPOCH: AtomicU64 = AtomicU64::new(0);

/// This process moved to another mount namespace (`unshare` or `setns` succeeded): the table
/// kept open is the old namespace's, and is opened again when next needed.
pub(crate) fn namespace_changed() {
    NAMESPACE_EPOCH.fetch_add(1, Ordering::AcqRel);
}

static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

/// Whether a filesystem is mounted somewhere strictly below `prefix`.
pub(crate) fn mounted_below(prefix: &[u8]) -> bool {
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let namespace = NAMESPACE_EPOCH.load(Ordering::Acquire);
    let fd = WATCH_FD.load(Ordering::Acquire);
    let same = fd >= 0
        && seen
            .as_ref()
            .is_some_and(|s| s.pid == pid && s.namespace == namespace);
    let fd = if same {
        if unchanged(fd) {
            return seen.as_ref().is_some_and(|s| s.below);
        }
        // Same process and namespace, the table changed: read the same file again.
        fd
    } else {
        match reopen(fd) {
            Some(fd) => fd,
            // Nothing to watch with: read the table each time, as a last resort.
            None => return scan_path(prefix),
        }
    };
    let below = scan(fd, prefix);
    *seen = Some(Seen {
        pid,
        namespace,
        below,
    });
    below
}

/// The private number of the open table, if any (not the program's to close).
pub(crate) fn watch_fd() -> Option<c_int> {
    let fd = WATCH_FD.load(Ordering::Acquire);
    (fd >= 0).then_some(fd)
}

/// The program replaced number `fd` (`dup2` onto it): if it was the table, it is opened again
/// when next needed.
pub(crate) fn watch_gone(fd: c_int) {
    if fd >= 0 {
        let _ = WATCH_FD.compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Whether the mount table is as when `fd` last reported.
fn unchanged(fd: c_int) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLPRI,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready == 0
}

/// Opens the table at a private number, closing `old` (this process's copy of an earlier one,
/// or an inherited one) first.
fn reopen(old: c_int) -> Option<c_int> {
    if old >= 0 {
        WATCH_FD.store(-1, Ordering::Release);
        // SAFETY: `old` is this library's own descriptor.
        unsafe { real::close()(old) };
    }
    let flags = libc::O_RDONLY | libc::O_CLOEXEC;
    // SAFETY: a literal path; `open` returns a descriptor or -1.
    let fd = unsafe { real::open()(c"/proc/self/mountinfo".as_ptr(), flags, 0) };
    if fd < 0 {
        return None;
    }
    let moved = crate::descriptors::move_to_private(fd).ok()?;
    WATCH_FD.store(moved, Ordering::Release);
    Some(moved)
}

/// Reads the table from the start of `fd` and answers from it.
fn scan(fd: c_int, prefix: &[u8]) -> bool {
    // SAFETY: `fd` is open and this library's; ManuallyDrop keeps it open after.
    let mut file = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    let mut info = String::new();
    if file.seek(SeekFrom::Start(0)).is_err() || file.read_to_string(&mut info).is_err() {
        return scan_path(prefix);
    }
    below_in(&info, prefix)
}

fn scan_path(prefix: &[u8]) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|info| below_in(&info, prefix))
}

/// Whether `info` (a `mountinfo` text) has a mount point strictly below `prefix`.
fn below_in(info: &str, prefix: &[u8]) -> bool {
    info.lines().any(|line| {
        let Some(point) = line.split(' ').nth(4) else {
            return false;
        };
        let point = btfuse_ring_client::discovery::unescape_mountinfo(point);
        let point = std::os::unix::ffi::OsStrExt::as_bytes(point.as_os_str());
        point.len() > prefix.len() && point.starts_with(prefix) && point[prefix.len()] == b'/'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mount_points_strictly_below_the_prefix_count() {
        let info = "22 27 0:21 / /proc rw - proc proc rw\n\
                    40 27 0:50 / /mnt/bt rw - fuse.btfuse-fuse btfuse rw\n";
        assert!(!below_in(info, b"/mnt/bt"));
        assert!(below_in(info, b"/mnt"));
        let nested = format!("{info}41 40 0:51 / /mnt/bt/a\\040b rw - tmpfs t rw\n");
        assert!(below_in(&nested, b"/mnt/bt"));
        assert!(!below_in(&nested, b"/mnt/b"));
    }
}
