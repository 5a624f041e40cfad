//! The system calls the fast path needs and std does not wrap: memfd with seals, descriptor
//! passing, peer credentials, futexes and randomness. The only module of this crate with
//! `unsafe`, apart from `channel`, which maps the shared region.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A sealed memfd of `len` bytes: it can be mapped and written, never shrunk or grown, so a
/// peer cannot make the other side's accesses fault by truncating it.
pub(crate) fn sealed_memfd(name: &std::ffi::CStr, len: u64) -> io::Result<OwnedFd> {
    let fd = memfd(name, len)?;
    add_seals(&fd, libc::F_SEAL_SEAL)?;
    Ok(fd)
}

/// A new memfd of `len` bytes that can no longer shrink or grow, open to more seals.
pub(crate) fn memfd(name: &std::ffi::CStr, len: u64) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string; the flags are constants.
    let fd = check(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: a plain call on a descriptor this function owns.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })?;
    add_seals(&fd, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)?;
    Ok(fd)
}

/// Seals a memfd against writes through any mapping or descriptor made from now on (mappings
/// made before keep working) and against further seals.
pub(crate) fn seal_future_writes(fd: &OwnedFd) -> io::Result<()> {
    add_seals(fd, libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL)
}

fn add_seals(fd: &OwnedFd, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// Whether `fd` carries the seals [`sealed_memfd`] sets and is `len` bytes long: what a client
/// checks before mapping a region the server handed it.
pub(crate) fn is_sealed_memfd(fd: &OwnedFd, len: u64) -> bool {
    has_seals(fd, len, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)
}

/// Whether `fd` is a content table as [`seal_future_writes`] leaves it: `len` bytes that
/// nobody can map writable or write to any more.
pub(crate) fn is_sealed_table(fd: &OwnedFd, len: u64) -> bool {
    has_seals(
        fd,
        len,
        libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE,
    )
}

fn has_seals(fd: &OwnedFd, len: u64, want: libc::c_int) -> bool {
    // SAFETY: fcntl and fstat on a descriptor the caller owns; `st` is written by fstat.
    unsafe {
        let seals = libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS);
        let mut st: libc::stat = std::mem::zeroed();
        seals >= 0
            && seals & want == want
            && libc::fstat(fd.as_raw_fd(), &mut st) == 0
            && st.st_size as u64 == len
    }
}

/// Sends `bytes` with the descriptors `fds` (at most [`MAX_FDS`]) attached, in that order.
pub(crate) fn send_with_fds(sock: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    sendmsg_with_fds(sock, bytes, fds, libc::MSG_NOSIGNAL)
}

/// Sends `bytes` with one descriptor attached (`SCM_RIGHTS`), `WouldBlock` rather than
/// waiting for room in the socket.
pub(crate) fn send_with_fd_nonblocking(
    sock: &UnixStream,
    bytes: &[u8],
    fd: RawFd,
) -> io::Result<()> {
    sendmsg_with_fds(sock, bytes, &[fd], libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
}

/// Most descriptors one message carries.
pub(crate) const MAX_FDS: usize = 4;

fn sendmsg_with_fds(
    sock: &UnixStream,
    bytes: &[u8],
    fds: &[RawFd],
    flags: libc::c_int,
) -> io::Result<()> {
    if fds.is_empty() || fds.len() > MAX_FDS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // Room for one cmsghdr carrying MAX_FDS ints, u64-aligned as cmsg requires.
    let mut space = [0u64; 8];
    let payload = size_of_val(fds) as u32;
    // SAFETY: msg points at live buffers for the duration of sendmsg; CMSG_* macros compute
    // positions inside `space`, which is large enough for MAX_FDS descriptors.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(payload) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as usize;
        for (i, &fd) in fds.iter().enumerate() {
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>().add(i), fd);
        }
        let n = libc::sendmsg(sock.as_raw_fd(), &msg, flags);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != bytes.len() {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
    }
    Ok(())
}

/// Receives exactly `buf.len()` bytes in one message and every descriptor that came with
/// them, in the order sent. Descriptors arrive close-on-exec.
pub(crate) fn recv_with_fds(sock: &UnixStream, buf: &mut [u8]) -> io::Result<Vec<OwnedFd>> {
    recvmsg_with_fds(sock, buf, 0)
}

/// Receives a message that must already be waiting (`WouldBlock` if none is) like
/// [`recv_with_fds`], and the first descriptor that came with it (others are closed).
pub(crate) fn recv_waiting_with_fd(
    sock: &UnixStream,
    buf: &mut [u8],
) -> io::Result<Option<OwnedFd>> {
    Ok(recvmsg_with_fds(sock, buf, libc::MSG_DONTWAIT)?
        .into_iter()
        .next())
}

/// Reads and throws away whatever is waiting on `sock`, closing every descriptor that came
/// with it, without blocking; the bytes and descriptors thrown away. A client never writes on
/// its channel after the hello: what it sends is a protocol violation, and descriptors left
/// queued would keep the client's own socket open and the channel alive after it is gone.
pub(crate) fn discard_received(sock: &UnixStream) -> (usize, usize) {
    let (mut bytes, mut fds) = (0, 0);
    // A byte at a time, so each message's descriptors are taken (and closed as they drop)
    // with its first byte; bounded, so a client writing without pause cannot hold the worker
    // here. Closing the socket afterwards drops whatever is left, descriptors included.
    for _ in 0..64 {
        match recvmsg_with_fds(sock, &mut [0u8; 1], libc::MSG_DONTWAIT) {
            Ok(received) => {
                fds += received.len();
                bytes += 1;
            }
            Err(_) => break,
        }
    }
    (bytes, fds)
}

fn recvmsg_with_fds(
    sock: &UnixStream,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<Vec<OwnedFd>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut space = [0u64; 8];
    // SAFETY: as in sendmsg_with_fds; the kernel writes at most msg_controllen bytes of
    // control data into `space` and at most `buf.len()` bytes into `buf`. Every descriptor
    // received is taken into an OwnedFd so none leaks.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&space);
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC | flags);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut received = Vec::new();
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let count = ((*cmsg).cmsg_len - (data as usize - cmsg as usize)) / 4;
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    received.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        if n as usize != buf.len() || msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "short or truncated handshake message",
            ));
        }
        Ok(received)
    }
}

/// The identity of the process at the other end of a Unix socket, as the kernel recorded it
/// when the connection was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id.
    pub pid: u32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// Sets the soft `RLIMIT_NOFILE` to the hard one; the limit now.
pub(crate) fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads `limit`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// `SO_PEERCRED` of a connected Unix socket.
pub(crate) fn peer_cred(sock: &UnixStream) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    check(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    })?;
    Ok(PeerCred {
        pid: cred.pid as u32,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Whether the peer of `sock` has hung up, without blocking.
pub(crate) fn peer_hung_up(sock: &UnixStream) -> bool {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd given.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// Sleeps while `word` holds `expected`, at most `timeout`. The word lives in memory shared
/// between processes, so the futex is not private. Spurious returns are possible.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAIT only reads it. The result is ignored:
    // every caller re-checks the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wakes the sleepers on `word` (see [`futex_wait`]).
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not touch its value.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// Eight bytes from the kernel's random source, for session tokens.
pub(crate) fn random_u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: getrandom writes at most the remaining length into the buffer.
        let n = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        filled += n as usize;
    }
    Ok(u64::from_ne_bytes(bytes))
}

/// A non-blocking, close-on-exec eventfd: how a worker is told about new channels or shutdown.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd, waking whoever reads it.
pub(crate) fn eventfd_signal(fd: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live buffer. A full counter (EAGAIN) still wakes readers.
    unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
}

/// Empties an eventfd's counter.
pub(crate) fn eventfd_drain(fd: &OwnedFd) {
    let mut buf = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a live buffer; EAGAIN when already empty is fine.
    unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
}

/// Shuts a socket down in both directions: a thread blocked in `accept` on it returns.
pub(crate) fn shutdown_socket(fd: RawFd) {
    // SAFETY: shutdown on a descriptor the caller keeps open; errors are irrelevant here.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Runs `f` with the process umask set to `mask`, then restores it. The umask is per process:
/// call this only while no other thread creates files.
pub(crate) fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask cannot fail.
    let old = unsafe { libc::umask(mask) };
    let result = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    result
}

/// The signals that stop the daemon.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; sigaddset only adds valid signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in STOP_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks the stop signals in the calling thread and every thread it starts afterwards, so
/// that only [`wait_for_stop`] receives them.
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_set();
    // SAFETY: `set` is a valid initialised sigset; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Waits up to `timeout` for a stop signal; returns it, or `None` on timeout.
pub fn wait_for_stop(timeout: Duration) -> Option<libc::c_int> {
    let set = stop_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid for the call; no siginfo is requested.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Moves `fd` to the lowest free number at or above `floor` (close-on-exec), closing the old
/// number.
pub(crate) fn move_fd_above(fd: OwnedFd, floor: i32) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor this function owns returns a new descriptor.
    let moved = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor) })?;
    drop(fd);
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// The (device, inode) of what `fd` refers to, to tell later whether the number still names
/// the same file.
pub(crate) fn fd_identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat writes into `st`, which lives for the call.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some((st.st_dev, st.st_ino))
    }
}

/// Bytes this end has sent on `sock` that the peer has not read yet (`SIOCOUTQ`).
pub(crate) fn unread_bytes(sock: &UnixStream) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int into `queued`.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut queued) })?;
    Ok(usize::try_from(queued).unwrap_or(0))
}

/// `lseek(2)` with any whence (`SEEK_DATA` and `SEEK_HOLE` included).
pub(crate) fn lseek(fd: RawFd, offset: i64, whence: libc::c_int) -> io::Result<u64> {
    // SAFETY: lseek takes no pointers.
    let position = unsafe { libc::lseek(fd, offset, whence) };
    if position < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(position as u64)
    }
}

/// The file status flags of `fd` (`F_GETFL`).
pub(crate) fn status_flags(fd: RawFd) -> io::Result<libc::c_int> {
    // SAFETY: F_GETFL takes no pointer.
    check(unsafe { libc::fcntl(fd, libc::F_GETFL) })
}

/// Sets the file status flags of `fd` (`F_SETFL`).
pub(crate) fn set_status_flags(fd: RawFd, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: F_SETFL takes an int.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }).map(drop)
}
