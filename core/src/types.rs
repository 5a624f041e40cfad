//! Identities, attributes and flags shared by every operation of the [`Filesystem`] trait.
//!
//! [`Filesystem`]: crate::Filesystem

use alloc::vec::Vec;

/// Longest name of one directory entry, in bytes (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest path a path-speaking frontend accepts, in bytes, including the final NUL of C
/// (Linux `PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Longest extended attribute name, in bytes (Linux `XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest extended attribute value, in bytes (Linux `XATTR_SIZE_MAX`).
pub const XATTR_SIZE_MAX: usize = 65536;
/// Most hard links one inode may have.
pub const LINK_MAX: u32 = u32::MAX - 1;
/// Largest file size the engine supports (that of Linux's `MAX_LFS_FILESIZE`).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// Set-user-ID bit of a mode.
pub const S_ISUID: u32 = 0o4000;
/// Set-group-ID bit of a mode.
pub const S_ISGID: u32 = 0o2000;
/// Sticky bit of a mode.
pub const S_ISVTX: u32 = 0o1000;
/// All permission bits, including set-ID and sticky.
pub const PERM_MASK: u32 = 0o7777;

/// An inode number. Stable for the inode's life; never reused while the engine runs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Ino(pub u64);

impl Ino {
    /// The root directory (1, as FUSE expects).
    pub const ROOT: Ino = Ino(1);
}

/// A handle to an open file or directory, returned by `open` and `create`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Fh(pub u64);

/// Who is asking. Frontends fill it from the kernel's request header (FUSE) or from
/// `SO_PEERCRED` (the ring), never from bytes a client chose.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Credentials {
    /// Effective (filesystem) user id.
    pub uid: u32,
    /// Effective (filesystem) group id.
    pub gid: u32,
    /// Supplementary groups; `gid` need not be repeated here.
    pub groups: Vec<u32>,
    /// Process id, for diagnostics only: no decision depends on it.
    pub pid: u32,
}

impl Credentials {
    /// Root, with no supplementary groups.
    pub fn root() -> Credentials {
        Credentials::user(0, 0)
    }

    /// A user with a primary group and no supplementary groups.
    pub fn user(uid: u32, gid: u32) -> Credentials {
        Credentials {
            uid,
            gid,
            groups: Vec::new(),
            pid: 0,
        }
    }

    /// Whether the caller has the powers of root (`CAP_DAC_OVERRIDE`, `CAP_FOWNER`, ...).
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether `gid` is the caller's primary group or one of its supplementary groups.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// The set-ID bits of a file with permission bits `perm` and group `gid` that a `chown`
    /// by these credentials clears (Linux `chown_common`): set-user-ID always, root included;
    /// set-group-ID when group-execute is set or the caller is neither root nor in the group.
    /// Only bits that are set: none means the chown changes no mode.
    pub fn setid_bits_chown_clears(&self, perm: u32, gid: u32) -> u32 {
        let mut kill = perm & S_ISUID;
        if perm & S_ISGID != 0 && (perm & 0o010 != 0 || !(self.is_root() || self.in_group(gid))) {
            kill |= S_ISGID;
        }
        kill
    }
}

/// A point in time: seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z; negative before it.
    pub secs: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

impl Timestamp {
    /// The epoch itself.
    pub const EPOCH: Timestamp = Timestamp { secs: 0, nanos: 0 };

    /// A timestamp from seconds and nanoseconds; `None` if `nanos` is not below one second.
    pub const fn new(secs: i64, nanos: u32) -> Option<Timestamp> {
        if nanos < 1_000_000_000 {
            Some(Timestamp { secs, nanos })
        } else {
            None
        }
    }
}

/// What time it is. Core has no clock of its own so that it stays `no_std`.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;
}

/// The kind of an inode.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FileType {
    /// A regular file.
    RegularFile,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A named pipe (record only: the kernel serves its data).
    NamedPipe,
    /// A Unix socket (record only).
    Socket,
    /// A character device (record only).
    CharDevice,
    /// A block device (record only).
    BlockDevice,
}

impl FileType {
    /// The `S_IFMT` bits of this type as Linux spells them.
    pub const fn mode_bits(self) -> u32 {
        match self {
            FileType::RegularFile => 0o100000,
            FileType::Directory => 0o040000,
            FileType::Symlink => 0o120000,
            FileType::NamedPipe => 0o010000,
            FileType::Socket => 0o140000,
            FileType::CharDevice => 0o020000,
            FileType::BlockDevice => 0o060000,
        }
    }

    /// The type named by the `S_IFMT` bits of `mode`, if any.
    pub const fn from_mode(mode: u32) -> Option<FileType> {
        Some(match mode & 0o170000 {
            0o100000 => FileType::RegularFile,
            0o040000 => FileType::Directory,
            0o120000 => FileType::Symlink,
            0o010000 => FileType::NamedPipe,
            0o140000 => FileType::Socket,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            _ => return None,
        })
    }
}

/// The attributes of an inode, as `stat` reports them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// Kind of inode.
    pub kind: FileType,
    /// Permission bits, including set-ID and sticky (`mode & 0o7777`).
    pub perm: u32,
    /// Number of hard links (directories: 2 plus one per subdirectory).
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node; 0 otherwise.
    pub rdev: u32,
    /// Size in bytes (symlinks: the target's length; directories: a nominal size).
    pub size: u64,
    /// Storage used, in 512-byte units, as `st_blocks` counts it.
    pub blocks: u64,
    /// Preferred I/O size (the block store's block size).
    pub blksize: u32,
    /// Last access.
    pub atime: Timestamp,
    /// Last modification of the content.
    pub mtime: Timestamp,
    /// Last change of the inode.
    pub ctime: Timestamp,
}

impl Attr {
    /// The full `st_mode`: type bits and permission bits.
    pub const fn mode(&self) -> u32 {
        self.kind.mode_bits() | self.perm
    }
}

/// How `setattr` changes one timestamp.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum TimeSet {
    /// Leave it as it is (`UTIME_OMIT`).
    #[default]
    Omit,
    /// Set it to the current time (`UTIME_NOW`).
    Now,
    /// Set it to this time.
    At(Timestamp),
}

/// The changes one `setattr` call makes; `None`/`Omit` fields stay as they are.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SetAttr {
    /// New permission bits (`chmod`); only `0o7777` is used.
    pub mode: Option<u32>,
    /// New owner (`chown`).
    pub uid: Option<u32>,
    /// New group (`chown`).
    pub gid: Option<u32>,
    /// New size (`truncate`); regular files only.
    pub size: Option<u64>,
    /// New access time (`utimensat`).
    pub atime: TimeSet,
    /// New modification time (`utimensat`).
    pub mtime: TimeSet,
    /// New change time. `Omit` still sets it to now when anything else is set.
    pub ctime: TimeSet,
    /// Clear set-ID bits of a non-directory as `chown` does (set-user-ID always; set-group-ID
    /// when group-execute is set or the caller is neither root nor in the file's group) and
    /// move ctime: what `chown(f, -1, -1)` does, and FUSE's kill-set-ID request. When a bit
    /// would be cleared, that is a mode change: only the owner, root, or a caller who may write
    /// the file may ask; others get `EPERM` and nothing changes (Linux's `notify_change` makes
    /// the kill an `ATTR_MODE`, which `setattr_prepare` refuses to a non-owner). Writers are
    /// let through because over FUSE the kernel sends this same request before a non-owner's
    /// write or fallocate, and a write clears the bits anyway. With nothing to clear anyone may
    /// ask, and only ctime moves.
    pub kill_setid: bool,
}

/// Flags of `open` and `create`, as the subset of `O_*` the engine acts on.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct OpenFlags {
    /// Open for reading.
    pub read: bool,
    /// Open for writing.
    pub write: bool,
    /// Every write goes to the end of the file, atomically (`O_APPEND`).
    pub append: bool,
    /// Truncate to zero length on open (`O_TRUNC`), when opened for writing.
    pub truncate: bool,
    /// With `create`: fail with `EEXIST` if the name exists (`O_EXCL`).
    pub exclusive: bool,
    /// Fail with `ENOTDIR` unless the inode is a directory (`O_DIRECTORY`).
    pub directory: bool,
    /// Opened by the kernel to run the file (`__FMODE_EXEC`, which FUSE passes on; no
    /// program can ask for it): while such a handle is open the file may not be opened for
    /// writing or truncated (`ETXTBSY`), as Linux keeps a running program's file.
    pub exec: bool,
}

impl OpenFlags {
    /// Read only.
    pub const READ: OpenFlags = OpenFlags {
        read: true,
        write: false,
        append: false,
        truncate: false,
        exclusive: false,
        directory: false,
        exec: false,
    };
    /// Write only.
    pub const WRITE: OpenFlags = OpenFlags {
        read: false,
        write: true,
        ..OpenFlags::READ
    };
    /// Read and write.
    pub const READ_WRITE: OpenFlags = OpenFlags {
        read: true,
        write: true,
        ..OpenFlags::READ
    };
}

/// How `rename` treats an existing target (`renameat2` flags).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum RenameMode {
    /// Replace the target if there is one (`rename`).
    #[default]
    Replace,
    /// Fail with `EEXIST` if the target exists (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap source and target atomically; both must exist (`RENAME_EXCHANGE`).
    Exchange,
}

/// What `fallocate` does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FallocateMode {
    /// Allocate blocks for the range and grow the file to cover it (mode 0).
    Allocate,
    /// Allocate blocks for the range but keep the size (`FALLOC_FL_KEEP_SIZE`).
    KeepSize,
    /// Free the range so it reads as zeros; the size never changes
    /// (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`).
    PunchHole,
}

/// Which `lseek` search to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SeekWhence {
    /// The next offset at or after the given one that holds data (`SEEK_DATA`).
    Data,
    /// The next offset at or after the given one inside a hole, or the end (`SEEK_HOLE`).
    Hole,
}

/// How `setxattr` treats an existing attribute.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum XattrMode {
    /// Create or replace.
    #[default]
    Set,
    /// Fail with `EEXIST` if it exists (`XATTR_CREATE`).
    Create,
    /// Fail with `ENODATA` if it does not exist (`XATTR_REPLACE`).
    Replace,
}

/// The access an `access` call asks about (`R_OK`, `W_OK`, `X_OK`); all false is `F_OK`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct AccessMask {
    /// Read permission.
    pub read: bool,
    /// Write permission.
    pub write: bool,
    /// Execute (search, for directories) permission.
    pub execute: bool,
}

impl AccessMask {
    /// Existence only (`F_OK`).
    pub const EXISTS: AccessMask = AccessMask {
        read: false,
        write: false,
        execute: false,
    };
    /// Read (`R_OK`).
    pub const READ: AccessMask = AccessMask {
        read: true,
        ..AccessMask::EXISTS
    };
    /// Write (`W_OK`).
    pub const WRITE: AccessMask = AccessMask {
        write: true,
        ..AccessMask::EXISTS
    };
    /// Execute or search (`X_OK`).
    pub const EXECUTE: AccessMask = AccessMask {
        execute: true,
        ..AccessMask::EXISTS
    };
    /// Write and search: what changing a directory's entries needs.
    pub const WRITE_EXECUTE: AccessMask = AccessMask {
        write: true,
        execute: true,
        ..AccessMask::EXISTS
    };
}

/// One entry handed to a `readdir` sink.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DirEntry<'a> {
    /// The entry's inode.
    pub ino: Ino,
    /// The cookie to pass to `readdir` to continue after this entry.
    pub cookie: u64,
    /// The entry's type.
    pub kind: FileType,
    /// The entry's name (`.` and `..` included).
    pub name: &'a [u8],
}

/// Filesystem-wide statistics, as `statfs` reports them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StatFs {
    /// Block size of the counts below.
    pub block_size: u32,
    /// Total data blocks.
    pub blocks: u64,
    /// Free data blocks.
    pub blocks_free: u64,
    /// Free data blocks available to unprivileged users (the same: no reserve).
    pub blocks_available: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
    /// Longest name.
    pub name_max: u32,
}
