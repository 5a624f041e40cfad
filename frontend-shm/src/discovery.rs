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
