//! The interposed file calls. Each one asks whether its path or descriptor is btfuse's; if so
//! it is served over the ring and answers with libc's conventions (-1 and `errno`), otherwise
//! it goes to the real libc function untouched.

use std::borrow::Cow;
use std::ffi::CStr;
use std::sync::Arc;

use btfuse_core::ring::{self, MAX_IO, Request, Response, Target, Whence};
use btfuse_core::{AccessMask, FileType, RenameMode};
use btfuse_ring_client::Client;
use libc::{c_char, c_int, c_uint, c_void, mode_t, off_t, size_t, ssize_t};

use crate::held;
use crate::outside::{self, Side, follow};
use crate::real;
use crate::stat::{fill_stat, fill_statx};
use crate::state::{self, Entry, PROTOCOL, c_bytes, call, fail, guarded};

/// What a path argument names. The path is the caller's own bytes where it can be (no copy on
/// the way to the ring).
pub(crate) struct PathTarget<'a> {
    pub(crate) client: Client,
    pub(crate) at: Option<u32>,
    pub(crate) path: Cow<'a, [u8]>,
}

impl PathTarget<'_> {
    /// The same target, owning its path.
    pub(crate) fn into_owned(self) -> PathTarget<'static> {
        PathTarget {
            client: self.client,
            at: self.at,
            path: Cow::Owned(self.path.into_owned()),
        }
    }
}

/// The btfuse target of `path` taken from `dirfd` (`AT_FDCWD` for plain path calls), or
/// `None` if the kernel's.
///
/// # Safety
/// `path` is null or a valid C string.
pub(crate) unsafe fn at_target<'a>(dirfd: c_int, path: *const c_char) -> Option<PathTarget<'a>> {
    // SAFETY: the caller's contract.
    let bytes: &'a [u8] = unsafe { c_bytes(path) }?;
    if bytes.first() == Some(&b'/') {
        let path = state::ring_path_in(bytes)?;
        return Some(PathTarget {
            client: state::client()?,
            at: None,
            path,
        });
    }
    if bytes.is_empty() {
        return None;
    }
    if dirfd == libc::AT_FDCWD {
        if let Some(cwd) = state::cwd_desc() {
            return Some(PathTarget {
                client: state::session()?,
                at: Some(cwd),
                path: Cow::Borrowed(bytes),
            });
        }
        // The kernel's working directory may be inside the mount.
        let path = state::ring_path(&state::from_kernel_cwd(bytes)?)?;
        return Some(PathTarget {
            client: state::client()?,
            at: None,
            path: Cow::Owned(path),
        });
    }
    let entry = state::lookup(dirfd)?;
    Some(PathTarget {
        client: state::session()?,
        at: Some(entry.desc),
        path: Cow::Borrowed(bytes),
    })
}

/// Gives up this process's reference to description `desc` (and what it remembered of it).
fn release(client: &Client, desc: u32) {
    release_then(client, desc, || ());
}

/// Like [`release`], running `then` while the request travels to the server.
fn release_then<T>(client: &Client, desc: u32, then: impl FnOnce() -> T) -> T {
    state::forget_path(desc);
    held::forget(desc);
    // Not waited for: the program's close needs nothing from the answer (see Client::post).
    let (posted, value) = client.post_then(&Request::Close { fd: desc }, then);
    if let Err(e) = posted {
        state::transport_failed(&e);
    }
    value
}

/// The process's file mode creation mask, as this library last saw it set (`u32::MAX`:
/// not read yet). `umask` is interposed to keep it, so that a create costs no system calls to
/// read it (umask has no query form: reading it takes two).
static UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// The umask system call itself.
fn sys_umask(mask: mode_t) -> mode_t {
    // SAFETY: umask cannot fail and touches no memory.
    unsafe { libc::syscall(libc::SYS_umask, mask) as mode_t }
}

fn current_umask() -> mode_t {
    use std::sync::atomic::Ordering;
    let known = UMASK.load(Ordering::Relaxed);
    if known != u32::MAX {
        return known;
    }
    let m = sys_umask(0o022);
    sys_umask(m);
    UMASK.store(m, Ordering::Relaxed);
    m
}

/// Interposed: the mask is remembered (see [`UMASK`]).
#[unsafe(no_mangle)]
pub extern "C" fn umask(mask: mode_t) -> mode_t {
    let old = sys_umask(mask);
    UMASK.store(mask & 0o777, std::sync::atomic::Ordering::Relaxed);
    old
}

fn open_options(flags: c_int) -> ring::OpenOptions {
    // Linux keeps only these with `O_PATH` and checks nothing but the walk.
    if flags & libc::O_PATH != 0 {
        return ring::OpenOptions {
            path_only: true,
            directory: flags & libc::O_DIRECTORY != 0,
            nofollow: flags & libc::O_NOFOLLOW != 0,
            ..ring::OpenOptions::default()
        };
    }
    let access = flags & libc::O_ACCMODE;
    ring::OpenOptions {
        check_read_write: access == libc::O_ACCMODE,
        read: access == libc::O_RDONLY || access == libc::O_RDWR,
        write: access == libc::O_WRONLY || access == libc::O_RDWR,
        append: flags & libc::O_APPEND != 0,
        truncate: flags & libc::O_TRUNC != 0,
        create: flags & libc::O_CREAT != 0,
        exclusive: flags & libc::O_EXCL != 0,
        directory: flags & libc::O_DIRECTORY != 0,
        nofollow: flags & libc::O_NOFOLLOW != 0,
        nonblock: flags & libc::O_NONBLOCK != 0,
        path_only: false,
    }
}

/// Opens `target` over the ring and gives it a descriptor number.
fn ring_open(target: &PathTarget, flags: c_int, mode: mode_t) -> c_int {
    if flags & libc::O_TMPFILE == libc::O_TMPFILE {
        return fail(libc::EOPNOTSUPP);
    }
    let options = open_options(flags);
    // Only a description that only reads may have its first bytes sent along (see `held`).
    let prefetch = if options.read && !options.write && !options.truncate {
        held::PREFETCH
    } else {
        0
    };
    let named = (target.at.is_none() && prefetch > 0)
        .then(|| (target.client.content_source(), &target.path[..]));
    let known = named.and_then(|(source, path)| held::known(source, path));
    let (known_ino, known_version) = known.as_ref().map_or((0, 0), |k| (k.ino.0, k.version));
    let request = Request::Open {
        at: target.at,
        path: &target.path,
        flags: options,
        mode: if flags & libc::O_CREAT != 0 {
            mode & 0o7777 & !current_umask()
        } else {
            0
        },
        prefetch,
        known_ino,
        known_version,
    };
    // The placeholder is made while the server opens the file.
    let sent = match target.client.send(&request) {
        Ok(sent) => sent,
        Err(e) => return fail(state::transport_failed(&e)),
    };
    let placeholder = state::placeholder(flags & libc::O_CLOEXEC != 0);
    // The bytes are copied out while the channel is taken; the table is changed after it is
    // given back (a `fork` settling every description may need a channel meanwhile).
    let opened = state::finish(sent, |r| match r {
        Response::Opened { fd, attr } => Ok((fd, attr.kind == FileType::Directory, None)),
        Response::Prefetched {
            fd,
            ino,
            slot,
            version,
            data,
        } if prefetch > 0 && data.len() <= prefetch as usize => {
            let data = (!data.is_empty()).then(|| Arc::<[u8]>::from(data));
            Ok((fd, false, Some(((ino, slot, version), data))))
        }
        _ => Err(PROTOCOL),
    });
    let (desc, dir) = match opened {
        Ok((desc, dir, Some((stamp, data)))) => {
            held::keep(desc, named, stamp, (data, known), prefetch);
            (desc, dir)
        }
        Ok((desc, dir, None)) => (desc, dir),
        Err(e) => {
            if let Ok(fd) = placeholder {
                // SAFETY: the placeholder was made above and is nobody else's.
                unsafe { real::close()(fd) };
            }
            return fail(e);
        }
    };
    if dir {
        let base = match target.at {
            None => Some(Vec::new()),
            Some(at) => state::desc_path(at),
        };
        if let Some(path) = base.and_then(|b| state::join_lexically(&b, &target.path)) {
            state::remember_path(desc, path);
        }
    }
    match placeholder {
        Ok(fd) => {
            state::insert(fd, Entry { desc, dir });
            crate::stdio::sync_std_stream(fd);
            fd
        }
        Err(e) => {
            release(&target.client, desc);
            fail(e)
        }
    }
}

/// `open` and its relatives: served over the ring for btfuse paths.
///
/// # Safety
/// As for `openat(2)`.
unsafe fn open_at(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> Option<c_int> {
    guarded(|| {
        // SAFETY: the caller's contract.
        let target = unsafe { at_target(dirfd, path) }?;
        follow(
            target,
            |t| ring_open(t, flags, mode),
            // SAFETY: libc's `openat` with an absolute path and the caller's flags and mode.
            |host| unsafe { real::openat()(libc::AT_FDCWD, host.as_ptr(), flags, mode) },
            fail,
        )
    })
    .flatten()
}

macro_rules! open_fn {
    ($name:ident) => {
        /// Interposed: btfuse paths open over the ring.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
            // SAFETY: libc's contract for this call, passed on.
            unsafe {
                open_at(libc::AT_FDCWD, path, flags, mode)
                    .unwrap_or_else(|| real::$name()(path, flags, mode))
            }
        }
    };
}
open_fn!(open);
open_fn!(open64);

macro_rules! openat_fn {
    ($name:ident) => {
        /// Interposed: btfuse paths open over the ring.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            dirfd: c_int,
            path: *const c_char,
            flags: c_int,
            mode: mode_t,
        ) -> c_int {
            // SAFETY: libc's contract for this call, passed on.
            unsafe {
                open_at(dirfd, path, flags, mode)
                    .unwrap_or_else(|| real::$name()(dirfd, path, flags, mode))
            }
        }
    };
}
openat_fn!(openat);
openat_fn!(openat64);

macro_rules! open2_fn {
    ($name:ident) => {
        /// Interposed: the fortified `open` without a mode.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, flags: c_int) -> c_int {
            // SAFETY: libc's contract for this call, passed on.
            unsafe {
                open_at(libc::AT_FDCWD, path, flags, 0)
                    .unwrap_or_else(|| real::$name()(path, flags))
            }
        }
    };
}
open2_fn!(__open_2);
open2_fn!(__open64_2);

macro_rules! creat_fn {
    ($name:ident) => {
        /// Interposed: `open(path, O_CREAT | O_WRONLY | O_TRUNC, mode)`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, mode: mode_t) -> c_int {
            let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;
            // SAFETY: libc's contract for this call, passed on.
            unsafe {
                open_at(libc::AT_FDCWD, path, flags, mode)
                    .unwrap_or_else(|| real::$name()(path, mode))
            }
        }
    };
}
creat_fn!(creat);
creat_fn!(creat64);

/// The btfuse entry behind `fd` and a connection, if `fd` is btfuse's, with the server's
/// description made the one truth about its offset (see `held`): for every call on a
/// descriptor but those that read with the offset this process keeps.
fn descriptor(fd: c_int) -> Option<(Entry, Client)> {
    let (entry, client) = held_descriptor(fd)?;
    // A write-back (`Lseek` to a valid offset) fails only when the channel does, and then so
    // does the call that follows it on the same channel.
    let _ = held::settle(&client, entry.desc);
    Some((entry, client))
}

/// Like [`descriptor`], leaving an offset this process keeps where it is.
fn held_descriptor(fd: c_int) -> Option<(Entry, Client)> {
    let entry = state::lookup(fd)?;
    Some((entry, state::current_client().or_else(state::client)?))
}

/// Interposed: closing a btfuse descriptor releases its description's reference.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    let closed = guarded(|| {
        // The library's own descriptors are not the program's to close: for the program that
        // number is not open (a loop closing every number must not cut the library off).
        if state::is_private(fd) {
            return Some(fail(libc::EBADF));
        }
        let entry = state::remove(fd)?;
        let client = state::current_client();
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
        crate::stdio::sync_std_stream(fd);
        None
    })
    .flatten();
    // SAFETY: closes the placeholder (or the program's own descriptor).
    closed.unwrap_or_else(|| unsafe { real::close()(fd) })
}

/// Reads into the caller's buffer over the ring.
fn ring_read(client: &Client, request: &Request<'_>, buf: *mut c_void, count: size_t) -> ssize_t {
    let result = call(client, request, |r| match r {
        Response::Data(data) if data.len() <= count => {
            // SAFETY: the caller's buffer holds `count` bytes; `data` is at most that long.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.cast::<u8>(), data.len()) };
            Ok(data.len() as ssize_t)
        }
        _ => Err(PROTOCOL),
    });
    result.unwrap_or_else(|e| fail(e) as ssize_t)
}

fn ring_write(client: &Client, request: &Request<'_>) -> ssize_t {
    call(client, request, |r| match r {
        Response::Size(n) => Ok(n as ssize_t),
        _ => Err(PROTOCOL),
    })
    .unwrap_or_else(|e| fail(e) as ssize_t)
}

/// The caller's buffer as a slice (empty for a null pointer with a zero count).
///
/// # Safety
/// `buf` holds `count` readable bytes.
unsafe fn input<'a>(buf: *const c_void, count: size_t) -> &'a [u8] {
    if count == 0 || buf.is_null() {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(buf.cast(), count.min(MAX_IO)) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    let served = guarded(|| {
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
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::read()(fd, buf, count) })
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    let served = guarded(|| {
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
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::write()(fd, buf, count) })
}

macro_rules! pread_fn {
    ($name:ident) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            buf: *mut c_void,
            count: size_t,
            offset: off_t,
        ) -> ssize_t {
            let served = guarded(|| {
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
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(fd, buf, count, offset) })
        }
    };
}
pread_fn!(pread);
pread_fn!(pread64);

macro_rules! pwrite_fn {
    ($name:ident) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            buf: *const c_void,
            count: size_t,
            offset: off_t,
        ) -> ssize_t {
            let served = guarded(|| {
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
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(fd, buf, count, offset) })
        }
    };
}
pwrite_fn!(pwrite);
pwrite_fn!(pwrite64);

macro_rules! lseek_fn {
    ($name:ident) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, offset: off_t, whence: c_int) -> off_t {
            let served = guarded(|| {
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
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(fd, offset, whence) })
        }
    };
}
lseek_fn!(lseek);
lseek_fn!(lseek64);

/// Stats `target` into `buf`.
fn ring_stat(client: &Client, target: Target<'_>, buf: *mut libc::stat) -> c_int {
    let result = call(client, &Request::Stat { target }, |r| match r {
        Response::Attr(attr) => {
            // SAFETY: the caller's `buf` points at a `struct stat`.
            fill_stat(unsafe { &mut *buf }, &attr);
            Ok(0)
        }
        _ => Err(PROTOCOL),
    });
    result.unwrap_or_else(fail)
}

macro_rules! fstat_fn {
    ($name:ident) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, buf: *mut libc::stat) -> c_int {
            let served = guarded(|| {
                let (entry, client) = descriptor(fd)?;
                Some(ring_stat(&client, Target::Fd(entry.desc), buf))
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(fd, buf) })
        }
    };
}
fstat_fn!(fstat);
fstat_fn!(fstat64);

/// `fstatat` for btfuse paths and descriptors.
///
/// # Safety
/// As for `fstatat(2)`.
unsafe fn stat_at(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
    flags: c_int,
) -> Option<c_int> {
    guarded(|| {
        // SAFETY: the caller's contract.
        let empty = unsafe { c_bytes(path) }.is_some_and(<[u8]>::is_empty);
        if empty && flags & libc::AT_EMPTY_PATH != 0 {
            let (entry, client) = descriptor(dirfd)?;
            return Some(ring_stat(&client, Target::Fd(entry.desc), buf));
        }
        // SAFETY: the caller's contract.
        let t = unsafe { at_target(dirfd, path) }?;
        follow(
            t,
            |t| ring_stat(&t.client, path_target(t, flags), buf),
            // SAFETY: libc's `fstatat` with an absolute path and the caller's buffer.
            |host| unsafe { real::fstatat()(libc::AT_FDCWD, host.as_ptr(), buf, flags) },
            fail,
        )
    })
    .flatten()
}

/// The ring target of a path, following a final symbolic link unless `AT_SYMLINK_NOFOLLOW`.
fn path_target<'a>(t: &'a PathTarget<'_>, flags: c_int) -> Target<'a> {
    Target::Path {
        at: t.at,
        path: &t.path,
        follow: flags & libc::AT_SYMLINK_NOFOLLOW == 0,
    }
}

macro_rules! stat_fn {
    ($name:ident, $flags:expr) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, buf: *mut libc::stat) -> c_int {
            // SAFETY: libc's contract, passed on.
            unsafe {
                stat_at(libc::AT_FDCWD, path, buf, $flags)
                    .unwrap_or_else(|| real::$name()(path, buf))
            }
        }
    };
}
stat_fn!(stat, 0);
stat_fn!(stat64, 0);
stat_fn!(lstat, libc::AT_SYMLINK_NOFOLLOW);
stat_fn!(lstat64, libc::AT_SYMLINK_NOFOLLOW);

macro_rules! fstatat_fn {
    ($name:ident) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            dirfd: c_int,
            path: *const c_char,
            buf: *mut libc::stat,
            flags: c_int,
        ) -> c_int {
            // SAFETY: libc's contract, passed on.
            unsafe {
                stat_at(dirfd, path, buf, flags)
                    .unwrap_or_else(|| real::$name()(dirfd, path, buf, flags))
            }
        }
    };
}
fstatat_fn!(fstatat);
fstatat_fn!(fstatat64);

/// Interposed: `newfstatat` is glibc's name for `fstatat` in some builds.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn newfstatat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
    flags: c_int,
) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        stat_at(dirfd, path, buf, flags).unwrap_or_else(|| real::fstatat()(dirfd, path, buf, flags))
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: c_uint,
    buf: *mut libc::statx,
) -> c_int {
    let served = guarded(|| {
        let fill = |client: &Client, target: Target<'_>| {
            call(client, &Request::Stat { target }, |r| match r {
                Response::Attr(attr) => {
                    // SAFETY: the caller's `buf` points at a `struct statx`.
                    fill_statx(unsafe { &mut *buf }, &attr);
                    Ok(0)
                }
                _ => Err(PROTOCOL),
            })
            .unwrap_or_else(fail)
        };
        // SAFETY: libc's contract.
        let empty = unsafe { c_bytes(path) }.is_some_and(<[u8]>::is_empty);
        if empty && flags & libc::AT_EMPTY_PATH != 0 {
            let (entry, client) = descriptor(dirfd)?;
            return Some(fill(&client, Target::Fd(entry.desc)));
        }
        // SAFETY: libc's contract.
        let t = unsafe { at_target(dirfd, path) }?;
        follow(
            t,
            |t| fill(&t.client, path_target(t, flags)),
            // SAFETY: libc's `statx` with an absolute path and the caller's buffer.
            |host| unsafe { real::statx()(libc::AT_FDCWD, host.as_ptr(), flags, mask, buf) },
            fail,
        )
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::statx()(dirfd, path, flags, mask, buf) })
}

fn access_mask(mode: c_int) -> AccessMask {
    AccessMask {
        read: mode & libc::R_OK != 0,
        write: mode & libc::W_OK != 0,
        execute: mode & libc::X_OK != 0,
    }
}

/// `faccessat` for btfuse paths.
///
/// # Safety
/// As for `faccessat(2)`.
unsafe fn access_at(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> Option<c_int> {
    guarded(|| {
        // SAFETY: the caller's contract.
        let t = unsafe { at_target(dirfd, path) }?;
        let access = |t: &PathTarget<'_>| {
            let request = Request::Access {
                target: path_target(t, flags),
                mask: access_mask(mode),
                effective: flags & libc::AT_EACCESS != 0,
            };
            call(&t.client, &request, |_| Ok(0)).unwrap_or_else(fail)
        };
        follow(
            t,
            access,
            // SAFETY: libc's `faccessat` with an absolute path.
            |host| unsafe { real::faccessat()(libc::AT_FDCWD, host.as_ptr(), mode, flags) },
            fail,
        )
    })
    .flatten()
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn access(path: *const c_char, mode: c_int) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        access_at(libc::AT_FDCWD, path, mode, 0).unwrap_or_else(|| real::access()(path, mode))
    }
}

macro_rules! eaccess_fn {
    ($name:ident) => {
        /// Interposed: `access` with the effective ids (glibc runs it on its own `fstatat`,
        /// which no interposer sees).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, mode: c_int) -> c_int {
            // SAFETY: libc's contract, passed on.
            unsafe {
                access_at(libc::AT_FDCWD, path, mode, libc::AT_EACCESS)
                    .unwrap_or_else(|| real::$name()(path, mode))
            }
        }
    };
}
eaccess_fn!(euidaccess);
eaccess_fn!(eaccess);

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn faccessat(
    dirfd: c_int,
    path: *const c_char,
    mode: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        access_at(dirfd, path, mode, flags)
            .unwrap_or_else(|| real::faccessat()(dirfd, path, mode, flags))
    }
}

/// A path call: `serve` over the ring for a btfuse path, `kernel` (the real call with an
/// absolute path) where a walk that left the tree goes on outside it.
///
/// # Safety
/// `path` is null or a valid C string.
unsafe fn simple(
    dirfd: c_int,
    path: *const c_char,
    serve: impl FnMut(&PathTarget) -> c_int,
    kernel: impl FnMut(&CStr) -> c_int,
) -> Option<c_int> {
    guarded(|| {
        // SAFETY: the caller's contract.
        let t = unsafe { at_target(dirfd, path) }?;
        follow(t, serve, kernel, fail)
    })
    .flatten()
}

fn expect_ok(client: &Client, request: &Request<'_>) -> c_int {
    call(client, request, |_| Ok(0)).unwrap_or_else(fail)
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdir(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe { mkdirat(libc::AT_FDCWD, path, mode) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        simple(
            dirfd,
            path,
            |t| {
                let mode = mode & 0o7777 & !current_umask();
                let request = Request::Mkdir {
                    at: t.at,
                    path: &t.path,
                    mode,
                };
                expect_ok(&t.client, &request)
            },
            |host| real::mkdirat()(libc::AT_FDCWD, host.as_ptr(), mode),
        )
        .unwrap_or_else(|| real::mkdirat()(dirfd, path, mode))
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rmdir(path: *const c_char) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        simple(
            libc::AT_FDCWD,
            path,
            |t| {
                let request = Request::Rmdir {
                    at: t.at,
                    path: &t.path,
                };
                expect_ok(&t.client, &request)
            },
            |host| real::rmdir()(host.as_ptr()),
        )
        .unwrap_or_else(|| real::rmdir()(path))
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe { unlinkat(libc::AT_FDCWD, path, 0) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        simple(
            dirfd,
            path,
            |t| {
                let request = if flags & libc::AT_REMOVEDIR != 0 {
                    Request::Rmdir {
                        at: t.at,
                        path: &t.path,
                    }
                } else {
                    Request::Unlink {
                        at: t.at,
                        path: &t.path,
                    }
                };
                expect_ok(&t.client, &request)
            },
            |host| real::unlinkat()(libc::AT_FDCWD, host.as_ptr(), flags),
        )
        .unwrap_or_else(|| real::unlinkat()(dirfd, path, flags))
    }
}

/// The two paths of a call naming two (`rename`, `link`), each btfuse's or the kernel's;
/// `None` if neither is btfuse's, or one is null (the kernel's call).
///
/// # Safety
/// Both paths are null or valid C strings.
unsafe fn two_sides<'a>(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
) -> Option<(Side<'a>, Side<'a>)> {
    if old.is_null() || new.is_null() {
        return None;
    }
    let side = |dir: c_int, path: *const c_char| {
        // SAFETY: the caller's contract.
        match unsafe { at_target(dir, path) } {
            Some(target) => Side::Ring(target),
            // SAFETY: `path` is a valid C string (the caller's contract), not null.
            None => Side::Kernel(dir, Cow::Borrowed(unsafe { CStr::from_ptr(path) })),
        }
    };
    match (side(olddir, old), side(newdir, new)) {
        (Side::Kernel(..), Side::Kernel(..)) => None,
        both => Some(both),
    }
}

/// `renameat2` for btfuse paths: both must be btfuse's, or both lead out of the tree to the
/// kernel's (`EXDEV` otherwise, as across two filesystems).
///
/// # Safety
/// As for `renameat2(2)`.
unsafe fn rename_at(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
    flags: c_uint,
) -> Option<c_int> {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (from, to) = unsafe { two_sides(olddir, old, newdir, new) }?;
        let mode = match flags {
            0 => RenameMode::Replace,
            libc::RENAME_NOREPLACE => RenameMode::NoReplace,
            libc::RENAME_EXCHANGE => RenameMode::Exchange,
            _ => return Some(fail(libc::EINVAL)),
        };
        let serve = |from: &PathTarget<'_>, to: &PathTarget<'_>| {
            let request = Request::Rename {
                old_at: from.at,
                old_path: &from.path,
                new_at: to.at,
                new_path: &to.path,
                mode,
            };
            expect_ok(&from.client, &request)
        };
        let kernel = |(old_dir, old): (c_int, &CStr), (new_dir, new): (c_int, &CStr)| {
            // SAFETY: libc's `renameat2` with the caller's flags and two valid paths.
            unsafe { real::renameat2()(old_dir, old.as_ptr(), new_dir, new.as_ptr(), flags) }
        };
        let parent = outside::Naming::Parent;
        Some(outside::follow_two(
            (from, parent),
            (to, parent),
            serve,
            kernel,
        ))
    })
    .flatten()
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        rename_at(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0)
            .unwrap_or_else(|| real::rename()(old, new))
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn renameat(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        rename_at(olddir, old, newdir, new, 0)
            .unwrap_or_else(|| real::renameat()(olddir, old, newdir, new))
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn renameat2(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
    flags: c_uint,
) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        rename_at(olddir, old, newdir, new, flags)
            .unwrap_or_else(|| real::renameat2()(olddir, old, newdir, new, flags))
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
            if let Some(path) = old.dir.then(|| state::desc_path(old.desc)).flatten() {
                state::remember_path(desc, path);
            }
            if let Some(replaced) = state::insert(newfd, Entry { desc, dir: old.dir }) {
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
fn forget_number(fd: c_int) {
    if let Some(old) = state::remove(fd)
        && let Some(client) = state::current_client()
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
    state::placeholder_base_gone(newfd);
    guarded(|| {
        let rc = match descriptor(oldfd) {
            Some((entry, client)) if oldfd != newfd => adopt_copy(entry, newfd, &client),
            Some(_) => newfd,
            None => {
                forget_number(newfd);
                newfd
            }
        };
        crate::stdio::sync_std_stream(newfd);
        rc
    })
    .unwrap_or(newfd)
}

/// Interposed.
#[unsafe(no_mangle)]
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

/// `fcntl` on a btfuse descriptor: duplication, status flags and (refused) locks here;
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
                Response::Flags(f) if f.path_only => {
                    Ok(libc::O_PATH | if entry.dir { libc::O_DIRECTORY } else { 0 })
                }
                Response::Flags(f) => {
                    let access = match (f.read, f.write) {
                        (true, true) => libc::O_RDWR,
                        (false, true) => libc::O_WRONLY,
                        _ if f.check_read_write => libc::O_ACCMODE,
                        _ => libc::O_RDONLY,
                    };
                    Ok(access
                        | if f.append { libc::O_APPEND } else { 0 }
                        | if f.nonblock { libc::O_NONBLOCK } else { 0 }
                        | if entry.dir { libc::O_DIRECTORY } else { 0 }
                        | libc::O_LARGEFILE)
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
        // Record locks on a description the kernel does not hold cannot be honoured: say so.
        libc::F_GETLK
        | libc::F_SETLK
        | libc::F_SETLKW
        | libc::F_OFD_GETLK
        | libc::F_OFD_SETLK
        | libc::F_OFD_SETLKW => Some(fail(libc::ENOLCK)),
        _ => None,
    }
}

macro_rules! fcntl_fn {
    ($name:ident) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
            let served = guarded(|| {
                let (entry, client) = descriptor(fd)?;
                fcntl_ring(fd, cmd, arg, entry, &client)
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(fd, cmd, arg) })
        }
    };
}
fcntl_fn!(fcntl);
fcntl_fn!(fcntl64);

macro_rules! ftruncate_fn {
    ($name:ident) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, length: off_t) -> c_int {
            let served = guarded(|| {
                let (entry, client) = descriptor(fd)?;
                if length < 0 {
                    return Some(fail(libc::EINVAL));
                }
                let request = Request::Truncate {
                    target: Target::Fd(entry.desc),
                    size: length as u64,
                };
                Some(expect_ok(&client, &request))
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(fd, length) })
        }
    };
}
ftruncate_fn!(ftruncate);
ftruncate_fn!(ftruncate64);

macro_rules! truncate_fn {
    ($name:ident) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, length: off_t) -> c_int {
            // SAFETY: libc's contract, passed on.
            unsafe {
                simple(
                    libc::AT_FDCWD,
                    path,
                    |t| {
                        if length < 0 {
                            return fail(libc::EINVAL);
                        }
                        let request = Request::Truncate {
                            target: path_target(t, 0),
                            size: length as u64,
                        };
                        expect_ok(&t.client, &request)
                    },
                    |host| real::$name()(host.as_ptr(), length),
                )
                .unwrap_or_else(|| real::$name()(path, length))
            }
        }
    };
}
truncate_fn!(truncate);
truncate_fn!(truncate64);

macro_rules! fsync_fn {
    ($name:ident, $datasync:expr) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int) -> c_int {
            let served = guarded(|| {
                let (entry, client) = descriptor(fd)?;
                Some(expect_ok(
                    &client,
                    &Request::Fsync {
                        fd: entry.desc,
                        datasync: $datasync,
                    },
                ))
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(fd) })
        }
    };
}
fsync_fn!(fsync, false);
fsync_fn!(fdatasync, true);

/// Interposed: the kernel cannot copy between btfuse descriptors (their placeholders are
/// `/dev/null`), so btfuse's answer is `EXDEV`, on which callers copy with read and write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copy_file_range(
    fd_in: c_int,
    off_in: *mut off_t,
    fd_out: c_int,
    off_out: *mut off_t,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    let ours = guarded(|| state::lookup(fd_in).is_some() || state::lookup(fd_out).is_some());
    if ours == Some(true) {
        return fail(libc::EXDEV) as ssize_t;
    }
    // SAFETY: libc's contract, passed on.
    unsafe { real::copy_file_range()(fd_in, off_in, fd_out, off_out, len, flags) }
}

/// `readlinkat` for btfuse paths.
///
/// # Safety
/// As for `readlinkat(2)`.
unsafe fn readlink_at(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
) -> Option<ssize_t> {
    guarded(|| {
        // SAFETY: the caller's contract.
        let t = unsafe { at_target(dirfd, path) }?;
        if size == 0 {
            return Some(fail(libc::EINVAL) as ssize_t);
        }
        let max = size.min(btfuse_core::PATH_MAX) as u32;
        let read_link = |t: &PathTarget<'_>| {
            let request = Request::Readlink {
                at: t.at,
                path: &t.path,
                max,
            };
            ring_read(&t.client, &request, buf.cast(), size)
        };
        follow(
            t,
            read_link,
            // SAFETY: libc's `readlinkat` with an absolute path and the caller's buffer.
            |host| unsafe { real::readlinkat()(libc::AT_FDCWD, host.as_ptr(), buf, size) },
            |e| fail(e) as ssize_t,
        )
    })
    .flatten()
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t {
    // SAFETY: libc's contract, passed on.
    unsafe {
        readlink_at(libc::AT_FDCWD, path, buf, size)
            .unwrap_or_else(|| real::readlink()(path, buf, size))
    }
}

/// `symlinkat` for btfuse paths.
///
/// # Safety
/// As for `symlinkat(2)`.
unsafe fn symlink_at(target: *const c_char, dirfd: c_int, path: *const c_char) -> Option<c_int> {
    // SAFETY: the caller's contract.
    let content = unsafe { c_bytes(target) }?;
    // SAFETY: the caller's contract.
    unsafe {
        simple(
            dirfd,
            path,
            |t| {
                let request = Request::Symlink {
                    target: content,
                    at: t.at,
                    path: &t.path,
                };
                expect_ok(&t.client, &request)
            },
            |host| real::symlinkat()(target, libc::AT_FDCWD, host.as_ptr()),
        )
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlink(target: *const c_char, path: *const c_char) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        symlink_at(target, libc::AT_FDCWD, path).unwrap_or_else(|| real::symlink()(target, path))
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn chmod(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe { fchmodat(libc::AT_FDCWD, path, mode, 0) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchmod(fd: c_int, mode: mode_t) -> c_int {
    let served = guarded(|| {
        let (entry, client) = descriptor(fd)?;
        let request = Request::Chmod {
            target: Target::Fd(entry.desc),
            mode: mode & 0o7777,
        };
        Some(expect_ok(&client, &request))
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::fchmod()(fd, mode) })
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlinkat(
    target: *const c_char,
    dirfd: c_int,
    path: *const c_char,
) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        symlink_at(target, dirfd, path).unwrap_or_else(|| real::symlinkat()(target, dirfd, path))
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlinkat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
) -> ssize_t {
    // SAFETY: libc's contract, passed on.
    unsafe {
        readlink_at(dirfd, path, buf, size)
            .unwrap_or_else(|| real::readlinkat()(dirfd, path, buf, size))
    }
}

/// `linkat` for btfuse paths (`EXDEV` across filesystems).
///
/// # Safety
/// As for `linkat(2)`.
unsafe fn link_at(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
    flags: c_int,
) -> Option<c_int> {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (from, to) = unsafe { two_sides(olddir, old, newdir, new) }?;
        let follow = flags & libc::AT_SYMLINK_FOLLOW != 0;
        let serve = |from: &PathTarget<'_>, to: &PathTarget<'_>| {
            let request = Request::Link {
                old: Target::Path {
                    at: from.at,
                    path: &from.path,
                    follow,
                },
                new_at: to.at,
                new_path: &to.path,
            };
            expect_ok(&from.client, &request)
        };
        let kernel = |(old_dir, old): (c_int, &CStr), (new_dir, new): (c_int, &CStr)| {
            // SAFETY: libc's `linkat` with the caller's flags and two valid paths.
            unsafe { real::linkat()(old_dir, old.as_ptr(), new_dir, new.as_ptr(), flags) }
        };
        Some(outside::follow_two(
            (from, outside::Naming::Whole { follow }),
            (to, outside::Naming::Parent),
            serve,
            kernel,
        ))
    })
    .flatten()
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn link(old: *const c_char, new: *const c_char) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        link_at(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0)
            .unwrap_or_else(|| real::link()(old, new))
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn linkat(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
    flags: c_int,
) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        link_at(olddir, old, newdir, new, flags)
            .unwrap_or_else(|| real::linkat()(olddir, old, newdir, new, flags))
    }
}

/// A target for the calls that take `(dirfd, path, flags)` with `AT_EMPTY_PATH` or a null
/// path meaning the descriptor itself.
///
/// # Safety
/// `path` is null or a valid C string.
unsafe fn fd_or_path<'a>(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
) -> Option<(Client, Option<PathTarget<'a>>, Option<u32>)> {
    // SAFETY: the caller's contract.
    let bytes = unsafe { c_bytes(path) };
    if bytes.is_none() || (bytes == Some(b"") && flags & libc::AT_EMPTY_PATH != 0) {
        let (entry, client) = descriptor(dirfd)?;
        return Some((client, None, Some(entry.desc)));
    }
    // SAFETY: the caller's contract.
    let t = unsafe { at_target(dirfd, path) }?;
    Some((t.client.clone(), Some(t), None))
}

/// A call taking `(dirfd, path, flags)`: `request` for the descriptor or, over the ring, for
/// the path (a walk that leaves the tree going on with `kernel`, the real call with an
/// absolute path).
///
/// # Safety
/// `path` is null or a valid C string.
unsafe fn fd_or_path_call(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mut request: impl FnMut(&Client, Target<'_>) -> c_int,
    kernel: impl FnMut(&CStr) -> c_int,
) -> Option<c_int> {
    // SAFETY: the caller's contract.
    let (client, target, fd) = unsafe { fd_or_path(dirfd, path, flags) }?;
    match target {
        Some(t) => follow(
            t,
            |t| request(&t.client, path_target(t, flags)),
            kernel,
            fail,
        ),
        None => Some(request(&client, Target::Fd(fd?))),
    }
}

fn time_set(ts: Option<&libc::timespec>) -> btfuse_core::TimeSet {
    use btfuse_core::{TimeSet, Timestamp};
    match ts {
        None => TimeSet::Now,
        Some(t) if t.tv_nsec == libc::UTIME_NOW => TimeSet::Now,
        Some(t) if t.tv_nsec == libc::UTIME_OMIT => TimeSet::Omit,
        Some(t) => Timestamp::new(t.tv_sec, t.tv_nsec as u32).map_or(TimeSet::Omit, TimeSet::At),
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn utimensat(
    dirfd: c_int,
    path: *const c_char,
    times: *const libc::timespec,
    flags: c_int,
) -> c_int {
    let served = guarded(|| {
        // SAFETY: `times` is null or two timespecs (libc's contract).
        let (atime, mtime) = unsafe {
            if times.is_null() {
                (time_set(None), time_set(None))
            } else {
                (time_set(Some(&*times)), time_set(Some(&*times.add(1))))
            }
        };
        let request = |client: &Client, target: Target<'_>| {
            let request = Request::Utimens {
                target,
                atime,
                mtime,
            };
            expect_ok(client, &request)
        };
        // SAFETY: libc's `utimensat` with an absolute path and the caller's times.
        let kernel =
            |host: &CStr| unsafe { real::utimensat()(libc::AT_FDCWD, host.as_ptr(), times, flags) };
        // SAFETY: libc's contract.
        unsafe { fd_or_path_call(dirfd, path, flags, request, kernel) }
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::utimensat()(dirfd, path, times, flags) })
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn futimens(fd: c_int, times: *const libc::timespec) -> c_int {
    // SAFETY: `utimensat` with a null path acts on `fd` (libc's own definition).
    let ours = guarded(|| state::lookup(fd).is_some()).unwrap_or(false);
    if ours {
        // SAFETY: libc's contract.
        return unsafe { utimensat(fd, std::ptr::null(), times, 0) };
    }
    // SAFETY: libc's contract, passed on.
    unsafe { real::futimens()(fd, times) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchmodat(
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    flags: c_int,
) -> c_int {
    let served = guarded(|| {
        let request = |client: &Client, target: Target<'_>| {
            let mode = mode & 0o7777;
            expect_ok(client, &Request::Chmod { target, mode })
        };
        // SAFETY: libc's `fchmodat` with an absolute path.
        let kernel =
            |host: &CStr| unsafe { real::fchmodat()(libc::AT_FDCWD, host.as_ptr(), mode, flags) };
        // SAFETY: libc's contract.
        unsafe { fd_or_path_call(dirfd, path, flags, request, kernel) }
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::fchmodat()(dirfd, path, mode, flags) })
}

fn owner(id: u32) -> Option<u32> {
    (id != u32::MAX).then_some(id)
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchownat(
    dirfd: c_int,
    path: *const c_char,
    uid: libc::uid_t,
    gid: libc::gid_t,
    flags: c_int,
) -> c_int {
    let served = guarded(|| {
        let request = |client: &Client, target: Target<'_>| {
            let request = Request::Chown {
                target,
                uid: owner(uid),
                gid: owner(gid),
            };
            expect_ok(client, &request)
        };
        // SAFETY: libc's `fchownat` with an absolute path.
        let kernel = |host: &CStr| unsafe {
            real::fchownat()(libc::AT_FDCWD, host.as_ptr(), uid, gid, flags)
        };
        // SAFETY: libc's contract.
        unsafe { fd_or_path_call(dirfd, path, flags, request, kernel) }
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::fchownat()(dirfd, path, uid, gid, flags) })
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn chown(path: *const c_char, uid: libc::uid_t, gid: libc::gid_t) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe { fchownat(libc::AT_FDCWD, path, uid, gid, 0) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lchown(path: *const c_char, uid: libc::uid_t, gid: libc::gid_t) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe { fchownat(libc::AT_FDCWD, path, uid, gid, libc::AT_SYMLINK_NOFOLLOW) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchown(fd: c_int, uid: libc::uid_t, gid: libc::gid_t) -> c_int {
    let ours = guarded(|| state::lookup(fd).is_some()).unwrap_or(false);
    if ours {
        // SAFETY: a null path acts on `fd`.
        return unsafe { fchownat(fd, std::ptr::null(), uid, gid, 0) };
    }
    // SAFETY: libc's contract, passed on.
    unsafe { real::fchown()(fd, uid, gid) }
}

/// Makes the btfuse directory open as `desc` (path `path` from the served root) the working
/// directory, releasing the previous one.
fn set_cwd(client: &Client, new: Option<(u32, Vec<u8>)>) {
    let old = std::mem::replace(
        &mut *state::CWD.lock().unwrap_or_else(|p| p.into_inner()),
        new,
    );
    if let Some((desc, _)) = old {
        release(client, desc);
    }
}

/// Opens a btfuse directory for use as the working directory.
fn open_dir(client: &Client, at: Option<u32>, path: &[u8]) -> Result<u32, i32> {
    let flags = ring::OpenOptions {
        read: true,
        directory: true,
        ..ring::OpenOptions::default()
    };
    call(
        client,
        &Request::Open {
            at,
            path,
            flags,
            mode: 0,
            prefetch: 0,
            known_ino: 0,
            known_version: 0,
        },
        |r| match r {
            Response::Opened { fd, .. } => Ok(fd),
            _ => Err(PROTOCOL),
        },
    )
}

/// What `chdir` did over the ring, or the kernel's directory it must go to instead.
enum Chdir {
    Done(c_int),
    Kernel(std::ffi::CString),
}

/// Interposed: a btfuse directory becomes the working directory in this library (the
/// kernel's stays where it was, and is used again once a kernel directory is chosen). A
/// path whose walk leaves the tree (`cd ..` from the root) goes on in the kernel.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn chdir(path: *const c_char) -> c_int {
    let served = guarded(|| {
        // SAFETY: libc's contract.
        let bytes = unsafe { c_bytes(path) }?;
        let cwd = state::CWD.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (at, ring_path, base) = if bytes.first() == Some(&b'/') {
            (None, state::ring_path(bytes)?, Vec::new())
        } else {
            let (desc, base) = cwd?;
            (Some(desc), bytes.to_vec(), base)
        };
        let first = PathTarget {
            client: state::client()?,
            at,
            path: Cow::Owned(ring_path),
        };
        let enter = |t: &PathTarget<'_>| {
            // The path `getcwd` answers: lexical, as the shell keeps it (a name that climbs
            // above the root lexically, yet not on the server, went through a link there).
            let logical = match t.at {
                None => t.path.to_vec(),
                Some(_) => state::join_lexically(&base, &t.path).unwrap_or_else(|| b"/".to_vec()),
            };
            Chdir::Done(match open_dir(&t.client, t.at, &t.path) {
                Ok(desc) => {
                    state::remember_path(desc, logical.clone());
                    set_cwd(&t.client, Some((desc, logical)));
                    0
                }
                Err(e) => fail(e),
            })
        };
        let kernel = |host: &CStr| Chdir::Kernel(host.to_owned());
        follow(first, enter, kernel, |e| Chdir::Done(fail(e)))
    })
    .flatten();
    match served {
        Some(Chdir::Done(rc)) => rc,
        // SAFETY: libc's `chdir` with a path that leaves the tree.
        Some(Chdir::Kernel(host)) => kernel_cwd_after(unsafe { real::chdir()(host.as_ptr()) }),
        // SAFETY: libc's contract, passed on.
        None => kernel_cwd_after(unsafe { real::chdir()(path) }),
    }
}

/// After the kernel's `chdir`/`fchdir` returned `rc`: on success the working directory is
/// the kernel's again.
fn kernel_cwd_after(rc: c_int) -> c_int {
    if rc == 0 {
        state::forget_kernel_cwd();
        let _ = guarded(|| {
            if let Some(client) = state::current_client() {
                set_cwd(&client, None);
            }
        });
    }
    rc
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchdir(fd: c_int) -> c_int {
    let served = guarded(|| {
        let (entry, client) = descriptor(fd)?;
        if !entry.dir {
            return Some(fail(libc::ENOTDIR));
        }
        let dup = call(&client, &Request::Dup { fd: entry.desc }, |r| match r {
            Response::Fd(d) => Ok(d),
            _ => Err(PROTOCOL),
        });
        Some(match dup {
            Ok(desc) => {
                let path = state::dir_path(fd).unwrap_or_else(|| b"/".to_vec());
                state::remember_path(desc, path.clone());
                set_cwd(&client, Some((desc, path)));
                0
            }
            Err(e) => fail(e),
        })
    })
    .flatten();
    if let Some(rc) = served {
        return rc;
    }
    // SAFETY: libc's contract, passed on.
    kernel_cwd_after(unsafe { real::fchdir()(fd) })
}

/// Interposed: a btfuse working directory is the prefix joined with its path.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getcwd(buf: *mut c_char, size: size_t) -> *mut c_char {
    let served = guarded(|| {
        let (_, path) = state::CWD
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let config = state::config()?;
        let mut full = config.prefix.clone();
        if path != b"/" {
            full.extend_from_slice(&path);
        }
        if full.is_empty() {
            full.push(b'/');
        }
        full.push(0);
        if buf.is_null() {
            // glibc's extension: allocate (at least `size` bytes when given).
            let len = full.len().max(size);
            // SAFETY: malloc'd memory the caller frees; `full` fits.
            unsafe {
                let out = libc::malloc(len).cast::<c_char>();
                if out.is_null() {
                    fail(libc::ENOMEM);
                    return Some(std::ptr::null_mut());
                }
                std::ptr::copy_nonoverlapping(full.as_ptr().cast(), out, full.len());
                return Some(out);
            }
        }
        if size < full.len() {
            fail(libc::ERANGE);
            return Some(std::ptr::null_mut());
        }
        // SAFETY: `buf` holds `size` bytes, enough for `full`.
        unsafe { std::ptr::copy_nonoverlapping(full.as_ptr().cast(), buf, full.len()) };
        Some(buf)
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::getcwd()(buf, size) })
}

/// The btfuse description behind `fd` as an extended-attribute call's target.
fn xattr_fd(fd: c_int) -> Option<(Client, Target<'static>)> {
    descriptor(fd).map(|(entry, client)| (client, Target::Fd(entry.desc)))
}

/// A btfuse path as an extended-attribute call's target (`follow`: not an `l` call).
fn xattr_path<'a>(t: &'a PathTarget<'_>, follow: bool) -> Target<'a> {
    Target::Path {
        at: t.at,
        path: &t.path,
        follow,
    }
}

/// `getxattr` and relatives: the value into `buf`, or its size when `size` is 0.
fn xattr_get(
    client: &Client,
    target: Target<'_>,
    name: &[u8],
    buf: *mut c_void,
    size: size_t,
) -> ssize_t {
    let max = size.min(btfuse_core::XATTR_SIZE_MAX) as u32;
    let request = Request::GetXattr { target, name, max };
    call(client, &request, |r| match r {
        Response::Size(n) => Ok(n as ssize_t),
        Response::Data(data) if data.len() <= size => {
            // SAFETY: `buf` holds `size` bytes.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.cast::<u8>(), data.len()) };
            Ok(data.len() as ssize_t)
        }
        _ => Err(PROTOCOL),
    })
    .unwrap_or_else(|e| fail(e) as ssize_t)
}

fn xattr_list(client: &Client, target: Target<'_>, buf: *mut c_char, size: size_t) -> ssize_t {
    let max = size.min(btfuse_core::XATTR_SIZE_MAX) as u32;
    call(client, &Request::ListXattr { target, max }, |r| match r {
        Response::Size(n) => Ok(n as ssize_t),
        Response::Data(data) if data.len() <= size => {
            // SAFETY: `buf` holds `size` bytes.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.cast::<u8>(), data.len()) };
            Ok(data.len() as ssize_t)
        }
        _ => Err(PROTOCOL),
    })
    .unwrap_or_else(|e| fail(e) as ssize_t)
}

fn xattr_mode(flags: c_int) -> Option<btfuse_core::XattrMode> {
    use btfuse_core::XattrMode;
    match flags {
        0 => Some(XattrMode::Set),
        libc::XATTR_CREATE => Some(XattrMode::Create),
        libc::XATTR_REPLACE => Some(XattrMode::Replace),
        _ => None,
    }
}

macro_rules! getxattr_fn {
    ($name:ident, $follow:expr) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            name: *const c_char,
            buf: *mut c_void,
            size: size_t,
        ) -> ssize_t {
            let served = guarded(|| {
                // SAFETY: libc's contract.
                let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
                // SAFETY: libc's contract.
                let attr = unsafe { c_bytes(name) }?;
                let get = |t: &PathTarget<'_>| {
                    xattr_get(&t.client, xattr_path(t, $follow), attr, buf, size)
                };
                // SAFETY: libc's call with an absolute path and the caller's buffer.
                let kernel = |host: &CStr| unsafe { real::$name()(host.as_ptr(), name, buf, size) };
                follow(t, get, kernel, |e| fail(e) as ssize_t)
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(path, name, buf, size) })
        }
    };
}
getxattr_fn!(getxattr, true);
getxattr_fn!(lgetxattr, false);

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fgetxattr(
    fd: c_int,
    name: *const c_char,
    buf: *mut c_void,
    size: size_t,
) -> ssize_t {
    let served = guarded(|| {
        let (client, target) = xattr_fd(fd)?;
        // SAFETY: libc's contract.
        let name = unsafe { c_bytes(name) }?;
        Some(xattr_get(&client, target, name, buf, size))
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::fgetxattr()(fd, name, buf, size) })
}

macro_rules! listxattr_fn {
    ($name:ident, $follow:expr) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            buf: *mut c_char,
            size: size_t,
        ) -> ssize_t {
            let served = guarded(|| {
                // SAFETY: libc's contract.
                let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
                let list =
                    |t: &PathTarget<'_>| xattr_list(&t.client, xattr_path(t, $follow), buf, size);
                // SAFETY: libc's call with an absolute path and the caller's buffer.
                let kernel = |host: &CStr| unsafe { real::$name()(host.as_ptr(), buf, size) };
                follow(t, list, kernel, |e| fail(e) as ssize_t)
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(path, buf, size) })
        }
    };
}
listxattr_fn!(listxattr, true);
listxattr_fn!(llistxattr, false);

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flistxattr(fd: c_int, buf: *mut c_char, size: size_t) -> ssize_t {
    let served = guarded(|| {
        let (client, target) = xattr_fd(fd)?;
        Some(xattr_list(&client, target, buf, size))
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::flistxattr()(fd, buf, size) })
}

macro_rules! setxattr_fn {
    ($name:ident, $follow:expr) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            name: *const c_char,
            value: *const c_void,
            size: size_t,
            flags: c_int,
        ) -> c_int {
            let served = guarded(|| {
                // SAFETY: libc's contract.
                let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
                // SAFETY: libc's contract.
                let attr = unsafe { c_bytes(name) }?;
                let Some(mode) = xattr_mode(flags) else {
                    return Some(fail(libc::EINVAL));
                };
                // SAFETY: `value` holds `size` bytes.
                let bytes = unsafe { input(value, size) };
                let set = |t: &PathTarget<'_>| {
                    let request = Request::SetXattr {
                        target: xattr_path(t, $follow),
                        name: attr,
                        value: bytes,
                        mode,
                    };
                    expect_ok(&t.client, &request)
                };
                let kernel = |host: &CStr| {
                    // SAFETY: libc's call with an absolute path and the caller's value.
                    unsafe { real::$name()(host.as_ptr(), name, value, size, flags) }
                };
                follow(t, set, kernel, fail)
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(path, name, value, size, flags) })
        }
    };
}
setxattr_fn!(setxattr, true);
setxattr_fn!(lsetxattr, false);

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fsetxattr(
    fd: c_int,
    name: *const c_char,
    value: *const c_void,
    size: size_t,
    flags: c_int,
) -> c_int {
    let served = guarded(|| {
        let (client, target) = xattr_fd(fd)?;
        // SAFETY: libc's contract.
        let name = unsafe { c_bytes(name) }?;
        let Some(mode) = xattr_mode(flags) else {
            return Some(fail(libc::EINVAL));
        };
        // SAFETY: `value` holds `size` bytes.
        let value = unsafe { input(value, size) };
        Some(expect_ok(
            &client,
            &Request::SetXattr {
                target,
                name,
                value,
                mode,
            },
        ))
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::fsetxattr()(fd, name, value, size, flags) })
}

macro_rules! removexattr_fn {
    ($name:ident, $follow:expr) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, name: *const c_char) -> c_int {
            let served = guarded(|| {
                // SAFETY: libc's contract.
                let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
                // SAFETY: libc's contract.
                let attr = unsafe { c_bytes(name) }?;
                let remove = |t: &PathTarget<'_>| {
                    let target = xattr_path(t, $follow);
                    expect_ok(&t.client, &Request::RemoveXattr { target, name: attr })
                };
                // SAFETY: libc's call with an absolute path.
                let kernel = |host: &CStr| unsafe { real::$name()(host.as_ptr(), name) };
                follow(t, remove, kernel, fail)
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(path, name) })
        }
    };
}
removexattr_fn!(removexattr, true);
removexattr_fn!(lremovexattr, false);

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fremovexattr(fd: c_int, name: *const c_char) -> c_int {
    let served = guarded(|| {
        let (client, target) = xattr_fd(fd)?;
        // SAFETY: libc's contract.
        let name = unsafe { c_bytes(name) }?;
        Some(expect_ok(&client, &Request::RemoveXattr { target, name }))
    })
    .flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::fremovexattr()(fd, name) })
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

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, count: c_int) -> ssize_t {
    let served = guarded(|| vectored_read(fd, iov, count, None)).flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::readv()(fd, iov, count) })
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const libc::iovec, count: c_int) -> ssize_t {
    let served = guarded(|| vectored_write(fd, iov, count, None)).flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::writev()(fd, iov, count) })
}

macro_rules! preadv_fn {
    ($name:ident) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            iov: *const libc::iovec,
            count: c_int,
            offset: off_t,
        ) -> ssize_t {
            let served = guarded(|| vectored_read(fd, iov, count, Some(offset))).flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(fd, iov, count, offset) })
        }
    };
}
preadv_fn!(preadv);
preadv_fn!(preadv64);

macro_rules! pwritev_fn {
    ($name:ident) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            iov: *const libc::iovec,
            count: c_int,
            offset: off_t,
        ) -> ssize_t {
            let served = guarded(|| vectored_write(fd, iov, count, Some(offset))).flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(fd, iov, count, offset) })
        }
    };
}
pwritev_fn!(pwritev);
pwritev_fn!(pwritev64);

fn fill_statfs(out: &mut libc::statfs, s: &btfuse_core::StatFs) {
    // SAFETY: an all-zero statfs is valid.
    *out = unsafe { std::mem::zeroed() };
    out.f_type = 0x6274_6673; // "btfs"
    out.f_bsize = i64::from(s.block_size);
    out.f_frsize = i64::from(s.block_size);
    out.f_blocks = s.blocks;
    out.f_bfree = s.blocks_free;
    out.f_bavail = s.blocks_available;
    out.f_files = s.files;
    out.f_ffree = s.files_free;
    out.f_namelen = i64::from(s.name_max);
}

fn fill_statvfs(out: &mut libc::statvfs, s: &btfuse_core::StatFs) {
    // SAFETY: an all-zero statvfs is valid.
    *out = unsafe { std::mem::zeroed() };
    out.f_bsize = u64::from(s.block_size);
    out.f_frsize = u64::from(s.block_size);
    out.f_blocks = s.blocks;
    out.f_bfree = s.blocks_free;
    out.f_bavail = s.blocks_available;
    out.f_files = s.files;
    out.f_ffree = s.files_free;
    out.f_favail = s.files_free;
    out.f_namemax = u64::from(s.name_max);
}

fn ring_statfs(client: &Client, target: Target<'_>) -> Result<btfuse_core::StatFs, i32> {
    call(client, &Request::Statfs { target }, |r| match r {
        Response::StatFs(s) => Ok(s),
        _ => Err(PROTOCOL),
    })
}

macro_rules! statfs_fn {
    ($name:ident, $out:ty, $fill:ident) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, buf: *mut $out) -> c_int {
            let served = guarded(|| {
                // SAFETY: libc's contract.
                let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
                let statfs = |t: &PathTarget<'_>| match ring_statfs(&t.client, path_target(t, 0)) {
                    Ok(s) => {
                        // SAFETY: `buf` is the caller's struct.
                        $fill(unsafe { &mut *buf }, &s);
                        0
                    }
                    Err(e) => fail(e),
                };
                // SAFETY: libc's call with an absolute path and the caller's buffer.
                let kernel = |host: &CStr| unsafe { real::$name()(host.as_ptr(), buf) };
                follow(t, statfs, kernel, fail)
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(path, buf) })
        }
    };
}
statfs_fn!(statfs, libc::statfs, fill_statfs);
statfs_fn!(statfs64, libc::statfs, fill_statfs);
statfs_fn!(statvfs, libc::statvfs, fill_statvfs);
statfs_fn!(statvfs64, libc::statvfs, fill_statvfs);

macro_rules! fstatfs_fn {
    ($name:ident, $out:ty, $fill:ident) => {
        /// Interposed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, buf: *mut $out) -> c_int {
            let served = guarded(|| {
                let (entry, client) = descriptor(fd)?;
                Some(match ring_statfs(&client, Target::Fd(entry.desc)) {
                    Ok(s) => {
                        // SAFETY: `buf` is the caller's struct.
                        $fill(unsafe { &mut *buf }, &s);
                        0
                    }
                    Err(e) => fail(e),
                })
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(fd, buf) })
        }
    };
}
fstatfs_fn!(fstatfs, libc::statfs, fill_statfs);
fstatfs_fn!(fstatfs64, libc::statfs, fill_statfs);
fstatfs_fn!(fstatvfs, libc::statvfs, fill_statvfs);
fstatfs_fn!(fstatvfs64, libc::statvfs, fill_statvfs);

/// Interposed: closing a range closes the btfuse descriptors in it, and leaves this
/// library's own sockets open (the program did not open them and cannot know them).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let private = guarded(|| {
        let client = state::current_client();
        if flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
            for (fd, entry) in state::entries() {
                let n = fd as c_uint;
                if n >= first && n <= last {
                    state::remove(fd);
                    if let Some(client) = &client {
                        release(client, entry.desc);
                    }
                }
            }
        }
        let mut private: Vec<c_uint> = state::private_fds(client.as_ref())
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
        let private = state::private_fds(state::current_client().as_ref());
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

macro_rules! preadv2_fn {
    ($name:ident, $vectored:ident) => {
        /// Interposed: without flags, as `preadv`/`pwritev`; offset -1 uses the file offset.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            iov: *const libc::iovec,
            count: c_int,
            offset: off_t,
            flags: c_int,
        ) -> ssize_t {
            let served = guarded(|| {
                state::lookup(fd)?;
                if flags != 0 {
                    return Some(fail(libc::EOPNOTSUPP) as ssize_t);
                }
                $vectored(fd, iov, count, (offset != -1).then_some(offset))
            })
            .flatten();
            // SAFETY: libc's contract, passed on.
            served.unwrap_or_else(|| unsafe { real::$name()(fd, iov, count, offset, flags) })
        }
    };
}
preadv2_fn!(preadv2, vectored_read);
preadv2_fn!(pwritev2, vectored_write);
preadv2_fn!(preadv64v2, vectored_read);
preadv2_fn!(pwritev64v2, vectored_write);
