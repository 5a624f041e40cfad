//! Requests: what a client asks of the server, and the field types only requests use.

use super::codec::{Blob, Codec, Max, Perm, Reader, Sink, Str, flags_codec};
use super::{DecodeError, MAX_IO};
use crate::{
    AccessMask, FallocateMode, OpenFlags, PATH_MAX, RenameMode, TimeSet, XATTR_NAME_MAX,
    XATTR_SIZE_MAX, XattrMode,
};

type Path = Str<PATH_MAX>;
type XattrName = Str<XATTR_NAME_MAX>;
type XattrValue = Blob<XATTR_SIZE_MAX>;
type Data = Blob<MAX_IO>;
const MAX_IO_U32: u32 = MAX_IO as u32;
const PATH_MAX_U32: u32 = PATH_MAX as u32;
const XATTR_SIZE_MAX_U32: u32 = XATTR_SIZE_MAX as u32;

/// What a path or descriptor operation acts on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target<'a> {
    /// An open description of the server (`fstat`, `fchmod`, `AT_EMPTY_PATH`).
    Fd(u32),
    /// A path, resolved by the server.
    Path {
        /// The directory description a relative path starts from (the `dirfd` of the `*at`
        /// calls); `None`: the served root.
        at: Option<u32>,
        /// 1 to `PATH_MAX` bytes, no NUL. Relative to the served root or to `at`; a leading
        /// `/` always means the served root (the client strips its own prefix).
        path: &'a [u8],
        /// Whether a symbolic link in the last component is followed (`stat` against `lstat`,
        /// `AT_SYMLINK_NOFOLLOW`).
        follow: bool,
    },
}

impl<'a> Codec<'a> for Target<'a> {
    type Value = Target<'a>;
    fn put<S: Sink + ?Sized>(value: &Target<'a>, sink: &mut S) -> Result<(), DecodeError> {
        match value {
            Target::Fd(fd) => {
                u8::put(&0, sink)?;
                u32::put(fd, sink)
            }
            Target::Path { at, path, follow } => {
                u8::put(&1, sink)?;
                bool::put(follow, sink)?;
                Option::<u32>::put(at, sink)?;
                Path::put(path, sink)
            }
        }
    }
    fn get(reader: &mut Reader<'a>) -> Result<Target<'a>, DecodeError> {
        match u8::get(reader)? {
            0 => Ok(Target::Fd(u32::get(reader)?)),
            1 => Ok(Target::Path {
                follow: bool::get(reader)?,
                at: Option::<u32>::get(reader)?,
                path: Path::get(reader)?,
            }),
            _ => Err(DecodeError::BadValue),
        }
    }
}

/// The flags of an `open` request, as the wire carries them (the `flags` row of the layout).
///
/// `O_CLOEXEC` is absent on purpose: close-on-exec belongs to the client's descriptor, not to
/// the open description the server keeps, just as the kernel keeps it in the descriptor table.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct OpenOptions {
    /// Open for reading (`O_RDONLY`, `O_RDWR`).
    pub read: bool,
    /// Open for writing (`O_WRONLY`, `O_RDWR`).
    pub write: bool,
    /// Every write goes to the end (`O_APPEND`).
    pub append: bool,
    /// Truncate to zero length (`O_TRUNC`).
    pub truncate: bool,
    /// Create the file if it does not exist, with the request's `mode` (`O_CREAT`).
    pub create: bool,
    /// With `create`: fail with `EEXIST` if the name exists (`O_EXCL`).
    pub exclusive: bool,
    /// Fail with `ENOTDIR` unless the target is a directory (`O_DIRECTORY`).
    pub directory: bool,
    /// Fail with `ELOOP` if the last component is a symbolic link (`O_NOFOLLOW`).
    pub nofollow: bool,
    /// Non-blocking I/O (`O_NONBLOCK`): kept for `F_GETFL`, no effect on files in memory.
    pub nonblock: bool,
    /// Access mode 3 (`O_ACCMODE`), with `read` and `write` false: checked as `O_RDWR` is
    /// (read and write permission; a directory is `EISDIR`), yet the description grants
    /// neither, as Linux gives such a descriptor only to `ioctl`.
    pub check_read_write: bool,
    /// `O_PATH`: a description that only names the inode. Nothing is checked on it beyond
    /// the walk, and it grants no reading, writing or listing; every other flag but
    /// `directory` and `nofollow` is ignored, as Linux does.
    pub path_only: bool,
}

impl OpenOptions {
    /// The flags the engine's `open` and `create` act on.
    pub const fn engine_flags(&self) -> OpenFlags {
        OpenFlags {
            read: self.read,
            write: self.write,
            append: self.append,
            truncate: self.truncate,
            exclusive: self.exclusive,
            directory: self.directory,
            // Only the kernel opens a file to run it (FUSE passes `__FMODE_EXEC`); a program's
            // `open` cannot ask for it.
            exec: false,
        }
    }

    /// Decodes Linux's `open(2)` flag word, as `open` and FUSE receive it: the one decoding
    /// of it every frontend uses. Access mode 3 (`O_ACCMODE`) is `check_read_write`. With
    /// `O_PATH` only `O_DIRECTORY` and `O_NOFOLLOW` count, as on Linux. Flags with no option
    /// here (`O_CLOEXEC`, `O_LARGEFILE`, `O_NOCTTY`, `O_SYNC`, ...) are ignored; `O_TMPFILE`,
    /// which holds `O_DIRECTORY`'s bit, is the caller's to refuse before.
    pub fn from_linux(flags: i32) -> OpenOptions {
        use linux::*;
        if flags & O_PATH != 0 {
            return OpenOptions {
                path_only: true,
                directory: flags & O_DIRECTORY != 0,
                nofollow: flags & O_NOFOLLOW != 0,
                ..OpenOptions::default()
            };
        }
        let access = flags & O_ACCMODE;
        OpenOptions {
            read: access == O_RDONLY || access == O_RDWR,
            write: access == O_WRONLY || access == O_RDWR,
            append: flags & O_APPEND != 0,
            truncate: flags & O_TRUNC != 0,
            create: flags & O_CREAT != 0,
            exclusive: flags & O_EXCL != 0,
            directory: flags & O_DIRECTORY != 0,
            nofollow: flags & O_NOFOLLOW != 0,
            nonblock: flags & O_NONBLOCK != 0,
            check_read_write: access == O_ACCMODE,
            path_only: false,
        }
    }

    /// The status flags `fcntl(F_GETFL)` reports for a description opened with these options,
    /// in Linux's values: the access mode (3 for `check_read_write`), `O_APPEND`,
    /// `O_NONBLOCK` and `O_DIRECTORY`, or `O_PATH` with `O_DIRECTORY`. `O_LARGEFILE`, whose
    /// value differs between ports, is the caller's to add.
    pub fn to_linux(&self) -> i32 {
        use linux::*;
        let directory = if self.directory { O_DIRECTORY } else { 0 };
        if self.path_only {
            return O_PATH | directory;
        }
        let access = match (self.read, self.write) {
            (true, true) => O_RDWR,
            (false, true) => O_WRONLY,
            (false, false) if self.check_read_write => O_ACCMODE,
            _ => O_RDONLY,
        };
        let append = if self.append { O_APPEND } else { 0 };
        let nonblock = if self.nonblock { O_NONBLOCK } else { 0 };
        access | append | nonblock | directory
    }
}

/// Linux's values of the `open(2)` flags [`OpenOptions::from_linux`] reads (core has no
/// libc). They are the kernel's generic ones (`asm-generic/fcntl.h`: x86-64, RISC-V, s390,
/// LoongArch), but for `O_DIRECTORY` and `O_NOFOLLOW`, which the ARM and PowerPC ports
/// define apart and `target_arch` picks. Alpha, MIPS, PA-RISC and SPARC move others too and
/// are not covered. The frontends, which have libc, test that these decode libc's values.
mod linux {
    pub(super) const O_ACCMODE: i32 = 0o3;
    pub(super) const O_RDONLY: i32 = 0o0;
    pub(super) const O_WRONLY: i32 = 0o1;
    pub(super) const O_RDWR: i32 = 0o2;
    pub(super) const O_CREAT: i32 = 0o100;
    pub(super) const O_EXCL: i32 = 0o200;
    pub(super) const O_TRUNC: i32 = 0o1000;
    pub(super) const O_APPEND: i32 = 0o2000;
    pub(super) const O_NONBLOCK: i32 = 0o4000;
    pub(super) const O_PATH: i32 = 0o10000000;
    /// The ports whose `O_DIRECTORY` and `O_NOFOLLOW` are not the generic ones.
    const ARM_OR_POWERPC: bool = cfg!(any(
        target_arch = "arm",
        target_arch = "aarch64",
        target_arch = "powerpc",
        target_arch = "powerpc64"
    ));
    pub(super) const O_DIRECTORY: i32 = if ARM_OR_POWERPC { 0o40000 } else { 0o200000 };
    pub(super) const O_NOFOLLOW: i32 = if ARM_OR_POWERPC { 0o100000 } else { 0o400000 };
}

flags_codec!(OpenOptions: u32 {
    read = 1 << 0,
    write = 1 << 1,
    append = 1 << 2,
    truncate = 1 << 3,
    create = 1 << 4,
    exclusive = 1 << 5,
    directory = 1 << 6,
    nofollow = 1 << 7,
    nonblock = 1 << 8,
    check_read_write = 1 << 9,
    path_only = 1 << 10,
});

/// Where an `lseek` offset counts from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Whence {
    /// From the start (`SEEK_SET`).
    Set,
    /// From the current offset (`SEEK_CUR`).
    Cur,
    /// From the end (`SEEK_END`).
    End,
    /// The next data at or after the offset (`SEEK_DATA`).
    Data,
    /// The next hole at or after the offset (`SEEK_HOLE`).
    Hole,
}

/// Declares [`Request`] and, from the same list, its opcodes, names, encoder and decoder, so
/// none can disagree with another. Fields are encoded in the order they are declared, each by
/// the codec after `as`.
macro_rules! requests {
    (
        $(#[$meta:meta])*
        pub enum Request<'a> {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $code:literal $({
                    $( $(#[$fmeta:meta])* $field:ident: $ty:ty as $codec:ty ),* $(,)?
                })?,
            )*
        }
    ) => {
        $(#[$meta])*
        pub enum Request<'a> {
            $( $(#[$vmeta])* $variant $({ $( $(#[$fmeta])* $field: $ty ),* })?, )*
        }

        impl Request<'_> {
            /// The opcode of this request's header.
            pub const fn opcode(&self) -> u8 {
                match self {
                    $(Request::$variant { .. } => $code,)*
                }
            }

            /// Every kind of request by its variant's name, in the order declared: what a table
            /// kept per kind (the daemons' metrics) is labelled with.
            pub const NAMES: [&'static str; [$($code),*].len()] = [$(stringify!($variant)),*];

            /// This request's kind as a position in [`Request::NAMES`]: dense from 0, unlike
            /// the opcodes.
            pub const fn index(&self) -> usize {
                enum Index {
                    $($variant,)*
                }
                match self {
                    $(Request::$variant { .. } => Index::$variant as usize,)*
                }
            }
        }

        pub(super) fn put_request<'a, S: Sink + ?Sized>(
            request: &Request<'a>,
            sink: &mut S,
        ) -> Result<(), DecodeError> {
            match request {
                $(Request::$variant $({ $($field),* })? => {
                    $($( <$codec>::put($field, sink)?; )*)?
                })*
            }
            Ok(())
        }

        pub(super) fn get_request<'a>(
            opcode: u8,
            reader: &mut Reader<'a>,
        ) -> Result<Request<'a>, DecodeError> {
            Ok(match opcode {
                $($code => Request::$variant $({ $( $field: <$codec>::get(reader)? ),* })?,)*
                _ => return Err(DecodeError::UnknownOpcode(opcode)),
            })
        }
    };
}

requests! {
    /// A request. The reply each expects is [`Response::Err`] or the kind its doc names.
    ///
    /// [`Response::Err`]: super::Response::Err
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Request<'a> {
        /// Opens a session speaking wire version `version`. Replies `Ok`.
        Hello = 0x01 {
            /// The highest wire version the client speaks.
            version: u8 as u8,
        },
        /// Attaches this channel to the descriptions a parent shared with [`Request::Fork`].
        /// Replies `Ok`.
        Attach = 0x02 {
            /// The token the parent's `Fork` returned.
            token: u64 as u64,
        },
        /// Prepares a `fork`: the server keeps this client's descriptions for a child that
        /// attaches. Replies `Token`.
        Fork = 0x03,

        /// `stat`, `lstat`, `fstat`, `fstatat`. Replies `Attr`.
        Stat = 0x10 {
            /// What to inspect.
            target: Target<'a> as Target<'a>,
        },
        /// `stat`, `lstat` and `fstatat` of a path, for a client that keeps answers. Replies
        /// `Stamped` when the server can say what the answer depends on (a path walked from
        /// the root, a server that counts changes and need not see every call, no change under
        /// way in what the walk read), else what `Stat` replies.
        StatStamped = 0x23 {
            /// What to inspect: a path (an `Fd` target is answered as `Stat` answers it).
            target: Target<'a> as Target<'a>,
        },
        /// The stamped answers to `lstat` of every name in a directory, for a client that keeps
        /// answers: what `StatStamped` of each would say, and of any other name (`ENOENT`).
        /// Replies `StampedDir`; `Err` when the server will not (the `StatStamped` rules, a
        /// directory the caller may not list, more than `MAX_ENTRIES` entries).
        StatDir = 0x24 {
            /// The directory: a path, a final link followed.
            target: Target<'a> as Target<'a>,
        },
        /// `access`, `faccessat`. Replies `Ok`.
        Access = 0x11 {
            /// What to check.
            target: Target<'a> as Target<'a>,
            /// The access asked about.
            mask: AccessMask as AccessMask,
            /// Check with the effective rather than the real ids (`AT_EACCESS`).
            effective: bool as bool,
        },
        /// `open`, `openat`, `creat`. Replies `Opened`, or `Prefetched` when `prefetch` asked
        /// for content and the server could give it, or `OpenedDir` when `prefetch` is not 0
        /// and a directory was opened for reading by a server that counts listing changes.
        Open = 0x12 {
            /// Directory description `path` starts from; `None`: the served root.
            at: Option<u32> as Option<u32>,
            /// The file.
            path: &'a [u8] as Path,
            /// How to open it.
            flags: OpenOptions as OpenOptions,
            /// Permission bits of a created file, the client's umask applied.
            mode: u32 as Perm,
            /// Bytes of content from offset 0 the client would like with the answer, read as
            /// a `Pread` would (the offset stays), when a regular file is opened only for
            /// reading; at most `MAX_IO`, 0 for none.
            prefetch: u32 as Max<MAX_IO_U32>,
            /// The inode whose first bytes the client already holds, from an earlier answer
            /// for this path (0: none). When the path still names it and its content version
            /// is still `known_version`, the answer carries no bytes: the client's stand.
            known_ino: u64 as u64,
            /// The content version of the bytes the client holds.
            known_version: u64 as u64,
        },
        /// `mkdir`, `mkdirat`. Replies `Ok`.
        Mkdir = 0x13 {
            /// Directory description `path` starts from; `None`: the served root.
            at: Option<u32> as Option<u32>,
            /// The new directory.
            path: &'a [u8] as Path,
            /// Its permission bits, the client's umask applied.
            mode: u32 as Perm,
        },
        /// `rmdir`, `unlinkat(AT_REMOVEDIR)`. Replies `Ok`.
        Rmdir = 0x14 {
            /// Directory description `path` starts from; `None`: the served root.
            at: Option<u32> as Option<u32>,
            /// The directory to remove.
            path: &'a [u8] as Path,
        },
        /// `unlink`, `unlinkat`. Replies `Ok`.
        Unlink = 0x15 {
            /// Directory description `path` starts from; `None`: the served root.
            at: Option<u32> as Option<u32>,
            /// The name to remove.
            path: &'a [u8] as Path,
        },
        /// `rename`, `renameat`, `renameat2`. Replies `Ok`.
        Rename = 0x16 {
            /// Directory description `old_path` starts from; `None`: the served root.
            old_at: Option<u32> as Option<u32>,
            /// The name to move.
            old_path: &'a [u8] as Path,
            /// Directory description `new_path` starts from; `None`: the served root.
            new_at: Option<u32> as Option<u32>,
            /// Where to move it.
            new_path: &'a [u8] as Path,
            /// What to do with an existing `new_path`.
            mode: RenameMode as RenameMode,
        },
        /// `link`, `linkat` (with `AT_SYMLINK_FOLLOW` or `AT_EMPTY_PATH`). Replies `Ok`.
        Link = 0x17 {
            /// The existing inode.
            old: Target<'a> as Target<'a>,
            /// Directory description `new_path` starts from; `None`: the served root.
            new_at: Option<u32> as Option<u32>,
            /// The new name.
            new_path: &'a [u8] as Path,
        },
        /// `symlink`, `symlinkat`. Replies `Ok`.
        Symlink = 0x18 {
            /// The link's content: 1 to `PATH_MAX` bytes, no NUL; stored as it is.
            target: &'a [u8] as Path,
            /// Directory description `path` starts from; `None`: the served root.
            at: Option<u32> as Option<u32>,
            /// The new link.
            path: &'a [u8] as Path,
        },
        /// `readlink`, `readlinkat`. Replies `Data` (at most `max` bytes, truncated as
        /// `readlink` truncates).
        Readlink = 0x19 {
            /// Directory description `path` starts from; `None`: the served root.
            at: Option<u32> as Option<u32>,
            /// The link.
            path: &'a [u8] as Path,
            /// The client's buffer size, at most `PATH_MAX` (a client clamps larger ones).
            max: u32 as Max<PATH_MAX_U32>,
        },
        /// `truncate`, `ftruncate`. Replies `Ok`.
        Truncate = 0x1a {
            /// The file.
            target: Target<'a> as Target<'a>,
            /// The new size.
            size: u64 as u64,
        },
        /// `chmod`, `fchmod`, `fchmodat`. Replies `Ok`.
        Chmod = 0x1b {
            /// The inode.
            target: Target<'a> as Target<'a>,
            /// The new permission bits.
            mode: u32 as Perm,
        },
        /// `chown`, `lchown`, `fchown`, `fchownat`. Replies `Ok`.
        Chown = 0x1c {
            /// The inode.
            target: Target<'a> as Target<'a>,
            /// The new owner; `None` (the `-1` of `chown`) keeps it.
            uid: Option<u32> as Option<u32>,
            /// The new group; `None` keeps it.
            gid: Option<u32> as Option<u32>,
        },
        /// `utimensat`, `futimens` (and `utimes` and friends through them). Replies `Ok`.
        Utimens = 0x1d {
            /// The inode.
            target: Target<'a> as Target<'a>,
            /// The new access time.
            atime: TimeSet as TimeSet,
            /// The new modification time.
            mtime: TimeSet as TimeSet,
        },
        /// `statfs`, `fstatfs`, `statvfs`. Replies `StatFs`.
        Statfs = 0x1e {
            /// Any inode of the filesystem.
            target: Target<'a> as Target<'a>,
        },
        /// `getxattr`, `lgetxattr`, `fgetxattr`. Replies `Data`, or `Size` when `max` is 0.
        GetXattr = 0x1f {
            /// The inode.
            target: Target<'a> as Target<'a>,
            /// The attribute: 1 to `XATTR_NAME_MAX` bytes, no NUL.
            name: &'a [u8] as XattrName,
            /// The client's buffer size, at most `XATTR_SIZE_MAX`; 0 asks for the size.
            max: u32 as Max<XATTR_SIZE_MAX_U32>,
        },
        /// `setxattr`, `lsetxattr`, `fsetxattr`. Replies `Ok`.
        SetXattr = 0x20 {
            /// The inode.
            target: Target<'a> as Target<'a>,
            /// The attribute: 1 to `XATTR_NAME_MAX` bytes, no NUL.
            name: &'a [u8] as XattrName,
            /// The value: at most `XATTR_SIZE_MAX` bytes.
            value: &'a [u8] as XattrValue,
            /// What to do when the attribute exists or does not.
            mode: XattrMode as XattrMode,
        },
        /// `listxattr`, `llistxattr`, `flistxattr`. Replies `Data` (NUL-terminated names), or
        /// `Size` when `max` is 0.
        ListXattr = 0x21 {
            /// The inode.
            target: Target<'a> as Target<'a>,
            /// The client's buffer size, at most `XATTR_SIZE_MAX`; 0 asks for the size.
            max: u32 as Max<XATTR_SIZE_MAX_U32>,
        },
        /// `removexattr`, `lremovexattr`, `fremovexattr`. Replies `Ok`.
        RemoveXattr = 0x22 {
            /// The inode.
            target: Target<'a> as Target<'a>,
            /// The attribute: 1 to `XATTR_NAME_MAX` bytes, no NUL.
            name: &'a [u8] as XattrName,
        },

        /// `read`, `readv`: at the description's offset, which moves. Replies `Data`.
        Read = 0x30 {
            /// The description.
            fd: u32 as u32,
            /// Most bytes to read, at most `MAX_IO`.
            len: u32 as Max<MAX_IO_U32>,
        },
        /// `pread`, `preadv`: at `offset`; the description's offset stays. Replies `Data`.
        Pread = 0x31 {
            /// The description.
            fd: u32 as u32,
            /// Where to read.
            offset: u64 as u64,
            /// Most bytes to read, at most `MAX_IO`.
            len: u32 as Max<MAX_IO_U32>,
        },
        /// `write`, `writev`: at the description's offset (or the end with `O_APPEND`).
        /// Replies `Size`, the count written.
        Write = 0x32 {
            /// The description.
            fd: u32 as u32,
            /// The bytes, at most `MAX_IO`.
            data: &'a [u8] as Data,
        },
        /// `pwrite`, `pwritev`. Replies `Size`, the count written.
        Pwrite = 0x33 {
            /// The description.
            fd: u32 as u32,
            /// Where to write.
            offset: u64 as u64,
            /// The bytes, at most `MAX_IO`.
            data: &'a [u8] as Data,
        },
        /// `lseek`. Replies `Offset`. On a directory description it is also `rewinddir`
        /// (`Set` to 0), `telldir` (`Cur` by 0: the readdir cookie) and `seekdir` (`Set` to a
        /// cookie), so no other directory-position request exists.
        Lseek = 0x34 {
            /// The description.
            fd: u32 as u32,
            /// The offset, relative to `whence`.
            offset: i64 as i64,
            /// Where `offset` counts from.
            whence: Whence as Whence,
        },
        /// `fsync`, `fdatasync`. Replies `Ok`.
        Fsync = 0x35 {
            /// The description.
            fd: u32 as u32,
            /// Only data, not metadata (`fdatasync`).
            datasync: bool as bool,
        },
        /// `fallocate`, `posix_fallocate`. Replies `Ok`.
        Fallocate = 0x36 {
            /// The description.
            fd: u32 as u32,
            /// What to do with the range.
            mode: FallocateMode as FallocateMode,
            /// Start of the range.
            offset: u64 as u64,
            /// Length of the range.
            len: u64 as u64,
        },
        /// `dup`, `dup2`, `dup3`, `fcntl(F_DUPFD)`: a second id for the same description.
        /// Replies `Fd`.
        Dup = 0x37 {
            /// The description.
            fd: u32 as u32,
        },
        /// `close`: drops this id; the description goes with its last id. Replies `Ok`.
        Close = 0x38 {
            /// The description.
            fd: u32 as u32,
        },
        /// `getdents64` (under `readdir`): entries from the description's position, which
        /// moves past them. Replies `Dirents`, empty at the end.
        Getdents = 0x39 {
            /// A directory description.
            fd: u32 as u32,
            /// Most bytes of entries (as [`DirentList`](super::DirentList) counts them), at
            /// most `MAX_IO`.
            max: u32 as Max<MAX_IO_U32>,
        },
        /// `fcntl(F_GETFL)`. Replies `Flags`.
        GetFlags = 0x3a {
            /// The description.
            fd: u32 as u32,
        },
        /// `fcntl(F_SETFL)`: the only status flags that can change. Replies `Ok`.
        SetFlags = 0x3b {
            /// The description.
            fd: u32 as u32,
            /// `O_APPEND`.
            append: bool as bool,
            /// `O_NONBLOCK`.
            nonblock: bool as bool,
        },
        /// Hands the description to the kernel before an `exec` of a program that will not
        /// speak the ring: the server opens the same file through its FUSE mount at the
        /// description's offset and sends that kernel descriptor over the channel's socket;
        /// from then on the description's offset is the kernel description's, shared with
        /// whoever holds the descriptor. Replies `Ok` once the descriptor is on its way;
        /// `EOPNOTSUPP` from a server with no mount.
        Handoff = 0x3c {
            /// The description.
            fd: u32 as u32,
        },
        /// Shows the regular file a description opened for reading in a mapping of the
        /// client's own: the server places the file's data in a memory file of its own and
        /// sends a read-only descriptor of it over the channel's socket, as for `Handoff`.
        /// Its first page holds the file's size ([`MAPPED_SIZE_AT`](super::MAPPED_SIZE_AT))
        /// and a count of its changes ([`MAPPED_CHANGES_AT`](super::MAPPED_CHANGES_AT)); the
        /// file's byte `n` is the memory file's byte `MAPPED_HEADER + n`, for `n` below
        /// [`MAPPED_SPAN`](super::MAPPED_SPAN). Replies `Ok` once the descriptor is on its
        /// way; `EAGAIN` while the server is still moving a large file's data in (a step per
        /// ask: ask again later); `EBADF` for a description not open for reading;
        /// `EOPNOTSUPP` from a server that shows no file this way; `ENOSPC` when it shows as
        /// many as it may.
        MapFile = 0x3e {
            /// The description.
            fd: u32 as u32,
        },
        /// `copy_file_range` between two regular files open in this session, copied by the
        /// server (the bytes never cross the channel). Replies `Size`: the bytes copied, 0 at
        /// the input's end.
        CopyRange = 0x3d {
            /// The description read, open for reading.
            fd_in: u32 as u32,
            /// Where to read; `None`: at its offset, which moves past what was copied.
            off_in: Option<u64> as Option<u64>,
            /// The description written, open for writing and not for appending.
            fd_out: u32 as u32,
            /// Where to write; `None`: at its offset, which moves likewise.
            off_out: Option<u64> as Option<u64>,
            /// The most bytes to copy.
            len: u64 as u64,
        },
        /// `fcntl(F_GETLK)`, `F_OFD_GETLK`: the first lock that would stand in the way of a
        /// record lock on `start..=end` (`end` at `i64::MAX`: to the end of the file). Replies
        /// `Lock`, or `Ok` when nothing would.
        GetLock = 0x48 {
            /// The description.
            fd: u32 as u32,
            /// An OFD lock (owned by the description) rather than a POSIX one (the process).
            ofd: bool as bool,
            /// A write lock rather than a read lock.
            write: bool as bool,
            /// First byte.
            start: u64 as u64,
            /// Last byte.
            end: u64 as u64,
        },
        /// `fcntl(F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW)`, `flock`: sets or clears a
        /// lock. Replies `Ok` once it is held (or cleared), `EAGAIN` when something stands in
        /// the way and `wait` is false, `EDEADLK` when waiting would deadlock, or `Token` when
        /// the server parked the request: the client then asks with [`Request::LockWait`].
        SetLock = 0x49 {
            /// The description.
            fd: u32 as u32,
            /// 0: POSIX record lock (owned by the process), 1: OFD record lock, 2: `flock`.
            scope: u8 as u8,
            /// 0: read (shared), 1: write (exclusive), 2: unlock.
            kind: u8 as u8,
            /// First byte (0 for `flock`).
            start: u64 as u64,
            /// Last byte (`i64::MAX` for `flock`, and for "to the end of the file").
            end: u64 as u64,
            /// Wait for the lock rather than fail with `EAGAIN`.
            wait: bool as bool,
        },
        /// How a parked [`Request::SetLock`] stands: `Ok` once granted, its error once refused
        /// or given up, `Token` while it still waits. With `cancel`, gives it up first unless
        /// it was granted already (`EINTR` then, as a signal ends the kernel's wait).
        LockWait = 0x4a {
            /// The token `SetLock` replied.
            token: u64 as u64,
            /// Give the wait up.
            cancel: bool as bool,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::linux::*;
    use super::*;

    fn decoded(flags: i32) -> OpenOptions {
        OpenOptions::from_linux(flags)
    }

    /// `OpenOptions::default()` with `set` applied.
    fn only(set: impl Fn(&mut OpenOptions)) -> OpenOptions {
        let mut options = OpenOptions::default();
        set(&mut options);
        options
    }

    #[test]
    fn the_access_mode_decodes() {
        assert_eq!(decoded(O_RDONLY), only(|o| o.read = true));
        assert_eq!(decoded(O_WRONLY), only(|o| o.write = true));
        assert_eq!(decoded(O_RDWR), only(|o| (o.read, o.write) = (true, true)));
        assert_eq!(decoded(O_ACCMODE), only(|o| o.check_read_write = true));
    }

    #[test]
    fn each_flag_sets_its_option_alone() {
        type Set = fn(&mut OpenOptions);
        let cases: [(i32, Set); 7] = [
            (O_APPEND, |o| o.append = true),
            (O_TRUNC, |o| o.truncate = true),
            (O_CREAT, |o| o.create = true),
            (O_EXCL, |o| o.exclusive = true),
            (O_DIRECTORY, |o| o.directory = true),
            (O_NOFOLLOW, |o| o.nofollow = true),
            (O_NONBLOCK, |o| o.nonblock = true),
        ];
        for (flag, set) in cases {
            let expected = only(|o| {
                o.read = true;
                set(o);
            });
            assert_eq!(decoded(O_RDONLY | flag), expected, "{flag:#o}");
        }
    }

    #[test]
    fn o_path_keeps_only_directory_and_nofollow() {
        let path = only(|o| o.path_only = true);
        assert_eq!(decoded(O_PATH), path);
        let ignored = O_RDWR | O_APPEND | O_TRUNC | O_CREAT | O_EXCL | O_NONBLOCK;
        assert_eq!(decoded(O_PATH | ignored), path);
        assert_eq!(decoded(O_PATH | O_ACCMODE), path);
        let named = only(|o| (o.path_only, o.directory, o.nofollow) = (true, true, true));
        assert_eq!(decoded(O_PATH | O_DIRECTORY | O_NOFOLLOW), named);
    }

    #[test]
    fn flags_without_an_option_are_ignored() {
        // O_NOCTTY, O_CLOEXEC and O_SYNC: one value on every port covered.
        for flag in [0o400, 0o2000000, 0o4010000] {
            assert_eq!(decoded(O_WRONLY | flag), decoded(O_WRONLY), "{flag:#o}");
        }
    }

    #[test]
    fn the_engine_flags_come_from_the_options() {
        let flags = O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_DIRECTORY;
        let expected = OpenFlags {
            append: true,
            exclusive: true,
            directory: true,
            ..OpenFlags::READ_WRITE
        };
        assert_eq!(decoded(flags).engine_flags(), expected);
        let truncate = decoded(O_WRONLY | O_TRUNC).engine_flags();
        assert!(truncate.write && truncate.truncate && !truncate.read);
    }

    #[test]
    fn status_flags_read_back_as_they_were_decoded() {
        // Every combination of the flags F_GETFL keeps survives a decode and an encode.
        for access in [O_RDONLY, O_WRONLY, O_RDWR, O_ACCMODE] {
            for extra in [0, O_APPEND, O_NONBLOCK, O_DIRECTORY, O_APPEND | O_NONBLOCK] {
                let flags = access | extra;
                assert_eq!(decoded(flags).to_linux(), flags, "{flags:#o}");
            }
        }
        assert_eq!(decoded(O_PATH | O_RDWR).to_linux(), O_PATH);
        assert_eq!(
            decoded(O_PATH | O_DIRECTORY).to_linux(),
            O_PATH | O_DIRECTORY
        );
        // Those F_GETFL does not keep are not reported.
        assert_eq!(
            decoded(O_WRONLY | O_CREAT | O_TRUNC | O_EXCL).to_linux(),
            O_WRONLY
        );
    }
}
