//! Reading and writing: `read`, `write`, their positioned, vectored and fortified forms,
//! `lseek`, `fsync`, `fdatasync`, `syncfs`, `sync_file_range`, `fallocate` and
//! `posix_fallocate`, the advice calls (`posix_fadvise`, `readahead`), and the copies the
//! kernel would make between descriptors (`sendfile`, `splice`, `copy_file_range`).

use btfuse_core::FallocateMode;
use btfuse_core::ring::{MAX_IO, Request, Response, Whence};
use libc::{c_int, c_uint, c_void, off_t, size_t, ssize_t};

use crate::connection::{PROTOCOL, call};
use crate::descriptors;
use crate::errno::{errno, fail, set_errno};
use crate::guard::guarded;
use crate::held;
use crate::real;
use crate::serve::{descriptor, expect_ok, held_descriptor, input, ring_read, ring_write};

interpose! {
    /// Interposed.
    #[unsafe(link_section = ".text.hot.btfuse")]
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
    #[unsafe(link_section = ".text.hot.btfuse")]
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
        if let Some(n) = crate::shown::pread(&client, entry.desc, buf, count.min(MAX_IO), at) {
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
    #[unsafe(link_section = ".text.hot.btfuse")]
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

    /// Interposed: `fsync` of the whole filesystem a descriptor is on; the engine's data is
    /// where every reader finds it once a write returns.
    fn syncfs(fd: c_int) -> c_int {
        descriptors::lookup(fd)?;
        Some(0)
    }

    /// Interposed: the range is checked as Linux checks it, and a btfuse file has nothing to
    /// write back (see `syncfs`).
    fn sync_file_range(fd: c_int, offset: off_t, nbytes: off_t, flags: c_uint) -> c_int {
        let (entry, _) = descriptor(fd)?;
        let known = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        if flags & !known != 0 || offset < 0 || nbytes < 0 || offset.checked_add(nbytes).is_none()
        {
            return Some(fail(libc::EINVAL));
        }
        if entry.dir {
            return Some(fail(libc::ESPIPE));
        }
        Some(0)
    }

    /// Interposed: every mode the engine has (allocate, keep the size, punch a hole).
    fn fallocate, fallocate64(fd: c_int, mode: c_int, offset: off_t, len: off_t) -> c_int {
        let (entry, client) = descriptor(fd)?;
        let keep = libc::FALLOC_FL_KEEP_SIZE;
        let mode = match mode {
            0 => FallocateMode::Allocate,
            m if m == keep => FallocateMode::KeepSize,
            m if m == libc::FALLOC_FL_PUNCH_HOLE | keep => FallocateMode::PunchHole,
            // Linux: punching a hole must keep the size.
            libc::FALLOC_FL_PUNCH_HOLE => return Some(fail(libc::EOPNOTSUPP)),
            _ => return Some(fail(libc::EOPNOTSUPP)),
        };
        Some(ring_fallocate(&client, entry, mode, offset, len))
    }

    /// Interposed: answers the error number itself, as `posix_fallocate` does.
    fn posix_fallocate, posix_fallocate64(fd: c_int, offset: off_t, len: off_t) -> c_int {
        let (entry, client) = descriptor(fd)?;
        let saved = errno();
        let rc = ring_fallocate(&client, entry, FallocateMode::Allocate, offset, len);
        let code = if rc == 0 { 0 } else { errno() };
        set_errno(saved);
        Some(code)
    }

    /// Interposed: advice is accepted and changes nothing (the engine has no cache to drop
    /// or fill); the advice and the range are checked as Linux checks them, and the answer is
    /// the error number itself, as `posix_fadvise` gives it.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn posix_fadvise, posix_fadvise64(fd: c_int, offset: off_t, len: off_t, advice: c_int) -> c_int {
        // No offset is used: one this process keeps stays kept (see `held`).
        let (entry, _) = held_descriptor(fd)?;
        let known = [
            libc::POSIX_FADV_NORMAL,
            libc::POSIX_FADV_RANDOM,
            libc::POSIX_FADV_SEQUENTIAL,
            libc::POSIX_FADV_WILLNEED,
            libc::POSIX_FADV_DONTNEED,
            libc::POSIX_FADV_NOREUSE,
        ];
        if !known.contains(&advice) || len < 0 {
            return Some(libc::EINVAL);
        }
        let _ = offset;
        Some(if entry.dir { libc::ESPIPE } else { 0 })
    }

    /// Interposed: accepted and without effect, as `posix_fadvise(WILLNEED)`; Linux refuses a
    /// descriptor that is not a regular file (`EINVAL`) or not open for reading (`EBADF`).
    fn readahead(fd: c_int, offset: off_t, count: size_t) -> ssize_t {
        let (entry, client) = descriptor(fd)?;
        let _ = (offset, count);
        if entry.dir {
            return Some(fail(libc::EINVAL) as ssize_t);
        }
        let readable = call(&client, &Request::GetFlags { fd: entry.desc }, |r| match r {
            Response::Flags(f) => Ok(f.read),
            _ => Err(PROTOCOL),
        });
        Some(match readable {
            Ok(true) => 0,
            Ok(false) => fail(libc::EBADF) as ssize_t,
            Err(e) => fail(e) as ssize_t,
        })
    }
}

/// `fallocate` of a btfuse description, with Linux's checks of the range.
fn ring_fallocate(
    client: &btfuse_ring_client::Client,
    entry: descriptors::Entry,
    mode: FallocateMode,
    offset: off_t,
    len: off_t,
) -> c_int {
    if offset < 0 || len <= 0 {
        return fail(libc::EINVAL);
    }
    if offset.checked_add(len).is_none() {
        return fail(libc::EFBIG);
    }
    if entry.dir {
        return fail(libc::EISDIR);
    }
    let request = Request::Fallocate {
        fd: entry.desc,
        mode,
        offset: offset as u64,
        len: len as u64,
    };
    expect_ok(client, &request)
}

/// Moves up to `len` bytes from `fd_in` to `fd_out` with this library's own calls, as the
/// kernel's `sendfile`, `splice` and `copy_file_range` move them when one side is btfuse's:
/// reads at `*off_in` (moved on) or at `fd_in`'s offset, writes at `*off_out` or at
/// `fd_out`'s. Called outside the re-entry guard, so each call is served where its
/// descriptor belongs. The count moved, or -1 and `errno` if nothing was.
///
/// # Safety
/// The offsets, when given, point at writable `off_t`s.
unsafe fn transfer(
    fd_in: c_int,
    mut off_in: Option<&mut off_t>,
    fd_out: c_int,
    mut off_out: Option<&mut off_t>,
    len: usize,
) -> ssize_t {
    let mut buf = vec![0u8; len.min(MAX_IO)];
    let mut done: usize = 0;
    while done < len {
        let want = (len - done).min(buf.len());
        let p = buf.as_mut_ptr().cast::<c_void>();
        // SAFETY: `buf` holds `want` bytes; these are this library's own entry points.
        let got = unsafe {
            match off_in.as_deref() {
                Some(&at) => pread(fd_in, p, want, at),
                None => read(fd_in, p, want),
            }
        };
        if got <= 0 {
            return if done > 0 { done as ssize_t } else { got };
        }
        let got = got as usize;
        let mut written = 0;
        while written < got {
            let q = buf[written..got].as_ptr().cast::<c_void>();
            // SAFETY: as above.
            let n = unsafe {
                match off_out.as_deref() {
                    Some(&at) => pwrite(fd_out, q, got - written, at + written as off_t),
                    None => write(fd_out, q, got - written),
                }
            };
            if n <= 0 {
                // What was read and not written is lost to a stream, as when the kernel's
                // copy fails half-way; the count says how far it went.
                let moved = done + written;
                return if moved > 0 {
                    moved as ssize_t
                } else {
                    n.min(-1)
                };
            }
            written += n as usize;
        }
        if let Some(at) = off_in.as_deref_mut() {
            *at += got as off_t;
        }
        if let Some(at) = off_out.as_deref_mut() {
            *at += got as off_t;
        }
        done += got;
        if got < want {
            break;
        }
    }
    done as ssize_t
}

/// Whether `fd` is btfuse's (asked as this library, outside any call it serves).
#[unsafe(link_section = ".text.hot.btfuse")]
fn is_ours(fd: c_int) -> bool {
    guarded(|| descriptors::lookup(fd).is_some()).unwrap_or(false)
}

/// Interposed: with a btfuse side, the bytes move through this library's `read` and `write`
/// (the kernel cannot reach a btfuse file).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendfile(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    if !is_ours(in_fd) && !is_ours(out_fd) {
        // SAFETY: libc's contract, passed on.
        return unsafe { real::sendfile()(out_fd, in_fd, offset, count) };
    }
    // SAFETY: `offset` is null or points at the caller's `off_t` (libc's contract).
    let off_in = unsafe { offset.as_mut() };
    if off_in.as_deref().is_some_and(|&o| o < 0) {
        return fail(libc::EINVAL) as ssize_t;
    }
    // SAFETY: as above.
    unsafe { transfer(in_fd, off_in, out_fd, None, count.min(0x7fff_f000)) }
}

/// Interposed: `sendfile` with a 64-bit offset (the same on 64-bit Linux).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendfile64(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    // SAFETY: libc's contract.
    unsafe { sendfile(out_fd, in_fd, offset, count) }
}

/// Whether kernel descriptor `fd` is a pipe.
fn is_pipe(fd: c_int) -> Result<bool, i32> {
    // SAFETY: an all-zero `stat` is valid; `fstat` fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the real call, `fd` being the kernel's.
    if unsafe { real::fstat()(fd, &mut st) } != 0 {
        return Err(errno());
    }
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}

/// Interposed: a pipe on one side and a btfuse file on the other moves through this
/// library's `read` and `write`; Linux's checks first (one side must be a pipe, whose
/// offset cannot be given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn splice(
    fd_in: c_int,
    off_in: *mut off_t,
    fd_out: c_int,
    off_out: *mut off_t,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    let (ours_in, ours_out) = (is_ours(fd_in), is_ours(fd_out));
    if !ours_in && !ours_out {
        // SAFETY: libc's contract, passed on.
        return unsafe { real::splice()(fd_in, off_in, fd_out, off_out, len, flags) };
    }
    let (pipe_fd, pipe_off) = if ours_in {
        (fd_out, off_out)
    } else {
        (fd_in, off_in)
    };
    let piped = if ours_in && ours_out {
        Ok(false)
    } else {
        is_pipe(pipe_fd)
    };
    match piped {
        Err(e) => return fail(e) as ssize_t,
        Ok(false) => return fail(libc::EINVAL) as ssize_t,
        Ok(true) if !pipe_off.is_null() => return fail(libc::ESPIPE) as ssize_t,
        Ok(true) => {}
    }
    // SAFETY: null or the caller's `off_t`s (libc's contract).
    let (off_in, off_out) = unsafe { (off_in.as_mut(), off_out.as_mut()) };
    if off_in.as_deref().is_some_and(|&o| o < 0) || off_out.as_deref().is_some_and(|&o| o < 0) {
        return fail(libc::EINVAL) as ssize_t;
    }
    // SAFETY: as above.
    unsafe { transfer(fd_in, off_in, fd_out, off_out, len.min(0x7fff_f000)) }
}

/// Interposed: between two btfuse files the server copies the bytes itself (ring request
/// `CopyRange`, with Linux's checks); between a btfuse file and a kernel one the answer is
/// `EXDEV`, as Linux gives across filesystems of different types (callers then copy with
/// `read` and `write`). A description handed to the kernel (`EOPNOTSUPP` from the server) is
/// copied through this library's `pread` and `pwrite`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copy_file_range(
    fd_in: c_int,
    off_in: *mut off_t,
    fd_out: c_int,
    off_out: *mut off_t,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    let (ours_in, ours_out) = (is_ours(fd_in), is_ours(fd_out));
    if !ours_in && !ours_out {
        // SAFETY: libc's contract, passed on.
        return unsafe { real::copy_file_range()(fd_in, off_in, fd_out, off_out, len, flags) };
    }
    if flags != 0 {
        return fail(libc::EINVAL) as ssize_t;
    }
    if ours_in != ours_out {
        return fail(libc::EXDEV) as ssize_t;
    }
    // SAFETY: null or the caller's `off_t`s (libc's contract).
    let (off_in, off_out) = unsafe { (off_in.as_mut(), off_out.as_mut()) };
    if off_in.as_deref().is_some_and(|&o| o < 0) || off_out.as_deref().is_some_and(|&o| o < 0) {
        return fail(libc::EINVAL) as ssize_t;
    }
    let offset = |o: &Option<&mut off_t>| o.as_deref().map(|&o| o as u64);
    let (at_in, at_out) = (offset(&off_in), offset(&off_out));
    let copied = guarded(|| {
        let (entry_in, client) = descriptor(fd_in)?;
        let (entry_out, _) = descriptor(fd_out)?;
        let request = Request::CopyRange {
            fd_in: entry_in.desc,
            off_in: at_in,
            fd_out: entry_out.desc,
            off_out: at_out,
            len: len as u64,
        };
        Some(call(&client, &request, |r| match r {
            Response::Size(n) => Ok(n),
            _ => Err(PROTOCOL),
        }))
    })
    .flatten();
    match copied {
        Some(Ok(n)) => {
            for at in [off_in, off_out].into_iter().flatten() {
                *at += n as off_t;
            }
            n as ssize_t
        }
        // SAFETY: as above.
        Some(Err(libc::EOPNOTSUPP)) => unsafe {
            transfer(fd_in, off_in, fd_out, off_out, len.min(0x7fff_f000))
        },
        Some(Err(e)) => fail(e) as ssize_t,
        None => fail(libc::EBADF) as ssize_t,
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

/// Interposed: `read` as `_FORTIFY_SOURCE` compiles it, with the buffer's known size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    buf_len: size_t,
) -> ssize_t {
    if count <= buf_len && is_ours(fd) {
        // SAFETY: libc's contract.
        return unsafe { read(fd, buf, count) };
    }
    // SAFETY: libc's contract, passed on (an overflow is reported by libc, which aborts).
    unsafe { real::__read_chk()(fd, buf, count, buf_len) }
}

/// Interposed: `pread` as `_FORTIFY_SOURCE` compiles it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __pread_chk(
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    offset: off_t,
    buf_len: size_t,
) -> ssize_t {
    if count <= buf_len && is_ours(fd) {
        // SAFETY: libc's contract.
        return unsafe { pread(fd, buf, count, offset) };
    }
    // SAFETY: libc's contract, passed on.
    unsafe { real::__pread_chk()(fd, buf, count, offset, buf_len) }
}

/// Interposed: `pread64` as `_FORTIFY_SOURCE` compiles it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __pread64_chk(
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    offset: off_t,
    buf_len: size_t,
) -> ssize_t {
    if count <= buf_len && is_ours(fd) {
        // SAFETY: libc's contract.
        return unsafe { pread(fd, buf, count, offset) };
    }
    // SAFETY: libc's contract, passed on.
    unsafe { real::__pread64_chk()(fd, buf, count, offset, buf_len) }
}

/// Whether `fd` is btfuse's, for the C half (`dprintf` and its relatives in `variadic.c`).
#[unsafe(no_mangle)]
pub extern "C" fn btfuse_preload_descriptor(fd: c_int) -> c_int {
    c_int::from(is_ours(fd))
}
