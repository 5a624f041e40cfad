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

/// Bytes written into a caller's buffer, failing (`None`) instead of growing: the pieces of
/// this module that the interposer uses where it must not allocate (a call made while the
/// program's allocator initialises itself, a signal handler).
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    /// An empty writer over `buf`.
    pub fn new(buf: &'a mut [u8]) -> Writer<'a> {
        Writer { buf, len: 0 }
    }

    /// Appends `bytes`; `None` if they do not fit.
    #[inline]
    pub fn push(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.buf.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    /// Appends `value` in decimal.
    pub fn push_decimal(&mut self, mut value: u64) -> Option<()> {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.push(&digits[at..])
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// How many bytes were written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Writes `mountpoint` (absolute) escaped into one file name, as `systemd-escape --path` does.
pub fn write_escaped_path(mountpoint: &[u8], out: &mut Writer<'_>) -> Option<()> {
    let start = mountpoint
        .iter()
        .position(|&b| b != b'/')
        .unwrap_or(mountpoint.len());
    let end = mountpoint
        .iter()
        .rposition(|&b| b != b'/')
        .map_or(start, |i| i + 1);
    let trimmed = &mountpoint[start..end.max(start)];
    if trimmed.is_empty() {
        return out.push(b"-");
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, &b) in trimmed.iter().enumerate() {
        match b {
            b'/' => out.push(b"-")?,
            b'.' if i == 0 => out.push(b"\\x2e")?,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => out.push(&[b])?,
            _ => out.push(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ])?,
        }
    }
    Some(())
}

/// Writes the mount point a file name made by [`write_escaped_path`] stands for (what
/// `systemd-escape --unescape --path` gives); `None` if `name` is not such a name.
pub fn write_unescaped_path(name: &[u8], out: &mut Writer<'_>) -> Option<()> {
    if name == b"-" {
        return out.push(b"/");
    }
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'-' => out.push(b"/")?,
            b'\\' => {
                let (high, low) = (hex(*name.get(i + 2)?)?, hex(*name.get(i + 3)?)?);
                if name.get(i + 1) != Some(&b'x') {
                    return None;
                }
                if i == 0 {
                    out.push(b"/")?;
                }
                out.push(&[high << 4 | low])?;
                i += 4;
                continue;
            }
            b => {
                if i == 0 {
                    out.push(b"/")?;
                }
                out.push(&[b])?;
            }
        }
        i += 1;
    }
    Some(())
}

/// `mountpoint` (absolute) escaped into one file name, as `systemd-escape --path` does.
pub fn escape_path(mountpoint: &Path) -> OsString {
    let bytes = mountpoint.as_os_str().as_bytes();
    // Every byte becomes at most four.
    let mut buf = vec![0u8; bytes.len() * 4 + 1];
    let mut out = Writer::new(&mut buf);
    let written = write_escaped_path(bytes, &mut out).map(|()| out.len());
    buf.truncate(written.unwrap_or(0));
    OsString::from_vec(buf)
}

/// Writes the directory holding the ring sockets of `uid`'s mounts.
pub fn write_socket_dir(uid: u32, runtime_dir: Option<&[u8]>, out: &mut Writer<'_>) -> Option<()> {
    if uid == 0 {
        return out.push(b"/run/btfuse");
    }
    match runtime_dir {
        Some(dir) if dir.first() == Some(&b'/') => {
            out.push(dir)?;
            if dir.last() != Some(&b'/') {
                out.push(b"/")?;
            }
            out.push(b"btfuse")
        }
        _ => {
            out.push(b"/tmp/btfuse-")?;
            out.push_decimal(u64::from(uid))
        }
    }
}

/// The directory holding the ring sockets of `uid`'s mounts.
pub fn socket_dir(uid: u32, runtime_dir: Option<&Path>) -> PathBuf {
    owned(|out| write_socket_dir(uid, runtime_dir.map(|d| d.as_os_str().as_bytes()), out))
}

/// Writes the ring socket of the btfuse mount at `mountpoint` (absolute, canonical) mounted by
/// `uid`.
pub fn write_socket_for_mount(
    mountpoint: &[u8],
    uid: u32,
    runtime_dir: Option<&[u8]>,
    out: &mut Writer<'_>,
) -> Option<()> {
    write_socket_dir(uid, runtime_dir, out)?;
    out.push(b"/")?;
    write_escaped_path(mountpoint, out)?;
    out.push(b".sock")
}

/// The ring socket of the btfuse mount at `mountpoint` (absolute, canonical) mounted by `uid`.
pub fn socket_for_mount(mountpoint: &Path, uid: u32, runtime_dir: Option<&Path>) -> PathBuf {
    owned(|out| {
        write_socket_for_mount(
            mountpoint.as_os_str().as_bytes(),
            uid,
            runtime_dir.map(|d| d.as_os_str().as_bytes()),
            out,
        )
    })
}

/// What `write` writes, as a path, in a buffer that grows until it fits.
fn owned(write: impl Fn(&mut Writer<'_>) -> Option<()>) -> PathBuf {
    let mut size = 256;
    loop {
        let mut buf = vec![0u8; size];
        let mut out = Writer::new(&mut buf);
        if write(&mut out).is_some() {
            let len = out.len();
            buf.truncate(len);
            return PathBuf::from(OsString::from_vec(buf));
        }
        size *= 4;
    }
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

/// One line of a `mountinfo` text if it is a btfuse mount: its mount point as written there
/// (octal escapes, see [`unescape_mountinfo_into`]) and the user that mounted it.
pub fn btfuse_mount_in_line(line: &[u8]) -> Option<(&[u8], u32)> {
    let split = line.windows(3).position(|w| w == b" - ")?;
    let (left, right) = (&line[..split], &line[split + 3..]);
    let mut right = right.split(|&b| b == b' ');
    if right.next()? != FS_TYPE.as_bytes() {
        return None;
    }
    let options = right.nth(1).unwrap_or(b"");
    let uid = options
        .split(|&b| b == b',')
        .find_map(|o| o.strip_prefix(b"user_id="))
        .and_then(parse_decimal)
        .unwrap_or(0);
    let mountpoint = left.split(|&b| b == b' ').nth(4)?;
    Some((mountpoint, uid))
}

/// A decimal `u32`, without sign or spaces.
fn parse_decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u32, |value, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// The btfuse mounts listed in a `mountinfo` text (`/proc/self/mountinfo`'s format).
pub fn btfuse_mounts(mountinfo: &str) -> Vec<BtfuseMount> {
    mountinfo
        .as_bytes()
        .split(|&b| b == b'\n')
        .filter_map(btfuse_mount_in_line)
        .map(|(mountpoint, uid)| BtfuseMount {
            mountpoint: unescape_mountinfo_bytes(mountpoint),
            uid,
        })
        .collect()
}

/// The btfuse mounts this process sees.
pub fn read_btfuse_mounts() -> Vec<BtfuseMount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|info| btfuse_mounts(&info))
        .unwrap_or_default()
}

/// Writes a `mountinfo` path field with its octal escapes (`\040` for a space) undone.
pub fn unescape_mountinfo_into(field: &[u8], out: &mut Writer<'_>) -> Option<()> {
    let mut i = 0;
    while i < field.len() {
        let octal = field.get(i + 1..i + 4).and_then(|d| {
            d.iter().try_fold(0u16, |v, &c| {
                matches!(c, b'0'..=b'7').then(|| v * 8 + u16::from(c - b'0'))
            })
        });
        if field[i] == b'\\'
            && let Some(v) = octal.and_then(|v| u8::try_from(v).ok())
        {
            out.push(&[v])?;
            i += 4;
            continue;
        }
        out.push(&field[i..i + 1])?;
        i += 1;
    }
    Some(())
}

/// Writes `path` escaped as `mountinfo` writes a path field: space, tab, newline and backslash
/// as octal escapes, so that [`unescape_mountinfo_into`] gives it back.
pub fn escape_mountinfo_into(path: &[u8], out: &mut Writer<'_>) -> Option<()> {
    for &b in path {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => out.push(&[
                b'\\',
                b'0' + (b >> 6),
                b'0' + ((b >> 3) & 7),
                b'0' + (b & 7),
            ])?,
            _ => out.push(&[b])?,
        }
    }
    Some(())
}

/// A `mountinfo` path field with its octal escapes (`\040` for a space) undone.
pub fn unescape_mountinfo(field: &str) -> PathBuf {
    unescape_mountinfo_bytes(field.as_bytes())
}

fn unescape_mountinfo_bytes(field: &[u8]) -> PathBuf {
    // Unescaping never lengthens.
    let mut buf = vec![0u8; field.len()];
    let mut out = Writer::new(&mut buf);
    let len = unescape_mountinfo_into(field, &mut out).map_or(0, |()| out.len());
    buf.truncate(len);
    PathBuf::from(OsString::from_vec(buf))
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
    fn escaped_names_read_back() {
        for path in [
            "/mnt/fuse_test",
            "/",
            "/srv/my data",
            "/a-b/.hidden",
            "/.dot",
            "/caf\u{e9}",
        ] {
            let name = escape_path(Path::new(path));
            let mut buf = [0u8; 64];
            let mut out = Writer::new(&mut buf);
            write_unescaped_path(name.as_encoded_bytes(), &mut out).unwrap();
            assert_eq!(out.written(), path.as_bytes(), "{name:?}");
        }
        for bad in [&b"a\\x2"[..], b"a\\y20", b"a\\xzz"] {
            let mut buf = [0u8; 64];
            assert_eq!(write_unescaped_path(bad, &mut Writer::new(&mut buf)), None);
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
        assert_eq!(unescape_mountinfo("/big\\777"), PathBuf::from("/big\\777"));
        for path in [&b"/plain"[..], b"/a b\tc\nd\\e", b"/\\040"] {
            let mut escaped = [0u8; 64];
            let mut out = Writer::new(&mut escaped);
            escape_mountinfo_into(path, &mut out).unwrap();
            assert!(!out.written().contains(&b' '));
            let escaped = out.written().to_vec();
            let mut back = [0u8; 64];
            let mut out = Writer::new(&mut back);
            unescape_mountinfo_into(&escaped, &mut out).unwrap();
            assert_eq!(out.written(), path);
        }
    }

    #[test]
    fn writers_fail_instead_of_overflowing() {
        let mut small = [0u8; 12];
        let mut out = Writer::new(&mut small);
        assert_eq!(write_socket_for_mount(b"/mnt/x", 0, None, &mut out), None);
        let mut fits = [0u8; 23];
        let mut out = Writer::new(&mut fits);
        assert_eq!(
            write_socket_for_mount(b"/mnt/x", 0, None, &mut out),
            Some(())
        );
        assert_eq!(out.written(), b"/run/btfuse/mnt-x.sock");
        let mut out = Writer::new(&mut fits);
        out.push_decimal(0).unwrap();
        out.push_decimal(u64::from(u32::MAX)).unwrap();
        assert_eq!(out.written(), b"04294967295");
        assert_eq!(parse_decimal(b"4294967296"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"12"), Some(12));
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
