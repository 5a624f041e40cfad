//! Mount settings from the command line and from `-o` lists as mount(8) passes them.

use std::path::Path;

use btfuse_daemon::{Sizing, parse_size};

/// Everything that shapes a mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Capacity of the block store in bytes.
    pub(crate) size: u64,
    /// Most inodes.
    pub(crate) inodes: u64,
    /// Threads serving the kernel.
    pub(crate) threads: usize,
    /// Let users other than the mounter in (`allow_other`).
    pub(crate) allow_other: bool,
    /// Owner, group and mode of the root directory.
    pub(crate) uid: u32,
    /// See `uid`.
    pub(crate) gid: u32,
    /// See `uid`.
    pub(crate) mode: u32,
    /// `MS_*` mount flags (`ro`, `nosuid`, ...); `nosuid,nodev` unless asked otherwise, as
    /// FUSE mounts default to.
    pub(crate) flags: libc::c_ulong,
}

/// Parses an octal mode such as `1777` or `0755`.
pub(crate) fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid mode {text:?}: expected octal digits up to 7777"))
}

impl Settings {
    /// The defaults, like tmpfs's: half of memory, one inode per 4 KiB of it.
    pub(crate) fn defaults() -> Settings {
        let Sizing { size, inodes } = Sizing::with_defaults(None, None);
        Settings {
            size,
            inodes,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            allow_other: false,
            uid: 0,
            gid: 0,
            mode: 0o755,
            flags: libc::MS_NOSUID | libc::MS_NODEV,
        }
    }

    /// Applies one `-o` list (comma-separated `key` or `key=value`).
    pub(crate) fn apply_options(&mut self, list: &str) -> Result<(), String> {
        for item in list.split(',').filter(|s| !s.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            let need = || value.ok_or_else(|| format!("mount option {key} needs a value"));
            let number = |v: &str| v.parse::<u64>().map_err(|_| format!("invalid {key}={v}"));
            match key {
                "size" => self.size = parse_size(need()?)?,
                "nr_inodes" | "inodes" => self.inodes = number(need()?)?,
                "threads" => self.threads = number(need()?)? as usize,
                "mode" => self.mode = parse_mode(need()?)?,
                "uid" => self.uid = number(need()?)? as u32,
                "gid" => self.gid = number(need()?)? as u32,
                "allow_other" => self.allow_other = true,
                "ro" => self.flags |= libc::MS_RDONLY,
                "rw" => self.flags &= !libc::MS_RDONLY,
                "nosuid" => self.flags |= libc::MS_NOSUID,
                "suid" => self.flags &= !libc::MS_NOSUID,
                "nodev" => self.flags |= libc::MS_NODEV,
                "dev" => self.flags &= !libc::MS_NODEV,
                "noexec" => self.flags |= libc::MS_NOEXEC,
                "exec" => self.flags &= !libc::MS_NOEXEC,
                "noatime" => self.flags |= libc::MS_NOATIME,
                "atime" => self.flags &= !libc::MS_NOATIME,
                "sync" => self.flags |= libc::MS_SYNCHRONOUS,
                "async" => self.flags &= !libc::MS_SYNCHRONOUS,
                "dirsync" => self.flags |= libc::MS_DIRSYNC,
                // Added by mount(8) and fstab handling; nothing for the daemon to do.
                "defaults" | "auto" | "noauto" | "user" | "nouser" | "users" | "_netdev"
                | "nofail" | "relatime" => {}
                // Always on (see README).
                "default_permissions" => {}
                _ if key.starts_with("x-") => {}
                _ => return Err(format!("unknown mount option {item:?}")),
            }
        }
        Ok(())
    }

    /// Checks values that only make sense together.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.size < 4096 {
            return Err(format!(
                "size {} is smaller than one 4 KiB block",
                self.size
            ));
        }
        if self.inodes == 0 {
            return Err("inodes must be at least 1".into());
        }
        if self.threads == 0 || self.threads > 1024 {
            return Err(format!(
                "threads must be between 1 and 1024, not {}",
                self.threads
            ));
        }
        Ok(())
    }
}

/// The btfuse mount at `dir`, if /proc/self/mountinfo shows one there.
pub(crate) fn is_btfuse_mount(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    btfuse_ring_client::discovery::read_btfuse_mounts()
        .iter()
        .any(|m| m.mountpoint == dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_suffixes_and_reject_nonsense() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("50%").unwrap() > 0);
        for bad in ["", "M", "12X", "-1", "0", "0%", "101%", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mount_options_as_mount_passes_them() {
        let mut s = Settings::defaults();
        s.apply_options("ro,dev,size=64M,nr_inodes=1000,mode=1777,uid=5,gid=6,allow_other")
            .unwrap();
        assert_eq!(
            (s.size, s.inodes, s.mode, s.uid, s.gid),
            (64 << 20, 1000, 0o1777, 5, 6)
        );
        assert!(s.allow_other);
        assert_eq!(s.flags, libc::MS_RDONLY | libc::MS_NOSUID);
        assert!(s.apply_options("bogus").is_err());
        assert!(s.apply_options("size").is_err());
        assert!(s.apply_options("mode=8").is_err());
    }
}
