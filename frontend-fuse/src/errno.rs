//! The one place where engine errors become kernel errno values.
//!
//! Core numbers its errors too, in [`Errno::code`]: the Linux generic numbering the ring
//! carries. This table does not derive from it (`from_i32(e.code())`) but stays one exhaustive
//! `match` on `libc`'s named constants, as every edge maps errors: `libc` knows the numbers of
//! the kernel this binary answers, core only the generic ones. The two are one fact on every
//! target we build, so a test below proves they agree for every variant: a slip in either table,
//! or a target whose numbers differ (where the ring's numbers would be wrong too), fails it.

use btfuse_core::Errno;

/// The Linux errno for an engine error: one arm per variant, no catch-all, so a new variant in
/// core fails to compile here until it is mapped.
pub(crate) fn to_fuse(e: Errno) -> fuser::Errno {
    let raw = match e {
        Errno::NotPermitted => libc::EPERM,
        Errno::NotFound => libc::ENOENT,
        Errno::Io => libc::EIO,
        Errno::NoSuchDeviceOrAddress => libc::ENXIO,
        Errno::ArgumentListTooLong => libc::E2BIG,
        Errno::BadHandle => libc::EBADF,
        Errno::PermissionDenied => libc::EACCES,
        Errno::Busy => libc::EBUSY,
        Errno::Exists => libc::EEXIST,
        Errno::NotADirectory => libc::ENOTDIR,
        Errno::IsADirectory => libc::EISDIR,
        Errno::InvalidArgument => libc::EINVAL,
        Errno::FileTooLarge => libc::EFBIG,
        Errno::NoSpace => libc::ENOSPC,
        Errno::TooManyLinks => libc::EMLINK,
        Errno::Range => libc::ERANGE,
        Errno::NameTooLong => libc::ENAMETOOLONG,
        Errno::NotEmpty => libc::ENOTEMPTY,
        Errno::TooManySymlinks => libc::ELOOP,
        Errno::NoData => libc::ENODATA,
        Errno::NotSupported => libc::EOPNOTSUPP,
        Errno::Overflow => libc::EOVERFLOW,
        Errno::TooManyOpenFiles => libc::EMFILE,
        Errno::TryAgain => libc::EAGAIN,
        Errno::ReadOnlyFilesystem => libc::EROFS,
        Errno::TextBusy => libc::ETXTBSY,
        Errno::Deadlock => libc::EDEADLK,
        Errno::Interrupted => libc::EINTR,
    };
    fuser::Errno::from_i32(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_own_errno() {
        let all = Errno::ALL;
        let mut seen: Vec<i32> = all.iter().map(|&e| to_fuse(e).code()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), all.len());
        assert_eq!(to_fuse(Errno::NotFound), fuser::Errno::ENOENT);
    }

    #[test]
    fn every_error_maps_to_the_number_core_gives_it() {
        for e in Errno::ALL {
            assert_eq!(to_fuse(e).code(), e.code(), "{e:?} ({})", e.name());
        }
    }
}
