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
//! [`KERNEL_FILE_LEN`]-byte message with the descriptor attached (`SCM_RIGHTS`), sent before
//! the ring answers `Ok`, so the client finds it waiting. All fields little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `0x4254_464b` ("BTFK") |
//! | 4 | 2 | handshake version |
//! | 6 | 2 | zero |
//! | 8 | 8 | the tag of the `Handoff` request it answers |
//! | 16 | 4 | the description number the request named |
//! | 20 | 12 | zero |
//!
//! Nothing else is ever sent on a channel's socket after the welcome, and a client reads the
//! message only after the ring answered `Ok` to the request whose tag and number it carries.
//!
//! A client cannot make the server wait: the message is sent without blocking, and only when
//! the socket holds nothing the client has not read; otherwise the answer is `EBUSY`. So each
//! channel has at most one descriptor in flight, and a client that never reads costs one.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use btfuse_core::{Errno, Ino};

use crate::sys;

/// Opens inodes of the served filesystem through a kernel mount of it: what a server needs
/// to answer `Handoff` (a server without one answers `EOPNOTSUPP`).
pub trait KernelOpener: Send + Sync {
    /// Opens `ino` through the kernel with `access` ([`KernelAccess::open_flags`]); the
    /// descriptor is close-on-exec and its offset 0. It must refer to the very inode, even
    /// one with no name left, and fail rather than open anything else.
    fn open(&self, ino: Ino, access: KernelAccess) -> io::Result<OwnedFd>;
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

/// Length of the message that carries a kernel descriptor.
pub(crate) const KERNEL_FILE_LEN: usize = 32;
const KERNEL_FILE_MAGIC: u32 = 0x4254_464b;

/// The message that comes with a handed-off descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KernelFile {
    /// The tag of the `Handoff` request.
    pub(crate) tag: u64,
    /// The description number it named.
    pub(crate) fd: u32,
}

impl KernelFile {
    pub(crate) fn encode(self) -> [u8; KERNEL_FILE_LEN] {
        let mut out = [0u8; KERNEL_FILE_LEN];
        out[0..4].copy_from_slice(&KERNEL_FILE_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&crate::handshake::VERSION.to_le_bytes());
        out[8..16].copy_from_slice(&self.tag.to_le_bytes());
        out[16..20].copy_from_slice(&self.fd.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8; KERNEL_FILE_LEN]) -> Result<KernelFile, &'static str> {
        if bytes[0..4] != KERNEL_FILE_MAGIC.to_le_bytes() {
            return Err("not a kernel file message");
        }
        if bytes[4..6] != crate::handshake::VERSION.to_le_bytes() {
            return Err("unsupported handshake version");
        }
        if bytes[6..8] != [0, 0] || bytes[20..].iter().any(|&b| b != 0) {
            return Err("reserved bytes are not zero");
        }
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&bytes[8..16]);
        let mut fd = [0u8; 4];
        fd.copy_from_slice(&bytes[16..20]);
        Ok(KernelFile {
            tag: u64::from_le_bytes(tag),
            fd: u32::from_le_bytes(fd),
        })
    }
}

/// What a `Handoff` on one channel needs besides the session: the opener and where the
/// descriptor goes.
pub(crate) struct Courier<'a> {
    pub(crate) opener: &'a dyn KernelOpener,
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
        match sys::send_with_fd_nonblocking(self.stream, &message, file.as_raw_fd()) {
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
    fn the_message_round_trips_and_rejects_others() {
        let message = KernelFile { tag: 77, fd: 3 };
        assert_eq!(KernelFile::decode(&message.encode()), Ok(message));
        // A welcome is not a kernel file message.
        let welcome = crate::handshake::Welcome {
            status: 0,
            session: 1,
            region_len: 2,
            table_len: 3,
        };
        assert!(KernelFile::decode(&welcome.encode()).is_err());
        for at in [4, 6, 20, 31] {
            let mut bad = message.encode();
            bad[at] ^= 1;
            assert!(KernelFile::decode(&bad).is_err(), "byte {at}");
        }
    }

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
