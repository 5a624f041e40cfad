//! The one place where engine errors become kernel errno values.

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
    };
    fuser::Errno::from_i32(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_own_errno() {
        let all = Errno::ALL;
        let mut seen: Vec<_> = all.iter().map(|&e| to_fuse(e)).collect();
        seen.dedup();
        assert_eq!(seen.len(), all.len());
        assert_eq!(to_fuse(Errno::NotFound), fuser::Errno::ENOENT);
    }
}
