//! Where the ring socket of a btfuse mount lives: one rule, used by `btfuse-fuse` to place
//! it and by clients to find it.
//!
//! The socket of the mount at `M` is `DIR/btfuse/E.sock`, where `DIR` is `/run` for root and
//! `$XDG_RUNTIME_DIR` for anyone else (`/tmp/btfuse-UID` when that is unset), and `E` is `M`
//! escaped as `systemd-escape --path` does: the slashes at both ends dropped, the others
//! turned into `-`, and every byte other than ASCII letters, digits, `_` and `.` (and a `.`
//! at the start) written as `\xNN`. `/mnt/fuse_test` gives `mnt-fuse_test`; `/` gives `-`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// `mountpoint` (absolute) escaped into one file name, as `systemd-escape --path` does.
pub fn escape_path(mountpoint: &Path) -> OsString {
    let bytes = mountpoint.as_os_str().as_bytes();
    let trimmed = {
        let start = bytes.iter().position(|&b| b != b'/').unwrap_or(bytes.len());
        let end = bytes
            .iter()
            .rposition(|&b| b != b'/')
            .map_or(start, |i| i + 1);
        &bytes[start..end.max(start)]
    };
    if trimmed.is_empty() {
        return OsString::from("-");
    }
    let mut out = Vec::with_capacity(trimmed.len());
    for (i, &b) in trimmed.iter().enumerate() {
        match b {
            b'/' => out.push(b'-'),
            b'.' if i == 0 => out.extend_from_slice(b"\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    OsString::from_vec(out)
}

/// The directory holding the ring sockets of `uid`'s mounts.
pub fn socket_dir(uid: u32, runtime_dir: Option<&Path>) -> PathBuf {
    if uid == 0 {
        return PathBuf::from("/run/btfuse");
    }
    match runtime_dir {
        Some(dir) if dir.is_absolute() => dir.join("btfuse"),
        _ => PathBuf::from(format!("/tmp/btfuse-{uid}")),
    }
}

/// The ring socket of the btfuse mount at `mountpoint` (absolute, canonical) mounted by `uid`.
pub fn socket_for_mount(mountpoint: &Path, uid: u32, runtime_dir: Option<&Path>) -> PathBuf {
    let mut name = escape_path(mountpoint);
    name.push(".sock");
    socket_dir(uid, runtime_dir).join(name)
}

/// The file system type of a `btfuse-fuse` mount in `/proc/*/mountinfo`.
pub const FS_TYPE: &str = "fuse.btfuse-fuse";

/// A btfuse FUSE mount seen in a mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfuseMount {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The user that mounted it (FUSE's `user_id` option), whose socket directory holds its
    /// ring socket.
    pub uid: u32,
}

/// The btfuse mounts listed in a `mountinfo` text (`/proc/self/mountinfo`'s format).
pub fn btfuse_mounts(mountinfo: &str) -> Vec<BtfuseMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut right = right.split(' ');
            if right.next()? != FS_TYPE {
                return None;
            }
            let options = right.nth(1).unwrap_or("");
            let uid = options
                .split(',')
                .find_map(|o| o.strip_prefix("user_id="))
                .and_then(|u| u.parse().ok())
                .unwrap_or(0);
            let mountpoint = unescape_mountinfo(left.split(' ').nth(4)?);
            Some(BtfuseMount { mountpoint, uid })
        })
        .collect()
}

/// The btfuse mounts this process sees.
pub fn read_btfuse_mounts() -> Vec<BtfuseMount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|info| btfuse_mounts(&info))
        .unwrap_or_default()
}

/// A `mountinfo` path field with its octal escapes (`\040` for a space) undone.
pub fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok());
        if bytes[i] == b'\\'
            && let Some(v) = octal.and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_systemd_escape_path() {
        for (path, escaped) in [
            ("/mnt/fuse_test", "mnt-fuse_test"),
            ("/", "-"),
            ("//mnt//a/", "mnt--a"),
            ("/srv/my data", "srv-my\\x20data"),
            ("/a-b/.hidden", "a\\x2db-.hidden"),
            ("/.dot", "\\x2edot"),
            ("/caf\u{e9}", "caf\\xc3\\xa9"),
        ] {
            assert_eq!(
                escape_path(Path::new(path)),
                OsString::from(escaped),
                "{path}"
            );
        }
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(
            unescape_mountinfo("/mnt/a\\040b"),
            PathBuf::from("/mnt/a b")
        );
        assert_eq!(unescape_mountinfo("/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape_mountinfo("/bad\\9"), PathBuf::from("/bad\\9"));
    }

    #[test]
    fn btfuse_mounts_are_found_in_mountinfo() {
        let info = "\
36 35 98:0 / /mnt1 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
40 35 0:45 / /mnt/fuse\\040test rw,nosuid,nodev - fuse.btfuse-fuse btfuse rw,user_id=1000,group_id=1000,default_permissions
41 35 0:46 / /run/x rw - fuse.other src rw,user_id=0
42 35 0:47 / /srv/b rw - fuse.btfuse-fuse btfuse rw,user_id=0,group_id=0
";
        assert_eq!(
            btfuse_mounts(info),
            vec![
                BtfuseMount {
                    mountpoint: PathBuf::from("/mnt/fuse test"),
                    uid: 1000
                },
                BtfuseMount {
                    mountpoint: PathBuf::from("/srv/b"),
                    uid: 0
                },
            ]
        );
    }

    #[test]
    fn the_directory_depends_on_the_user() {
        let run = Path::new("/run/user/1000");
        assert_eq!(
            socket_for_mount(Path::new("/mnt/x"), 0, Some(run)),
            Path::new("/run/btfuse/mnt-x.sock")
        );
        assert_eq!(
            socket_for_mount(Path::new("/mnt/x"), 1000, Some(run)),
            Path::new("/run/user/1000/btfuse/mnt-x.sock")
        );
        assert_eq!(
            socket_for_mount(Path::new("/mnt/x"), 1000, None),
            Path::new("/tmp/btfuse-1000/mnt-x.sock")
        );
    }
}
