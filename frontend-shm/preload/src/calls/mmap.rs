//! `mmap` of btfuse descriptors.
//!
//! - A shared mapping maps a kernel file of the same inode: the server hands the description
//!   to the kernel through the FUSE mount (`Handoff`, with the description's access), and the
//!   kernel maps that file, so stores reach the engine through the mount and a mapping that
//!   is not open for writing is refused as the kernel refuses it. The description goes on
//!   through the kernel file from then on, offset shared.
//! - A private mapping is anonymous memory filled by reading the file: what the program
//!   stores there stays its own, as in a private mapping.
//! - Without a mount, a shared writable mapping fails with `ENODEV`; a shared read-only one is
//!   filled as a private one (it does not see later changes of the file).
//!
//! Closing the descriptor leaves the mapping valid, as in the kernel. `munmap`, `mprotect`,
//! `msync` and `madvise` act on the memory and need nothing here.

use std::os::fd::AsRawFd;

use btfuse_core::ring::{MAX_IO, Request, Response};
use btfuse_ring_client::Client;
use libc::{c_int, c_void, off_t, size_t};

use crate::connection::{PROTOCOL, call};
use crate::errno::set_errno;
use crate::real;
use crate::serve::descriptor;

fn failed(code: c_int) -> *mut c_void {
    set_errno(code);
    libc::MAP_FAILED
}

/// Fills `len` bytes at `at` from description `desc` at `offset`; bytes past the end of the
/// file stay zero.
fn fill(client: &Client, desc: u32, at: *mut u8, len: usize, offset: u64) -> Result<(), c_int> {
    let mut done = 0;
    while done < len {
        let want = (len - done).min(MAX_IO) as u32;
        let request = Request::Pread {
            fd: desc,
            offset: offset + done as u64,
            len: want,
        };
        let got = call(client, &request, |r| match r {
            Response::Data(data) => {
                // SAFETY: `at + done` has `len - done` writable bytes, and `data` is at most
                // `want` of them.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), at.add(done), data.len()) };
                Ok(data.len())
            }
            _ => Err(PROTOCOL),
        })?;
        if got == 0 {
            break;
        }
        done += got;
    }
    Ok(())
}

interpose! {
    /// Interposed: maps a btfuse file (see the module documentation).
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn mmap, mmap64(
        addr: *mut c_void,
        len: size_t,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        offset: off_t,
    ) -> *mut c_void {
        if flags & libc::MAP_ANONYMOUS != 0 {
            return None;
        }
        let (entry, client) = descriptor(fd)?;
        if entry.dir {
            return Some(failed(libc::ENODEV));
        }
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as off_t;
        if len == 0 || offset < 0 || offset % page != 0 {
            return Some(failed(libc::EINVAL));
        }
        // The mapping type is a field of the low bits (MAP_SHARED_VALIDATE holds both flags).
        let kind = flags & (libc::MAP_SHARED | libc::MAP_PRIVATE | libc::MAP_SHARED_VALIDATE);
        let shared = kind == libc::MAP_SHARED || kind == libc::MAP_SHARED_VALIDATE;
        if shared {
            match client.handoff(entry.desc) {
                Ok(kernel) => {
                    // The kernel faults pages in against the size it last fetched; a size the
                    // ring changed since (an `ftruncate` that grew the file) reaches it when it
                    // asks again, which `fstat` makes it do (the ring's change invalidated its
                    // attributes). Without this, stores past its old size raise SIGBUS.
                    // SAFETY: `stat` is plain data, written by fstat on an open descriptor.
                    unsafe {
                        let mut stat: libc::stat = std::mem::zeroed();
                        libc::fstat(kernel.as_raw_fd(), &mut stat);
                    }
                    // SAFETY: the caller's arguments, on a kernel file of the same inode;
                    // the mapping keeps the file once `kernel` is closed.
                    let mapped =
                        unsafe { real::mmap()(addr, len, prot, flags, kernel.as_raw_fd(), offset) };
                    return Some(mapped);
                }
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    if prot & libc::PROT_WRITE != 0 {
                        return Some(failed(libc::ENODEV));
                    }
                }
                Err(e) => return Some(failed(e.raw_os_error().unwrap_or(libc::EIO))),
            }
        }
        let keep = libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE | libc::MAP_NORESERVE;
        let anonymous = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | (flags & keep);
        // SAFETY: a fresh anonymous mapping where the caller asked for one.
        let mapped = unsafe {
            real::mmap()(addr, len, libc::PROT_READ | libc::PROT_WRITE, anonymous, -1, 0)
        };
        if mapped == libc::MAP_FAILED {
            return Some(mapped);
        }
        let filled = fill(&client, entry.desc, mapped.cast(), len, offset as u64);
        let protected = filled.and_then(|()| {
            // SAFETY: `mapped` is the mapping just made, `len` bytes long.
            match unsafe { libc::mprotect(mapped, len, prot) } {
                0 => Ok(()),
                _ => Err(crate::errno::errno()),
            }
        });
        Some(match protected {
            Ok(()) => mapped,
            Err(code) => {
                // SAFETY: unmaps the mapping this call made.
                unsafe { libc::munmap(mapped, len) };
                // A description not open for reading cannot be mapped (`EACCES`).
                failed(if code == libc::EBADF { libc::EACCES } else { code })
            }
        })
    }
}
