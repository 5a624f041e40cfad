//! Reading and writing: `read`, `write`, their positioned and vectored forms, `lseek`,
//! `fsync`, `fdatasync` and `copy_file_range`.

use btfuse_core::ring::{MAX_IO, Request, Response, Whence};
use libc::{c_int, c_uint, c_void, off_t, size_t, ssize_t};

use crate::connection::{PROTOCOL, call};
use crate::descriptors;
use crate::errno::fail;
use crate::held;
use crate::serve::{descriptor, expect_ok, held_descriptor, input, ring_read, ring_write};

interpose! {
    /// Interposed.
    fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
        let (entry, client) = held_descriptor(fd)?;
        if entry.dir {
            return Some(fail(libc::EISDIR) as ssize_t);
        }
        if let Some(n) = held::with(entry.desc, |h| h.read(&client, entry.desc, buf, count)) {
            return Some(n);
        }
        let len = count.min(MAX_IO) as u32;
        Some(ring_read(
            &client,
            &Request::Read {
                fd: entry.desc,
                len,
            },
            buf,
            count,
        ))
    }

    /// Interposed.
    fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
        let (entry, client) = descriptor(fd)?;
        // SAFETY: the caller's buffer holds `count` bytes.
        let data = unsafe { input(buf, count) };
        Some(ring_write(
            &client,
            &Request::Write {
                fd: entry.desc,
                data,
            },
        ))
    }

    /// Interposed.
    fn pread, pread64(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t) -> ssize_t {
        let (entry, client) = held_descriptor(fd)?;
        if offset < 0 {
            return Some(fail(libc::EINVAL) as ssize_t);
        }
        let at = offset as u64;
        if let Some(n) = held::with(entry.desc, |h| h.pread(&client, buf, count, at)) {
            return Some(n);
        }
        let len = count.min(MAX_IO) as u32;
        let request = Request::Pread {
            fd: entry.desc,
            offset: offset as u64,
            len,
        };
        Some(ring_read(&client, &request, buf, count))
    }

    /// Interposed.
    fn pwrite, pwrite64(fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t {
        let (entry, client) = descriptor(fd)?;
        if offset < 0 {
            return Some(fail(libc::EINVAL) as ssize_t);
        }
        // SAFETY: the caller's buffer holds `count` bytes.
        let data = unsafe { input(buf, count) };
        let request = Request::Pwrite {
            fd: entry.desc,
            offset: offset as u64,
            data,
        };
        Some(ring_write(&client, &request))
    }

    /// Interposed.
    fn lseek, lseek64(fd: c_int, offset: off_t, whence: c_int) -> off_t {
        let (entry, client) = held_descriptor(fd)?;
        if let Some(at) = held::with(entry.desc, |h| h.seek(offset, whence)) {
            return Some(at);
        }
        let _ = held::settle(&client, entry.desc);
        let whence = match whence {
            libc::SEEK_SET => Whence::Set,
            libc::SEEK_CUR => Whence::Cur,
            libc::SEEK_END => Whence::End,
            libc::SEEK_DATA => Whence::Data,
            libc::SEEK_HOLE => Whence::Hole,
            _ => return Some(fail(libc::EINVAL) as off_t),
        };
        let request = Request::Lseek {
            fd: entry.desc,
            offset,
            whence,
        };
        Some(
            call(&client, &request, |r| match r {
                Response::Offset(n) => Ok(n as off_t),
                _ => Err(PROTOCOL),
            })
            .unwrap_or_else(|e| fail(e) as off_t),
        )
    }

    /// Interposed.
    fn fsync(fd: c_int) -> c_int {
        sync(fd, false)
    }

    /// Interposed.
    fn fdatasync(fd: c_int) -> c_int {
        sync(fd, true)
    }

    /// Interposed: the kernel cannot copy between btfuse descriptors (their placeholders are
    /// `O_PATH` descriptors of `/`), so btfuse's answer is `EXDEV`, on which callers copy with
    /// read and write.
    fn copy_file_range(
        fd_in: c_int,
        off_in: *mut off_t,
        fd_out: c_int,
        off_out: *mut off_t,
        len: size_t,
        flags: c_uint,
    ) -> ssize_t {
        let ours = descriptors::lookup(fd_in).is_some() || descriptors::lookup(fd_out).is_some();
        ours.then(|| fail(libc::EXDEV) as ssize_t)
    }
}

/// `fsync` and `fdatasync` of a btfuse descriptor.
fn sync(fd: c_int, datasync: bool) -> Option<c_int> {
    let (entry, client) = descriptor(fd)?;
    Some(expect_ok(
        &client,
        &Request::Fsync {
            fd: entry.desc,
            datasync,
        },
    ))
}

/// Gathers an iovec array into one buffer (at most `MAX_IO` bytes: a short write, as the
/// kernel may give).
///
/// # Safety
/// `iov` points at `count` valid iovecs.
unsafe fn gather(iov: *const libc::iovec, count: c_int) -> Result<Vec<u8>, i32> {
    if !(0..=libc::UIO_MAXIOV).contains(&count) {
        return Err(libc::EINVAL);
    }
    let mut out = Vec::new();
    for i in 0..count as usize {
        // SAFETY: the caller's contract.
        let v = unsafe { &*iov.add(i) };
        let room = MAX_IO - out.len();
        // SAFETY: each iovec describes `iov_len` readable bytes.
        let part = unsafe { input(v.iov_base, v.iov_len.min(room)) };
        out.extend_from_slice(part);
        if out.len() == MAX_IO {
            break;
        }
    }
    Ok(out)
}

/// Spreads `data` over an iovec array.
///
/// # Safety
/// `iov` points at `count` valid, writable iovecs.
unsafe fn scatter(data: &[u8], iov: *const libc::iovec, count: c_int) -> usize {
    let mut done = 0;
    for i in 0..count.max(0) as usize {
        if done == data.len() {
            break;
        }
        // SAFETY: the caller's contract.
        let v = unsafe { &*iov.add(i) };
        let n = v.iov_len.min(data.len() - done);
        // SAFETY: the iovec holds `iov_len` writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(data[done..].as_ptr(), v.iov_base.cast::<u8>(), n) };
        done += n;
    }
    done
}

fn iov_total(iov: *const libc::iovec, count: c_int) -> usize {
    (0..count.max(0) as usize)
        // SAFETY: `iov` points at `count` iovecs (libc's contract).
        .map(|i| unsafe { (*iov.add(i)).iov_len })
        .fold(0usize, usize::saturating_add)
}

/// `readv` and `preadv`: one ring read into a buffer, then scattered.
fn vectored_read(
    fd: c_int,
    iov: *const libc::iovec,
    count: c_int,
    offset: Option<off_t>,
) -> Option<ssize_t> {
    let (entry, client) = descriptor(fd)?;
    if !(0..=libc::UIO_MAXIOV).contains(&count) || offset.is_some_and(|o| o < 0) {
        return Some(fail(libc::EINVAL) as ssize_t);
    }
    let len = iov_total(iov, count).min(MAX_IO) as u32;
    let request = match offset {
        None => Request::Read {
            fd: entry.desc,
            len,
        },
        Some(o) => Request::Pread {
            fd: entry.desc,
            offset: o as u64,
            len,
        },
    };
    Some(
        call(&client, &request, |r| match r {
            // SAFETY: the iovecs are the caller's, writable.
            Response::Data(data) => Ok(unsafe { scatter(data, iov, count) } as ssize_t),
            _ => Err(PROTOCOL),
        })
        .unwrap_or_else(|e| fail(e) as ssize_t),
    )
}

/// `writev` and `pwritev`: gathered, then one ring write.
fn vectored_write(
    fd: c_int,
    iov: *const libc::iovec,
    count: c_int,
    offset: Option<off_t>,
) -> Option<ssize_t> {
    let (entry, client) = descriptor(fd)?;
    if offset.is_some_and(|o| o < 0) {
        return Some(fail(libc::EINVAL) as ssize_t);
    }
    // SAFETY: libc's contract.
    let data = match unsafe { gather(iov, count) } {
        Ok(data) => data,
        Err(e) => return Some(fail(e) as ssize_t),
    };
    let request = match offset {
        None => Request::Write {
            fd: entry.desc,
            data: &data,
        },
        Some(o) => Request::Pwrite {
            fd: entry.desc,
            offset: o as u64,
            data: &data,
        },
    };
    Some(ring_write(&client, &request))
}

interpose! {
    /// Interposed.
    fn readv(fd: c_int, iov: *const libc::iovec, count: c_int) -> ssize_t {
        vectored_read(fd, iov, count, None)
    }

    /// Interposed.
    fn writev(fd: c_int, iov: *const libc::iovec, count: c_int) -> ssize_t {
        vectored_write(fd, iov, count, None)
    }

    /// Interposed.
    fn preadv, preadv64(
        fd: c_int,
        iov: *const libc::iovec,
        count: c_int,
        offset: off_t,
    ) -> ssize_t {
        vectored_read(fd, iov, count, Some(offset))
    }

    /// Interposed.
    fn pwritev, pwritev64(
        fd: c_int,
        iov: *const libc::iovec,
        count: c_int,
        offset: off_t,
    ) -> ssize_t {
        vectored_write(fd, iov, count, Some(offset))
    }

    /// Interposed: without flags, as `preadv`; offset -1 uses the file offset.
    fn preadv2, preadv64v2(
        fd: c_int,
        iov: *const libc::iovec,
        count: c_int,
        offset: off_t,
        flags: c_int,
    ) -> ssize_t {
        descriptors::lookup(fd)?;
        if flags != 0 {
            return Some(fail(libc::EOPNOTSUPP) as ssize_t);
        }
        vectored_read(fd, iov, count, (offset != -1).then_some(offset))
    }

    /// Interposed: without flags, as `pwritev`; offset -1 uses the file offset.
    fn pwritev2, pwritev64v2(
        fd: c_int,
        iov: *const libc::iovec,
        count: c_int,
        offset: off_t,
        flags: c_int,
    ) -> ssize_t {
        descriptors::lookup(fd)?;
        if flags != 0 {
            return Some(fail(libc::EOPNOTSUPP) as ssize_t);
        }
        vectored_write(fd, iov, count, (offset != -1).then_some(offset))
    }
}
