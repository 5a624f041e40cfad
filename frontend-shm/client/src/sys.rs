//! The system calls both ends of a channel need and std does not wrap: descriptors passed over
//! the socket, seals checked, futexes, the socket's hang-up. The only module of this crate with
//! `unsafe`, apart from `channel`, `contents` and `client`, which map shared memory.
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

/// Whether `fd` is sealed against shrinking and growing, as the server seals a region, and is
/// `len` bytes long: what a client checks before mapping a region the server handed it.
pub(crate) fn is_sealed_memfd(fd: &OwnedFd, len: u64) -> bool {
    has_seals(fd, len, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)
}

/// Whether `fd` is a content table as the server leaves it: `len` bytes that nobody can map
/// writable or write to any more.
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
pub fn send_with_fds(sock: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    sendmsg_with_fds(sock, bytes, fds, libc::MSG_NOSIGNAL)
}

/// Sends `bytes` with one descriptor attached (`SCM_RIGHTS`), `WouldBlock` rather than
/// waiting for room in the socket.
pub fn send_with_fd_nonblocking(sock: &UnixStream, bytes: &[u8], fd: RawFd) -> io::Result<()> {
    sendmsg_with_fds(sock, bytes, &[fd], libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
}

/// Most descriptors one message carries.
pub const MAX_FDS: usize = 4;

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
pub fn discard_received(sock: &UnixStream) -> (usize, usize) {
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

/// Sends all of `bytes` at once without blocking (a message small enough for an empty socket
/// buffer); `WouldBlock` if the socket could not take it whole.
pub(crate) fn send_all_now(sock: &UnixStream, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: send reads `bytes.len()` bytes from a valid slice.
    let n = unsafe {
        libc::send(
            sock.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    match usize::try_from(n) {
        Err(_) => Err(io::Error::last_os_error()),
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(_) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
    }
}

/// Waits until `sock` has something to read (or its peer hung up), at most `timeout`;
/// `TimedOut` if nothing came.
pub(crate) fn wait_readable(sock: &UnixStream, timeout: Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Rounded up: a wait is never cut short of the time allowed.
        let ms = libc::c_int::try_from(left.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
        // SAFETY: poll reads and writes the one pollfd given.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        match n {
            0 => return Err(io::Error::from(io::ErrorKind::TimedOut)),
            n if n > 0 => return Ok(()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Whether the peer of `sock` has hung up, without blocking.
pub fn peer_hung_up(sock: &UnixStream) -> bool {
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

/// Reads `CLOCK_MONOTONIC` into `ts` (through the vDSO: no system call).
pub(crate) fn clock_monotonic(ts: &mut libc::timespec) {
    // SAFETY: clock_gettime writes the one timespec given; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, ts) };
}

/// The CPU the calling thread runs on, or -1.
#[inline]
pub(crate) fn sched_getcpu() -> i32 {
    // SAFETY: sched_getcpu takes no arguments and touches no memory of the caller's.
    unsafe { libc::sched_getcpu() }
}

/// The CPUs in this thread's affinity mask (1 if it cannot be read).
pub(crate) fn cpus_allowed() -> usize {
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`, which
    // is zeroed and lives for the call; CPU_COUNT only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 1;
        }
        (libc::CPU_COUNT(&set) as usize).max(1)
    }
}

/// Wakes the sleepers on `word` (see [`futex_wait`]).
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not touch its value.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
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

/// Whether this process's filesystem uid and gid are its effective ones (`setfsuid(-1)` and
/// `setfsgid(-1)` change nothing and return the current filesystem ids; raw system calls, so
/// that an interposer's own `setfsuid` is not called).
pub(crate) fn file_ids_are_effective() -> bool {
    // SAFETY: system calls that change nothing (an id of -1 is refused) and touch no memory of
    // the caller's; geteuid and getegid cannot fail.
    unsafe {
        libc::syscall(libc::SYS_setfsuid, -1 as libc::c_long) == libc::c_long::from(libc::geteuid())
            && libc::syscall(libc::SYS_setfsgid, -1 as libc::c_long)
                == libc::c_long::from(libc::getegid())
    }
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

/// Signals held back from this thread while a lock wait runs (see [`SignalsHeld::nap`]),
/// and let through again when it is dropped.
pub(crate) struct SignalsHeld {
    before: libc::sigset_t,
}

impl SignalsHeld {
    /// Blocks every signal that can be blocked, remembering the mask before.
    pub(crate) fn hold() -> SignalsHeld {
        // SAFETY: sigset_t is plain data; sigfillset and pthread_sigmask get valid pointers.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut before);
            SignalsHeld { before }
        }
    }

    /// Sleeps for `duration` with the signals the thread had before let through, atomically
    /// (`ppoll`): one that arrived while held, or arrives now, has its handler run and ends the
    /// nap. Returns whether that happened, as a signal ends a wait in the kernel (a signal
    /// that is ignored never comes this far, there as here).
    pub(crate) fn nap(&self, duration: Duration) -> bool {
        let timeout = libc::timespec {
            tv_sec: duration.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(duration.subsec_nanos() as i32),
        };
        // SAFETY: no descriptors (null, 0), a valid timeout and a valid mask.
        let rc = unsafe { libc::ppoll(std::ptr::null_mut(), 0, &timeout, &self.before) };
        rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    }
}

impl Drop for SignalsHeld {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `hold`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.before, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_welcome_that_never_comes_times_out_and_one_that_comes_is_read() {
        let (client, server) = UnixStream::pair().unwrap();
        send_all_now(&client, b"hello").unwrap();
        let mut got = [0u8; 5];
        std::io::Read::read_exact(&mut &server, &mut got).unwrap();
        assert_eq!(&got, b"hello");

        let started = Instant::now();
        let e = wait_readable(&client, Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(50));

        std::io::Write::write_all(&mut &server, b"w").unwrap();
        wait_readable(&client, Duration::from_secs(5)).unwrap();
        // A peer that hangs up wakes the wait too: the read that follows finds the end.
        drop(server);
        let (other, gone) = UnixStream::pair().unwrap();
        drop(gone);
        wait_readable(&other, Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn a_send_the_socket_cannot_take_whole_is_refused_without_blocking() {
        let (client, _server) = UnixStream::pair().unwrap();
        let big = vec![0u8; 16 << 20];
        let e = send_all_now(&client, &big).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
