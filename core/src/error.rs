//! The error type of every filesystem operation.
//!
//! [`Errno`] names the POSIX conditions the engine can report. It is deliberately not a raw
//! number: each frontend maps it to its own wire at its edge, in one exhaustive `match`, so a
//! new variant is a compile error there rather than a silently wrong errno.

use core::fmt;

/// A failed filesystem operation, named after the POSIX errno it stands for.
///
/// Deliberately exhaustive (not `#[non_exhaustive]`): each frontend maps it with one `match`
/// and no catch-all arm, so a new variant must be a compile error at every edge.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Errno {
    /// `EPERM`: the operation is not permitted to this caller (ownership, not mode bits).
    NotPermitted,
    /// `ENOENT`: no such file or directory.
    NotFound,
    /// `EIO`: the block store failed.
    Io,
    /// `ENXIO`: `SEEK_DATA`/`SEEK_HOLE` at or past the end of the file.
    NoSuchDeviceOrAddress,
    /// `E2BIG`: an extended attribute value is larger than the engine accepts.
    ArgumentListTooLong,
    /// `EBADF`: the handle is unknown or not open for this kind of access.
    BadHandle,
    /// `EACCES`: the mode bits deny the requested access.
    PermissionDenied,
    /// `EBUSY`: the target is in use in a way that forbids the operation.
    Busy,
    /// `EEXIST`: the name already exists.
    Exists,
    /// `ENOTDIR`: a directory was required.
    NotADirectory,
    /// `EISDIR`: the target is a directory and the operation needs something else.
    IsADirectory,
    /// `EINVAL`: an argument is invalid (bad name, bad flags, moving a directory under itself).
    InvalidArgument,
    /// `EFBIG`: the file would grow past the largest size the engine supports.
    FileTooLarge,
    /// `ENOSPC`: the block store or the inode table is full.
    NoSpace,
    /// `EMLINK`: the inode already has the largest number of links the engine supports.
    TooManyLinks,
    /// `ERANGE`: the caller's buffer is too small, or an xattr name is too long.
    Range,
    /// `ENAMETOOLONG`: a name is longer than `NAME_MAX` or a path longer than `PATH_MAX`.
    NameTooLong,
    /// `ENOTEMPTY`: the directory is not empty.
    NotEmpty,
    /// `ELOOP`: too many symbolic links were met while resolving a path.
    TooManySymlinks,
    /// `ENODATA`: no such extended attribute.
    NoData,
    /// `EOPNOTSUPP`: the engine does not support this operation or attribute namespace.
    NotSupported,
    /// `EOVERFLOW`: a value does not fit the caller's type.
    Overflow,
}

impl Errno {
    /// The conventional symbolic name, e.g. `"ENOENT"`.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::NotPermitted => "EPERM",
            Errno::NotFound => "ENOENT",
            Errno::Io => "EIO",
            Errno::NoSuchDeviceOrAddress => "ENXIO",
            Errno::ArgumentListTooLong => "E2BIG",
            Errno::BadHandle => "EBADF",
            Errno::PermissionDenied => "EACCES",
            Errno::Busy => "EBUSY",
            Errno::Exists => "EEXIST",
            Errno::NotADirectory => "ENOTDIR",
            Errno::IsADirectory => "EISDIR",
            Errno::InvalidArgument => "EINVAL",
            Errno::FileTooLarge => "EFBIG",
            Errno::NoSpace => "ENOSPC",
            Errno::TooManyLinks => "EMLINK",
            Errno::Range => "ERANGE",
            Errno::NameTooLong => "ENAMETOOLONG",
            Errno::NotEmpty => "ENOTEMPTY",
            Errno::TooManySymlinks => "ELOOP",
            Errno::NoData => "ENODATA",
            Errno::NotSupported => "EOPNOTSUPP",
            Errno::Overflow => "EOVERFLOW",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::error::Error for Errno {}

/// The result of a filesystem operation.
pub type Result<T> = core::result::Result<T, Errno>;
