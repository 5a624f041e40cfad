//! Handing a description to the kernel (`Request::Handoff`), for a program that will not speak
//! the ring: a shell redirection that an `exec` passes to a static binary, a set-user-ID
//! program or one started without the interposer.
//!
//! A server that has a kernel mount of its filesystem is given a [`KernelOpener`]. On a
//! `Handoff` it opens the description's inode through the mount, with the description's access
//! mode and `O_APPEND` and never `O_CREAT` or `O_TRUNC`, moves the new kernel file's offset to
//! the description's, and keeps that kernel file in the description. From then on the
//! description is a proxy: every call that uses or moves its offset, from any client holding
//! it, reads, writes or seeks the kernel file, so the offset is the one the kernel description
//! shares with whoever received it (see [`Description`](super::session::Description)).
//!
//! The kernel descriptor travels over the socket of the channel that asked, as one
//! [`KernelFile`] message with the descriptor attached (`SCM_RIGHTS`), sent before the ring
//! answers `Ok`, so the client finds it waiting.
//!
//! A client cannot make the server wait: the message is sent without blocking, and only when
//! the socket holds nothing the client has not read; otherwise the answer is `EBUSY`. So each
//! channel has at most one descriptor in flight, and a client that never reads costs one.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use btfuse_core::{Errno, Ino};
use btfuse_ring_client::kernel_file::KernelFile;
use btfuse_ring_client::socket::send_with_fd_nonblocking;

use crate::sys;

/// Opens inodes of the served filesystem through a kernel mount of it: what a server needs
/// to answer `Handoff` (a server without one answers `EOPNOTSUPP`).
pub trait KernelOpener: Send + Sync {
    /// Opens `ino` through the kernel with `access` ([`KernelAccess::open_flags`]); the
    /// descriptor is close-on-exec and its offset 0. It must refer to the very inode, even
    /// one with no name left, and fail rather than open anything else.
    fn open(&self, ino: Ino, access: KernelAccess) -> io::Result<OwnedFd>;

    /// The device number (`st_dev`) of that mount, once it is mounted: told to each client in
    /// its welcome, so that one that found the socket from a mount point can check the mount
    /// there is this one. `None` (the default) while it cannot be told.
    fn mount_device(&self) -> Option<u64> {
        None
    }
}

/// How a handed-off description is opened in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelAccess {
    /// Opened for reading.
    pub read: bool,
    /// Opened for writing.
    pub write: bool,
    /// `O_APPEND`.
    pub append: bool,
    /// `O_NONBLOCK`.
    pub nonblock: bool,
}

impl KernelAccess {
    /// The `open(2)` flags: the access mode, `O_APPEND`, `O_NONBLOCK` and `O_CLOEXEC`; never
    /// `O_CREAT` or `O_TRUNC`. Neither reading nor writing is `O_PATH`: a kernel file that
    /// grants nothing, as the description did.
    pub fn open_flags(&self) -> i32 {
        let mode = match (self.read, self.write) {
            (true, true) => libc::O_RDWR,
            (false, true) => libc::O_WRONLY,
            (true, false) => libc::O_RDONLY,
            (false, false) => return libc::O_PATH | libc::O_CLOEXEC,
        };
        let append = if self.append { libc::O_APPEND } else { 0 };
        let nonblock = if self.nonblock { libc::O_NONBLOCK } else { 0 };
        mode | append | nonblock | libc::O_CLOEXEC
    }
}

/// What a `Handoff` or `MapFile` on one channel needs besides the session: the opener and
/// where the descriptor goes.
pub(crate) struct Courier<'a> {
    /// `None` for a server with no mount: `Handoff` is then `EOPNOTSUPP`.
    pub(crate) opener: Option<&'a dyn KernelOpener>,
    pub(crate) stream: &'a UnixStream,
    pub(crate) tag: u64,
}

impl Courier<'_> {
    /// Sends `file` for description `fd` without blocking: `EBUSY` while the client has not
    /// read the previous one (or its socket is full), `EIO` if the socket is broken.
    pub(crate) fn deliver(&self, fd: u32, file: &std::fs::File) -> Result<(), Errno> {
        match sys::unread_bytes(self.stream) {
            Ok(0) => {}
            Ok(_) => return Err(Errno::Busy),
            Err(e) => {
                log::debug!("SIOCOUTQ: {e}");
                return Err(Errno::Io);
            }
        }
        let message = KernelFile { tag: self.tag, fd }.encode();
        match send_with_fd_nonblocking(self.stream, &message, file.as_raw_fd()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Errno::Busy),
            Err(e) => {
                log::debug!("sending a handed-off descriptor: {e}");
                Err(Errno::Io)
            }
        }
    }
}

/// A kernel error as the ring's errno: the same number when the ring has it, else `EIO`.
pub(crate) fn kernel_errno(e: &io::Error) -> Errno {
    e.raw_os_error()
        .and_then(Errno::from_code)
        .unwrap_or(Errno::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_never_create_or_truncate() {
        let all = KernelAccess {
            read: true,
            write: true,
            append: true,
            nonblock: true,
        };
        let flags = all.open_flags();
        assert_eq!(flags & libc::O_ACCMODE, libc::O_RDWR);
        assert_eq!(flags & (libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL), 0);
        assert_ne!(flags & libc::O_APPEND, 0);
        assert_ne!(flags & libc::O_CLOEXEC, 0);
        let write_only = KernelAccess {
            read: false,
            write: true,
            append: false,
            nonblock: false,
        };
        assert_eq!(write_only.open_flags(), libc::O_WRONLY | libc::O_CLOEXEC);
        // A description that grants nothing is never handed off as one that reads.
        let nothing = KernelAccess {
            read: false,
            write: false,
            ..all
        };
        assert_eq!(nothing.open_flags(), libc::O_PATH | libc::O_CLOEXEC);
    }
}
