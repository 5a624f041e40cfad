//! The process-level system calls the daemon needs and std does not wrap: mounting and
//! detaching as a daemon (signal handling is `btfuse_daemon`'s). The only module of this
//! crate with `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// What [`daemonize`] returns in each process.
pub(crate) enum Forked {
    /// The original process: read one status byte from this pipe, then exit.
    Parent(OwnedFd),
    /// The detached daemon: write the status byte here once mounted (or failed).
    Daemon(OwnedFd),
}

/// Forks; the child starts a new session (detached from the terminal) with its standard input
/// and output on `/dev/null`. Must run before any thread is started.
pub(crate) fn daemonize() -> io::Result<Forked> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread runs yet (the caller's contract), so the child may go on
    // running Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read);
            // SAFETY: setsid has no memory-safety preconditions.
            if unsafe { libc::setsid() } < 0 {
                return Err(io::Error::last_os_error());
            }
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?;
            use std::os::fd::AsRawFd;
            for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO] {
                // SAFETY: both descriptors are open; dup2 replaces the target atomically.
                if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(Forked::Daemon(write))
        }
        _ => {
            drop(write);
            Ok(Forked::Parent(read))
        }
    }
}

/// Mount flags and data for a FUSE mount made by [`mount_fuse`].
pub(crate) struct FuseMount<'a> {
    /// Where to mount.
    pub(crate) target: &'a std::path::Path,
    /// Shown as the source in /proc/mounts.
    pub(crate) source: &'a str,
    /// The filesystem type: `fuse.SUBTYPE` makes /proc/mounts show the subtype.
    pub(crate) fstype: &'a str,
    /// `MS_*` flags.
    pub(crate) flags: libc::c_ulong,
    /// Options after the ones naming the descriptor and owner (`allow_other`, ...).
    pub(crate) extra_data: &'a str,
    /// Mode of the root directory, for the kernel's `rootmode`.
    pub(crate) root_mode: u32,
}

/// Opens /dev/fuse and mounts it at `m.target`; returns the descriptor to serve.
pub(crate) fn mount_fuse(m: &FuseMount<'_>) -> io::Result<OwnedFd> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")?;
    let fd = OwnedFd::from(dev);
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={},rootmode={:o},user_id={uid},group_id={gid}",
        fd.as_raw_fd(),
        libc::S_IFDIR | (m.root_mode & 0o7777)
    );
    if !m.extra_data.is_empty() {
        data.push(',');
        data.push_str(m.extra_data);
    }
    let invalid = |_| io::Error::from(io::ErrorKind::InvalidInput);
    let target = CString::new(m.target.as_os_str().as_bytes()).map_err(invalid)?;
    let source = CString::new(m.source).map_err(invalid)?;
    let fstype = CString::new(m.fstype).map_err(invalid)?;
    let data = CString::new(data).map_err(invalid)?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            m.flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Unmounts `target`; if it is busy, detaches it (it goes once the last user leaves).
pub(crate) fn unmount(target: &std::path::Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let target = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `target` is a NUL-terminated string that outlives both calls.
    if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EBUSY) {
        return Err(err);
    }
    // SAFETY: as above.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The effective user id.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The FUSE kernel module's file handle type for a handle without a parent
/// (`fuse_encode_fh`): three 32-bit words, the node id's high and low halves and the
/// generation.
const FUSE_HANDLE_TYPE: libc::c_int = 0x81;

/// Opens, with `open(2)` `flags`, the inode a FUSE mount knows as `nodeid` of `generation`,
/// through `mount_fd`, any descriptor on that mount (`open_by_handle_at`, which needs
/// `CAP_DAC_READ_SEARCH`).
pub(crate) fn open_by_fuse_handle(
    mount_fd: &OwnedFd,
    nodeid: u64,
    generation: u32,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    /// `struct file_handle` with room for the FUSE handle.
    #[repr(C)]
    struct FuseHandle {
        handle_bytes: u32,
        handle_type: libc::c_int,
        words: [u32; 3],
    }
    let handle = FuseHandle {
        handle_bytes: 12,
        handle_type: FUSE_HANDLE_TYPE,
        words: [(nodeid >> 32) as u32, nodeid as u32, generation],
    };
    // SAFETY: `handle` is a valid `struct file_handle` of 12 handle bytes that outlives the
    // call, which only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            &handle as *const FuseHandle,
            flags,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}
