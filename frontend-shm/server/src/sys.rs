//! The system calls the server needs and std does not wrap: memfd with seals, peer credentials,
//! eventfds, randomness and file status flags (descriptor passing and futexes are the client
//! crate's, which both ends share). The only module of this crate with `unsafe`, apart from
//! `contents`, which maps the content table, and `worker`, which drives `io_uring`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use btfuse_daemon::creds::PeerCred;

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

/// A new, empty memfd made with `flags` (`MFD_*`).
pub(crate) fn new_memfd(name: &std::ffi::CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string; `flags` are plain bits the kernel checks.
    let fd = check(unsafe { libc::memfd_create(name.as_ptr(), flags) })?;
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new memfd of `len` bytes that can no longer shrink or grow, open to more seals.
pub(crate) fn memfd(name: &std::ffi::CStr, len: u64) -> io::Result<OwnedFd> {
    let fd = new_memfd(name, libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)?;
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

/// `SO_PEERGROUPS` of a connected Unix socket: the peer's supplementary groups at `connect`.
pub(crate) fn peer_groups(sock: &UnixStream) -> io::Result<Vec<u32>> {
    // Most processes have a few groups; the kernel says how many when there are more.
    let mut groups = vec![0 as libc::gid_t; 32];
    loop {
        let mut len = (groups.len() * size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `groups`.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let wanted = len as usize / size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(wanted);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) || wanted <= groups.len() {
            return Err(err);
        }
        groups.resize(wanted, 0);
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

/// `poll(2)` on `fds`, up to `timeout_ms` (-1: no limit); the number of ready descriptors.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<usize> {
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is a valid slice of `n` pollfds.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
    check(ready).map(|r| r as usize)
}

/// Gives the calling thread the idle scheduling policy (`SCHED_IDLE`): it runs only on a CPU
/// nothing else wants, and its wake-up never preempts another thread. For work done ahead of
/// need, which must not take a CPU from the threads that answer clients, or from the clients.
pub(crate) fn idle_thread_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: policy change of the calling thread (id 0) with a valid parameter; a failure
    // leaves the policy as it was, which is harmless.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        log::debug!("SCHED_IDLE refused: {}", std::io::Error::last_os_error());
    }
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

/// Bytes this end has sent on `sock` that the peer has not read yet (`SIOCOUTQ`).
pub(crate) fn unread_bytes(sock: &UnixStream) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int into `queued`.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut queued) })?;
    Ok(usize::try_from(queued).unwrap_or(0))
}

/// Bytes waiting to be read on `sock` (`FIONREAD`).
pub(crate) fn readable_bytes(sock: &UnixStream) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `queued`.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut queued) })?;
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

/// The CPUs the calling thread may run on; `None` if the kernel will not say.
pub(crate) fn thread_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most its
    // size into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) == 0).then_some(set)
    }
}

/// Lets the calling thread run only on `set` (the kernel moves it at once if its CPU is not
/// in it); whether the kernel took it.
pub(crate) fn set_thread_affinity(set: &libc::cpu_set_t) -> bool {
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) == 0 }
}

/// `set` without CPU `cpu`, if that leaves any.
pub(crate) fn affinity_without(set: &libc::cpu_set_t, cpu: usize) -> Option<libc::cpu_set_t> {
    let mut without = *set;
    // SAFETY: CPU_CLR and CPU_COUNT only touch the set they are given (CPU_CLR ignores a CPU
    // beyond the set's size).
    unsafe {
        libc::CPU_CLR(cpu, &mut without);
        (libc::CPU_COUNT(&without) > 0).then_some(without)
    }
}

/// The kernel's record of CPU pressure (`/proc/pressure/cpu`), read through a descriptor
/// opened once: one `pread` per look, at most one look per [`PRESSURE_WINDOW`].
pub(crate) struct CpuPressure {
    file: Option<std::fs::File>,
    /// When the record was last read, and its `some total` then (µs).
    mark: Option<(std::time::Instant, u64)>,
    /// The share found at the last look.
    share: Option<f32>,
}

/// The shortest time over which [`CpuPressure::recent_wait`] measures: looks closer together
/// answer what the last one found.
pub(crate) const PRESSURE_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

impl CpuPressure {
    /// Opens the record; a kernel without one (no `CONFIG_PSI`, or `psi=0`) gives a reader that
    /// never knows.
    pub(crate) fn open() -> CpuPressure {
        CpuPressure {
            file: std::fs::File::open("/proc/pressure/cpu").ok(),
            mark: None,
            share: None,
        }
    }

    /// The share of the recent past, in percent, in which some runnable thread waited for a
    /// CPU: since the last look if that was at least [`PRESSURE_WINDOW`] ago (a machine that
    /// just got busy shows at once), else what that look found; the kernel's ten-second
    /// average at the first look. `None` if the kernel does not say.
    pub(crate) fn recent_wait(&mut self) -> Option<f32> {
        use std::os::unix::fs::FileExt;
        let now = std::time::Instant::now();
        if let Some((at, _)) = self.mark
            && now.duration_since(at) < PRESSURE_WINDOW
        {
            return self.share;
        }
        let mut buf = [0u8; 160];
        let n = self.file.as_ref()?.read_at(&mut buf, 0).ok()?;
        let (avg10, total) = some_line(&buf[..n])?;
        self.share = Some(match self.mark {
            Some((at, before)) => {
                let waited = total.saturating_sub(before) as f32;
                let elapsed = now.duration_since(at).as_micros().max(1) as f32;
                (100.0 * waited / elapsed).min(100.0)
            }
            None => avg10,
        });
        self.mark = Some((now, total));
        self.share
    }
}

/// `some avg10` (percent) and `some total` (µs) in a pressure record's text, whose first line
/// is `some avg10=1.23 avg60=... avg300=... total=...`.
fn some_line(text: &[u8]) -> Option<(f32, u64)> {
    let line = text
        .split(|&b| b == b'\n')
        .find(|l| l.starts_with(b"some "))?;
    let field = |name: &[u8]| {
        line.split(|&b| b == b' ')
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let avg10: f32 = field(b"avg10=")?.parse().ok()?;
    let total: u64 = field(b"total=")?.parse().ok()?;
    (0.0..=100.0).contains(&avg10).then_some((avg10, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waiting_share_is_read_from_the_some_line() {
        let record = b"some avg10=12.50 avg60=3.00 avg300=0.75 total=3501339279\n\
                       full avg10=99.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(some_line(record), Some((12.5, 3_501_339_279)));
        // Older kernels have no `full` line for the CPU.
        assert_eq!(
            some_line(b"some avg10=0.00 avg60=0.00 avg300=0.00 total=1"),
            Some((0.0, 1))
        );
        for bad in [
            &b""[..],
            b"full avg10=1.00 avg60=0.00 avg300=0.00 total=0\n",
            b"some avg60=1.00 total=0\n",
            b"some avg10=1.00 avg60=0.00\n",
            b"some avg10=many avg60=0.00 total=0\n",
            b"some avg10=101.00 avg60=0.00 total=0\n",
            b"some avg10=-1.00 avg60=0.00 total=0\n",
            b"some avg10=1.00 avg60=0.00 total=-5\n",
        ] {
            assert_eq!(some_line(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_kernels_pressure_record_reads_as_a_share_of_the_recent_past() {
        let mut pressure = CpuPressure::open();
        if !std::path::Path::new("/proc/pressure/cpu").exists() {
            assert_eq!(pressure.recent_wait(), None);
            return;
        }
        let first = pressure.recent_wait().expect("a readable pressure record");
        assert!((0.0..=100.0).contains(&first), "{first}");
        // Within the window the last look's answer stands, without a read.
        let mark = pressure.mark;
        assert_eq!(pressure.recent_wait(), Some(first));
        assert_eq!(pressure.mark, mark);
        // After it, the share is measured since the last look.
        std::thread::sleep(PRESSURE_WINDOW);
        let later = pressure.recent_wait().expect("a readable pressure record");
        assert!((0.0..=100.0).contains(&later), "{later}");
        assert_ne!(pressure.mark, mark);
    }

    #[test]
    fn the_peer_groups_are_the_kernels_list_at_connect() {
        // Set for this test's thread only (setgroups is per thread at the system-call level),
        // so that the list is long enough to need a second try and known exactly.
        let many: Vec<libc::gid_t> = (5000..5040).collect();
        let groups = std::thread::spawn(move || {
            // SAFETY: a raw system call on a live list of `many.len()` ids; this thread only.
            let set = unsafe { libc::syscall(libc::SYS_setgroups, many.len(), many.as_ptr()) };
            assert_eq!(set, 0, "{}", io::Error::last_os_error());
            let (ours, theirs) = UnixStream::pair().unwrap();
            drop(ours);
            peer_groups(&theirs).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(groups, (5000..5040).collect::<Vec<u32>>());
    }
}
