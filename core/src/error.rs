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
    /// `EMFILE`: the caller holds as many open descriptions as it may.
    TooManyOpenFiles,
    /// `EAGAIN`: the caller has reached a limit on what it may make a server hold for it
    /// (pending forks, say); it may try again once some is released.
    TryAgain,
    /// `EROFS`: the filesystem refuses changes (a policy said so, e.g. a loaded program).
    ReadOnlyFilesystem,
    /// `ETXTBSY`: the file is being executed, so it may not be opened for writing or
    /// truncated.
    TextBusy,
    /// `EDEADLK`: waiting for a record lock would deadlock (the holder waits on the caller).
    Deadlock,
    /// `EINTR`: a wait (for a lock) was interrupted by a signal before it finished.
    Interrupted,
}

impl Errno {
    /// Every variant, in declaration order: for tables indexed by errno (metrics) and for
    /// tests that must cover them all.
    pub const ALL: [Errno; 28] = [
        Errno::NotPermitted,
        Errno::NotFound,
        Errno::Io,
        Errno::NoSuchDeviceOrAddress,
        Errno::ArgumentListTooLong,
        Errno::BadHandle,
        Errno::PermissionDenied,
        Errno::Busy,
        Errno::Exists,
        Errno::NotADirectory,
        Errno::IsADirectory,
        Errno::InvalidArgument,
        Errno::FileTooLarge,
        Errno::NoSpace,
        Errno::TooManyLinks,
        Errno::Range,
        Errno::NameTooLong,
        Errno::NotEmpty,
        Errno::TooManySymlinks,
        Errno::NoData,
        Errno::NotSupported,
        Errno::Overflow,
        Errno::TooManyOpenFiles,
        Errno::TryAgain,
        Errno::ReadOnlyFilesystem,
        Errno::TextBusy,
        Errno::Deadlock,
        Errno::Interrupted,
    ];

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
            Errno::TooManyOpenFiles => "EMFILE",
            Errno::TryAgain => "EAGAIN",
            Errno::ReadOnlyFilesystem => "EROFS",
            Errno::TextBusy => "ETXTBSY",
            Errno::Deadlock => "EDEADLK",
            Errno::Interrupted => "EINTR",
        }
    }

    /// The Linux errno number, in the generic numbering that x86-64, AArch64 and RISC-V share
    /// (`asm-generic/errno-base.h` and `errno.h`). The ring carries errors as this number.
    pub const fn code(self) -> i32 {
        match self {
            Errno::NotPermitted => linux::EPERM,
            Errno::NotFound => linux::ENOENT,
            Errno::Io => linux::EIO,
            Errno::NoSuchDeviceOrAddress => linux::ENXIO,
            Errno::ArgumentListTooLong => linux::E2BIG,
            Errno::BadHandle => linux::EBADF,
            Errno::PermissionDenied => linux::EACCES,
            Errno::Busy => linux::EBUSY,
            Errno::Exists => linux::EEXIST,
            Errno::NotADirectory => linux::ENOTDIR,
            Errno::IsADirectory => linux::EISDIR,
            Errno::InvalidArgument => linux::EINVAL,
            Errno::FileTooLarge => linux::EFBIG,
            Errno::NoSpace => linux::ENOSPC,
            Errno::TooManyLinks => linux::EMLINK,
            Errno::Range => linux::ERANGE,
            Errno::NameTooLong => linux::ENAMETOOLONG,
            Errno::NotEmpty => linux::ENOTEMPTY,
            Errno::TooManySymlinks => linux::ELOOP,
            Errno::NoData => linux::ENODATA,
            Errno::Overflow => linux::EOVERFLOW,
            Errno::TooManyOpenFiles => linux::EMFILE,
            Errno::TryAgain => linux::EAGAIN,
            Errno::TextBusy => linux::ETXTBSY,
            Errno::Deadlock => linux::EDEADLK,
            Errno::Interrupted => linux::EINTR,
            Errno::NotSupported => linux::EOPNOTSUPP,
            Errno::ReadOnlyFilesystem => linux::EROFS,
        }
    }

    /// The variant whose [`code`](Errno::code) is `code`, if any.
    pub const fn from_code(code: i32) -> Option<Errno> {
        Some(match code {
            linux::EPERM => Errno::NotPermitted,
            linux::ENOENT => Errno::NotFound,
            linux::EIO => Errno::Io,
            linux::ENXIO => Errno::NoSuchDeviceOrAddress,
            linux::E2BIG => Errno::ArgumentListTooLong,
            linux::EBADF => Errno::BadHandle,
            linux::EACCES => Errno::PermissionDenied,
            linux::EBUSY => Errno::Busy,
            linux::EEXIST => Errno::Exists,
            linux::ENOTDIR => Errno::NotADirectory,
            linux::EISDIR => Errno::IsADirectory,
            linux::EINVAL => Errno::InvalidArgument,
            linux::EFBIG => Errno::FileTooLarge,
            linux::ENOSPC => Errno::NoSpace,
            linux::EMLINK => Errno::TooManyLinks,
            linux::ERANGE => Errno::Range,
            linux::ENAMETOOLONG => Errno::NameTooLong,
            linux::ENOTEMPTY => Errno::NotEmpty,
            linux::ELOOP => Errno::TooManySymlinks,
            linux::ENODATA => Errno::NoData,
            linux::EOVERFLOW => Errno::Overflow,
            linux::EMFILE => Errno::TooManyOpenFiles,
            linux::EAGAIN => Errno::TryAgain,
            linux::ETXTBSY => Errno::TextBusy,
            linux::EDEADLK => Errno::Deadlock,
            linux::EINTR => Errno::Interrupted,
            linux::EOPNOTSUPP => Errno::NotSupported,
            linux::EROFS => Errno::ReadOnlyFilesystem,
            _ => return None,
        })
    }
}

/// Linux errno numbers (generic numbering).
mod linux {
    pub(super) const EPERM: i32 = 1;
    pub(super) const EINTR: i32 = 4;
    pub(super) const ENOENT: i32 = 2;
    pub(super) const EIO: i32 = 5;
    pub(super) const ENXIO: i32 = 6;
    pub(super) const E2BIG: i32 = 7;
    pub(super) const EBADF: i32 = 9;
    pub(super) const EACCES: i32 = 13;
    pub(super) const EBUSY: i32 = 16;
    pub(super) const ETXTBSY: i32 = 26;
    pub(super) const EEXIST: i32 = 17;
    pub(super) const ENOTDIR: i32 = 20;
    pub(super) const EISDIR: i32 = 21;
    pub(super) const EINVAL: i32 = 22;
    pub(super) const EMFILE: i32 = 24;
    pub(super) const EAGAIN: i32 = 11;
    pub(super) const EFBIG: i32 = 27;
    pub(super) const ENOSPC: i32 = 28;
    pub(super) const EROFS: i32 = 30;
    pub(super) const EMLINK: i32 = 31;
    pub(super) const ERANGE: i32 = 34;
    pub(super) const EDEADLK: i32 = 35;
    pub(super) const ENAMETOOLONG: i32 = 36;
    pub(super) const ENOTEMPTY: i32 = 39;
    pub(super) const ELOOP: i32 = 40;
    pub(super) const ENODATA: i32 = 61;
    pub(super) const EOVERFLOW: i32 = 75;
    pub(super) const EOPNOTSUPP: i32 = 95;
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::error::Error for Errno {}

/// The result of a filesystem operation.
pub type Result<T> = core::result::Result<T, Errno>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A new variant does not compile here until it has a place in `Errno::ALL`.
    fn position(e: Errno) -> usize {
        match e {
            Errno::NotPermitted => 0,
            Errno::NotFound => 1,
            Errno::Io => 2,
            Errno::NoSuchDeviceOrAddress => 3,
            Errno::ArgumentListTooLong => 4,
            Errno::BadHandle => 5,
            Errno::PermissionDenied => 6,
            Errno::Busy => 7,
            Errno::Exists => 8,
            Errno::NotADirectory => 9,
            Errno::IsADirectory => 10,
            Errno::InvalidArgument => 11,
            Errno::FileTooLarge => 12,
            Errno::NoSpace => 13,
            Errno::TooManyLinks => 14,
            Errno::Range => 15,
            Errno::NameTooLong => 16,
            Errno::NotEmpty => 17,
            Errno::TooManySymlinks => 18,
            Errno::NoData => 19,
            Errno::NotSupported => 20,
            Errno::Overflow => 21,
            Errno::TooManyOpenFiles => 22,
            Errno::TryAgain => 23,
            Errno::ReadOnlyFilesystem => 24,
            Errno::TextBusy => 25,
            Errno::Deadlock => 26,
            Errno::Interrupted => 27,
        }
    }

    #[test]
    fn all_lists_every_variant_once() {
        for (i, e) in Errno::ALL.iter().enumerate() {
            assert_eq!(position(*e), i, "{e:?}");
        }
    }
}
