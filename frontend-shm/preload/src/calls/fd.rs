//! Calls on descriptor numbers themselves: `close`, `dup`, `dup2`, `dup3`, `fcntl`,
//! `close_range` and `closefrom`.

use btfuse_core::ring::{self, Request, Response};
use btfuse_ring_client::Client;
use libc::{c_int, c_uint};

use crate::connection::{self, PROTOCOL, call};
use crate::descriptors::{self, Entry};
use crate::errno::fail;
use crate::guard::guarded;
use crate::paths;
use crate::real;
use crate::serve::{descriptor, expect_ok, release, release_then};

/// `O_LARGEFILE` as the kernel reports it in `F_GETFL`. libc's constant is 0 on 64-bit
/// targets, where the flag is implied, but the kernel sets its own bit on every open there.
#[cfg(target_arch = "aarch64")]
const KERNEL_O_LARGEFILE: c_int = 0o400_000;
#[cfg(any(target_arch = "x86_64", target_arch = "riscv64"))]
const KERNEL_O_LARGEFILE: c_int = 0o100_000;
#[cfg(not(any(
    target_arch = "aarch64",
    target_arch = "x86_64",
    target_arch = "riscv64"
)))]
const KERNEL_O_LARGEFILE: c_int = libc::O_LARGEFILE;

interpose! {
    /// Interposed: closing a btfuse descriptor releases its description's reference.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn close(fd: c_int) -> c_int {
        // The library's own descriptors are not the program's to close: for the program that
        // number is not open (a loop closing every number must not cut the library off).
        if descriptors::is_private(fd) {
            return Some(fail(libc::EBADF));
        }
        let entry = descriptors::remove(fd)?;
        let client = connection::current_client();
        if fd > 2
            && let Some(client) = &client
        {
            // The placeholder closes while the request travels.
            // SAFETY: closes the placeholder, which is this library's.
            return Some(release_then(client, entry.desc, || unsafe {
                real::close()(fd)
            }));
        }
        if let Some(client) = &client {
            release(client, entry.desc);
        }
        super::streams::sync_std_stream(fd);
        // libc's `close` closes the placeholder.
        None
    }
}

/// After the kernel made `newfd` a copy of btfuse descriptor `old`, gives it a description
/// reference of its own (`dup` shares the description).
fn adopt_copy(old: Entry, newfd: c_int, client: &Client) -> c_int {
    match call(client, &Request::Dup { fd: old.desc }, |r| match r {
        Response::Fd(desc) => Ok(desc),
        _ => Err(PROTOCOL),
    }) {
        Ok(desc) => {
            if let Some(path) = old.dir.then(|| paths::desc_path(old.desc)).flatten() {
                paths::remember_path(desc, path);
            }
            if let Some(replaced) = descriptors::insert(newfd, Entry { desc, dir: old.dir }) {
                release(client, replaced.desc);
            }
            newfd
        }
        Err(e) => {
            // SAFETY: closes the placeholder copy just made.
            unsafe { real::close()(newfd) };
            fail(e)
        }
    }
}

/// A descriptor number the kernel just reused for something that is not btfuse's: forget
/// the btfuse description that had it.
#[unsafe(link_section = ".text.hot.btfuse")]
fn forget_number(fd: c_int) {
    if let Some(old) = descriptors::remove(fd)
        && let Some(client) = connection::current_client()
    {
        release(&client, old.desc);
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    // SAFETY: libc's contract, passed on.
    let newfd = unsafe { real::dup()(fd) };
    if newfd < 0 {
        return newfd;
    }
    guarded(|| match descriptor(fd) {
        Some((entry, client)) => adopt_copy(entry, newfd, &client),
        None => newfd,
    })
    .unwrap_or(newfd)
}

/// `dup2`/`dup3` bookkeeping after the kernel's copy succeeded.
fn after_dup_to(oldfd: c_int, newfd: c_int) -> c_int {
    descriptors::placeholder_base_gone(newfd);
    paths::mount_watch_gone(newfd);
    guarded(|| {
        let rc = match descriptor(oldfd) {
            Some((entry, client)) if oldfd != newfd => adopt_copy(entry, newfd, &client),
            Some(_) => newfd,
            None => {
                forget_number(newfd);
                newfd
            }
        };
        super::streams::sync_std_stream(newfd);
        rc
    })
    .unwrap_or(newfd)
}

/// Interposed.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.hot.btfuse")]
pub unsafe extern "C" fn dup2(oldfd: c_int, newfd: c_int) -> c_int {
    // SAFETY: libc's contract, passed on.
    let rc = unsafe { real::dup2()(oldfd, newfd) };
    if rc < 0 { rc } else { after_dup_to(oldfd, rc) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(oldfd: c_int, newfd: c_int, flags: c_int) -> c_int {
    // SAFETY: libc's contract, passed on.
    let rc = unsafe { real::dup3()(oldfd, newfd, flags) };
    if rc < 0 { rc } else { after_dup_to(oldfd, rc) }
}

/// `fcntl` on a btfuse descriptor: duplication, status flags and record locks here;
/// descriptor flags (`FD_CLOEXEC`) live on the placeholder, as the kernel keeps them.
fn fcntl_ring(
    fd: c_int,
    cmd: c_int,
    arg: libc::c_ulong,
    entry: Entry,
    client: &Client,
) -> Option<c_int> {
    match cmd {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            // SAFETY: duplicates the placeholder as the caller asked.
            let newfd = unsafe { real::fcntl()(fd, cmd, arg) };
            Some(if newfd < 0 {
                newfd
            } else {
                adopt_copy(entry, newfd, client)
            })
        }
        libc::F_GETFL => Some(
            call(client, &Request::GetFlags { fd: entry.desc }, |r| match r {
                Response::Flags(f) => {
                    let flags = ring::OpenOptions {
                        directory: entry.dir,
                        ..f
                    };
                    // Linux sets O_LARGEFILE on every 64-bit open but an O_PATH one.
                    let large = if f.path_only { 0 } else { KERNEL_O_LARGEFILE };
                    Ok(flags.to_linux() | large)
                }
                _ => Err(PROTOCOL),
            })
            .unwrap_or_else(fail),
        ),
        libc::F_SETFL => {
            let flags = arg as c_int;
            let request = Request::SetFlags {
                fd: entry.desc,
                append: flags & libc::O_APPEND != 0,
                nonblock: flags & libc::O_NONBLOCK != 0,
            };
            Some(expect_ok(client, &request))
        }
        // Record locks live in the engine, shared with the mount (`lock`).
        libc::F_GETLK
        | libc::F_SETLK
        | libc::F_SETLKW
        | libc::F_OFD_GETLK
        | libc::F_OFD_SETLK
        | libc::F_OFD_SETLKW => Some(super::lock::fcntl_lock(
            cmd,
            arg as *mut libc::flock,
            entry,
            client,
        )),
        _ => None,
    }
}

interpose! {
    /// Interposed.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn fcntl, fcntl64(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
        let (entry, client) = descriptor(fd)?;
        fcntl_ring(fd, cmd, arg, entry, &client)
    }
}

/// Interposed: closing a range closes the btfuse descriptors in it, and leaves this
/// library's own sockets open (the program did not open them and cannot know them).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let private = guarded(|| {
        let client = connection::current_client();
        if flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
            for (fd, entry) in descriptors::entries() {
                let n = fd as c_uint;
                if n >= first && n <= last {
                    descriptors::remove(fd);
                    if let Some(client) = &client {
                        release(client, entry.desc);
                    }
                }
            }
        }
        let mut private: Vec<c_uint> = descriptors::private_fds(client.as_ref())
            .into_iter()
            .filter_map(|fd| c_uint::try_from(fd).ok())
            .filter(|&fd| fd >= first && fd <= last)
            .collect();
        private.sort_unstable();
        private
    })
    .unwrap_or_default();
    // The range minus the private descriptors, as consecutive pieces.
    let mut start = first;
    for fd in private {
        if fd > start {
            // SAFETY: closes descriptors the program asked to close.
            let rc = unsafe { real::close_range()(start, fd - 1, flags) };
            if rc < 0 {
                return rc;
            }
        }
        start = fd + 1;
    }
    if start <= last && start >= first {
        // SAFETY: as above.
        return unsafe { real::close_range()(start, last, flags) };
    }
    0
}

/// Interposed: `closefrom` is `close_range` to the end (glibc calls its internal one, which
/// would close this library's sockets and leave btfuse descriptors in its table); if the
/// kernel lacks `close_range`, each open descriptor is closed in turn, as glibc falls back.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closefrom(lowfd: c_int) {
    let low = lowfd.max(0) as c_uint;
    // SAFETY: this library's close_range, with libc's contract.
    if unsafe { close_range(low, c_uint::MAX, 0) } == 0 {
        return;
    }
    let open: Vec<c_int> = guarded(|| {
        let private = descriptors::private_fds(connection::current_client().as_ref());
        std::fs::read_dir("/proc/self/fd")
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<c_int>().ok())
                    .filter(|&fd| fd >= lowfd && !private.contains(&fd))
                    .collect()
            })
            .unwrap_or_default()
    })
    .unwrap_or_default();
    for fd in open {
        // SAFETY: closes a descriptor the program asked to close (the directory listing's
        // own descriptor is already closed and fails harmlessly).
        unsafe { close(fd) };
    }
}
