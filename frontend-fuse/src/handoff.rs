//! The ring's `Handoff` on this daemon: the inode of a ring description is opened through the
//! daemon's own mount with `open_by_handle_at`, from the FUSE file handle the kernel module
//! would make for it (the engine's inode number as the node id, and [`GENERATION`]).
//!
//! The kernel finds an inode it still caches at once; one it has forgotten, or never met (a
//! file only the ring created, or one unlinked and still open), it asks the daemon for with
//! `LOOKUP(nodeid, ".")`, which the engine answers with the inode itself (and `..` of a
//! directory with its parent), because the adapter declares `FUSE_EXPORT_SUPPORT`.
//!
//! Nothing on the mount is kept open between handoffs, so that an unmount from outside is
//! not made busy by the daemon itself: each handoff opens the mount point anew and checks it
//! is still this mount (its device), then checks the file it opened is the inode asked for.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use btfuse_core::Ino;
use btfuse_ring_server::handoff::{KernelAccess, KernelOpener};

use crate::adapter::GENERATION;
use crate::sys;

/// Opens inodes of the mount at a mount point through the kernel.
pub(crate) struct MountOpener {
    mountpoint: PathBuf,
    /// The mount's device number, as `stat` reports it, read from `/proc/self/mountinfo`
    /// at the first handoff (not at start, which would delay the ring's socket).
    dev: OnceLock<u64>,
}

impl MountOpener {
    /// The opener of this daemon's btfuse mount at `mountpoint` (a canonical path).
    pub(crate) fn new(mountpoint: &Path) -> MountOpener {
        MountOpener {
            mountpoint: mountpoint.to_path_buf(),
            dev: OnceLock::new(),
        }
    }

    /// The mount's device number.
    fn dev(&self) -> io::Result<u64> {
        if let Some(&dev) = self.dev.get() {
            return Ok(dev);
        }
        // From mountinfo rather than `stat`, which would ask the mount itself.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let dev = mount_device(&mountinfo, &self.mountpoint).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a btfuse mount", self.mountpoint.display()),
            )
        })?;
        Ok(*self.dev.get_or_init(|| dev))
    }
}

fn stale() -> io::Error {
    io::Error::from_raw_os_error(libc::ESTALE)
}

impl KernelOpener for MountOpener {
    fn mount_device(&self) -> Option<u64> {
        self.dev().ok()
    }

    fn open(&self, ino: Ino, access: KernelAccess) -> io::Result<OwnedFd> {
        // Not `O_PATH`: `open_by_handle_at` wants a descriptor it can use as a file.
        let root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&self.mountpoint)?;
        let dev = self.dev()?;
        if root.metadata()?.dev() != dev {
            // Something else is mounted over it now.
            return Err(stale());
        }
        let root = OwnedFd::from(root);
        let flags = access.open_flags();
        let opened = sys::open_by_fuse_handle(&root, ino.0, GENERATION as u32, flags)?;
        let file = std::fs::File::from(opened);
        let meta = file.metadata()?;
        if meta.dev() != dev || meta.ino() != ino.0 {
            return Err(stale());
        }
        Ok(OwnedFd::from(file))
    }
}

/// The device number of the topmost btfuse mount at `mountpoint` in a mountinfo table.
fn mount_device(mountinfo: &str, mountpoint: &Path) -> Option<u64> {
    mountinfo.lines().rev().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let fields: Vec<&str> = mount.split(' ').collect();
        let fstype = fs.split(' ').next()?;
        let at = btfuse_ring_client::discovery::unescape_mountinfo(fields.get(4)?);
        if fstype != crate::FS_TYPE || at != mountpoint {
            return None;
        }
        let (major, minor) = fields.get(2)?.split_once(':')?;
        Some(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_is_the_topmost_btfuse_mount_at_the_path() {
        let table = "\
22 1 0:21 / /mnt/x rw - tmpfs tmpfs rw
40 22 0:52 / /mnt/x rw,nosuid - fuse.btfuse-fuse btfuse rw,user_id=0
41 22 0:53 / /mnt/with\\040space rw - fuse.btfuse-fuse btfuse rw
42 22 0:54 / /mnt/other rw - fuse.other x rw
";
        let dev = |path: &str| mount_device(table, Path::new(path));
        assert_eq!(dev("/mnt/x"), Some(libc::makedev(0, 52)));
        assert_eq!(dev("/mnt/with space"), Some(libc::makedev(0, 53)));
        assert_eq!(dev("/mnt/other"), None);
        assert_eq!(dev("/mnt/none"), None);
        let covered = format!("{table}50 40 0:60 / /mnt/x rw - fuse.btfuse-fuse btfuse rw\n");
        assert_eq!(
            mount_device(&covered, Path::new("/mnt/x")),
            Some(libc::makedev(0, 60))
        );
    }
}
