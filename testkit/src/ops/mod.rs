//! Filesystem operations as data, the proptest strategies that draw them, and a driver that
//! applies them to two filesystems in lockstep.
//!
//! An [`Op`] names its targets the way a test author would: a path of names walked with
//! [`Filesystem::find`] from the root (or, rarely, a raw inode number, to reach unlinked and
//! freed inodes), a handle as a slot in the list of handles opened so far, a caller as one of four
//! fixed [`User`]s. [`run_pair`] resolves those on each filesystem separately, so the two sides
//! see the same inode only if their trees agree, and then compares every answer exactly, and the
//! whole tree after every step.
//!
//! This file holds the operations and their arguments; `strategy.rs` draws them, `apply.rs`
//! applies one to one side, and `lockstep.rs` drives both sides and compares them.

mod apply;
mod lockstep;
mod strategy;

use btfuse_core::{
    AccessMask, Credentials, FallocateMode, FileType, OpenFlags, RenameMode, SeekWhence, SetAttr,
    TimeSet, XattrMode,
};
use std::fmt;

// Only the documentation names it: each `Op` variant links to its `Filesystem` method.
#[cfg(doc)]
use btfuse_core::Filesystem;

pub use lockstep::run_pair;
pub use strategy::{op_strategy, ops_strategy, prefill_strategy};

/// A byte string (a name, a symlink target, an xattr name) that prints readably: runs of one
/// byte are abbreviated, so a 256-byte name shows as `b"{x×256}"`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    fn of(bytes: &[u8]) -> Bytes {
        Bytes(bytes.to_vec())
    }

    fn repeated(prefix: &[u8], byte: u8, len: usize) -> Bytes {
        let mut v = prefix.to_vec();
        v.resize(len, byte);
        Bytes(v)
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 48;
        let bytes = &self.0;
        if bytes.len() > SHOWN && !bytes.windows(8).any(|w| w.iter().all(|&b| b == w[0])) {
            // Long and not made of runs: file content. Enough to tell two apart.
            return write!(
                f,
                "<{} bytes, fnv {:016x}, starting {:?}>",
                bytes.len(),
                fnv(bytes),
                Bytes(bytes[..16].to_vec())
            );
        }
        f.write_str("b\"")?;
        let mut i = 0;
        while i < bytes.len() {
            let run = bytes[i..].iter().take_while(|&&b| b == bytes[i]).count();
            let escaped = std::ascii::escape_default(bytes[i]).to_string();
            if run >= 8 {
                write!(f, "{{{escaped}×{run}}}")?;
                i += run;
            } else {
                f.write_str(&escaped)?;
                i += 1;
            }
        }
        f.write_str("\"")
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Data to write: `pattern` repeated to `len` bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Data {
    /// The bytes repeated.
    pub pattern: Vec<u8>,
    /// Total length.
    pub len: usize,
}

impl Data {
    /// The bytes themselves.
    pub fn bytes(&self) -> Vec<u8> {
        if self.pattern.is_empty() {
            return vec![0; self.len];
        }
        self.pattern
            .iter()
            .copied()
            .cycle()
            .take(self.len)
            .collect()
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}×{}", Bytes(self.pattern.clone()), self.len)
    }
}

/// One of the fixed callers: 0 root, 1 `1000:1000`, 2 `1001:1001` with supplementary group
/// 1000, 3 `1002:100`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct User(pub u8);

impl User {
    /// Root.
    pub const ROOT: User = User(0);

    /// The caller's credentials.
    pub fn credentials(self) -> Credentials {
        match self.0 % 4 {
            0 => Credentials::root(),
            1 => Credentials::user(1000, 1000),
            2 => Credentials {
                groups: vec![1000],
                ..Credentials::user(1001, 1001)
            },
            _ => Credentials::user(1002, 100),
        }
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 % 4 {
            0 => f.write_str("root"),
            n => write!(f, "u{}", 999 + u32::from(n)),
        }
    }
}

/// Permission bits, printed in octal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0o{:o}", self.0)
    }
}

/// The inode an operation acts on.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// Walk these names from the root with `find` as root (empty: the root itself).
    Path(Vec<Bytes>),
    /// This inode number, whatever it is now (maybe unlinked, freed or never used).
    Ino(u64),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Path(names) if names.is_empty() => f.write_str("/"),
            Target::Path(names) => {
                for name in names {
                    write!(f, "/{}", String::from_utf8_lossy(&name.0))?;
                }
                Ok(())
            }
            Target::Ino(ino) => write!(f, "#{ino}"),
        }
    }
}

/// A handle, as a slot in the list of handles open on both sides: slot `n` is handle
/// `n % len`, except that slots from [`HandleSlot::BOGUS`] up, and every slot while no handle is
/// open, stand for a handle that was never opened (`EBADF`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HandleSlot(pub u8);

impl HandleSlot {
    /// The first slot that names no handle.
    pub const BOGUS: u8 = 240;
}

impl fmt::Debug for HandleSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h{}", self.0)
    }
}

/// [`OpenFlags`], printed compactly (`r|w|append`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Flags(pub OpenFlags);

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        let names = [
            (o.read, "r"),
            (o.write, "w"),
            (o.append, "append"),
            (o.truncate, "trunc"),
            (o.exclusive, "excl"),
            (o.directory, "dir"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        if set.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&set.join("|"))
        }
    }
}

/// [`AccessMask`], printed compactly (`rwx`, `-` for `F_OK`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mask(pub AccessMask);

impl fmt::Debug for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        if m == AccessMask::EXISTS {
            return f.write_str("F_OK");
        }
        for (on, c) in [(m.read, "r"), (m.write, "w"), (m.execute, "x")] {
            f.write_str(if on { c } else { "-" })?;
        }
        Ok(())
    }
}

/// The fields of a `setattr` call ([`SetAttr`] with readable modes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct AttrChange {
    /// New permission bits.
    pub mode: Option<Mode>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: TimeSet,
    /// New modification time.
    pub mtime: TimeSet,
    /// New change time.
    pub ctime: TimeSet,
    /// Clear set-ID bits as `chown(f, -1, -1)` would.
    pub kill_setid: bool,
}

impl AttrChange {
    /// The [`SetAttr`] this stands for.
    pub fn to_set_attr(self) -> SetAttr {
        SetAttr {
            mode: self.mode.map(|m| m.0),
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            kill_setid: self.kill_setid,
        }
    }
}

/// One step of a property test: a [`Filesystem`] call with its arguments, or a clock jump.
#[derive(Clone, PartialEq, Eq, Debug)]
#[allow(missing_docs)] // The fields are the trait method's arguments of the same names.
pub enum Op {
    /// [`Filesystem::lookup`].
    Lookup {
        user: User,
        parent: Target,
        name: Bytes,
    },
    /// [`Filesystem::forget`].
    Forget { target: Target, nlookup: u64 },
    /// [`Filesystem::getattr`].
    Getattr { user: User, target: Target },
    /// [`Filesystem::setattr`]; the handle is passed only if it is open on the target.
    Setattr {
        user: User,
        target: Target,
        change: AttrChange,
        handle: Option<HandleSlot>,
    },
    /// [`Filesystem::mknod`].
    Mknod {
        user: User,
        parent: Target,
        name: Bytes,
        kind: FileType,
        mode: Mode,
        rdev: u32,
    },
    /// [`Filesystem::mkdir`].
    Mkdir {
        user: User,
        parent: Target,
        name: Bytes,
        mode: Mode,
    },
    /// [`Filesystem::create`].
    Create {
        user: User,
        parent: Target,
        name: Bytes,
        mode: Mode,
        flags: Flags,
    },
    /// [`Filesystem::unlink`].
    Unlink {
        user: User,
        parent: Target,
        name: Bytes,
    },
    /// [`Filesystem::rmdir`].
    Rmdir {
        user: User,
        parent: Target,
        name: Bytes,
    },
    /// [`Filesystem::rename`].
    Rename {
        user: User,
        parent: Target,
        name: Bytes,
        new_parent: Target,
        new_name: Bytes,
        mode: RenameMode,
    },
    /// [`Filesystem::link`].
    Link {
        user: User,
        target: Target,
        new_parent: Target,
        new_name: Bytes,
    },
    /// [`Filesystem::symlink`].
    Symlink {
        user: User,
        parent: Target,
        name: Bytes,
        link: Bytes,
    },
    /// [`Filesystem::readlink`].
    Readlink { user: User, target: Target },
    /// [`Filesystem::open`].
    Open {
        user: User,
        target: Target,
        flags: Flags,
    },
    /// [`Filesystem::release`].
    Release { handle: HandleSlot },
    /// [`Filesystem::read`] into a buffer of `len` bytes.
    Read {
        user: User,
        handle: HandleSlot,
        offset: u64,
        len: usize,
    },
    /// [`Filesystem::write`].
    Write {
        user: User,
        handle: HandleSlot,
        offset: u64,
        data: Data,
    },
    /// [`Filesystem::fallocate`].
    Fallocate {
        user: User,
        handle: HandleSlot,
        mode: FallocateMode,
        offset: u64,
        len: u64,
    },
    /// [`Filesystem::lseek`].
    Lseek {
        user: User,
        handle: HandleSlot,
        offset: u64,
        whence: SeekWhence,
    },
    /// [`Filesystem::readdir`], collecting every entry, or only the first `limit`.
    Readdir {
        user: User,
        handle: HandleSlot,
        cookie: u64,
        limit: Option<usize>,
    },
    /// [`Filesystem::statfs`].
    Statfs { user: User },
    /// [`Filesystem::getxattr`] into a buffer of `buf_len` bytes.
    Getxattr {
        user: User,
        target: Target,
        name: Bytes,
        buf_len: usize,
    },
    /// [`Filesystem::setxattr`].
    Setxattr {
        user: User,
        target: Target,
        name: Bytes,
        value: Data,
        mode: XattrMode,
    },
    /// [`Filesystem::listxattr`] into a buffer of `buf_len` bytes.
    Listxattr {
        user: User,
        target: Target,
        buf_len: usize,
    },
    /// [`Filesystem::removexattr`].
    Removexattr {
        user: User,
        target: Target,
        name: Bytes,
    },
    /// [`Filesystem::access`].
    Access {
        user: User,
        target: Target,
        mask: Mask,
    },
    /// [`Filesystem::fsync`].
    Fsync {
        user: User,
        handle: HandleSlot,
        datasync: bool,
    },
    /// Advance the clock by `secs` seconds (on top of the 1 ns every step gets).
    Sleep { secs: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_print_abbreviated() {
        assert_eq!(
            format!("{:?}", Bytes::repeated(b"user.", b'n', 12)),
            "b\"user.nnnnnnn\""
        );
        assert_eq!(
            format!("{:?}", Bytes::repeated(b"", b'x', 256)),
            "b\"{x×256}\""
        );
        assert_eq!(
            format!("{:?}", Target::Path(vec![Bytes::of(b"a"), Bytes::of(b"b")])),
            "/a/b"
        );
    }
}
