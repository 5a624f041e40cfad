//! Calls that read attributes: `stat`, `lstat`, `fstat`, `fstatat`, `statx`, `statfs`,
//! `statvfs` and their relatives, and the C structures they fill from the engine's answers.

use std::ffi::CStr;

use btfuse_core::Attr;
use btfuse_core::ring::{Request, Response, Target};
use btfuse_ring_client::Client;
use libc::{c_char, c_int, c_uint};

use crate::attrs;
use crate::connection::{PROTOCOL, call};
use crate::errno::fail;
use crate::guard::guarded;
use crate::outside::follow;
use crate::paths::{PathTarget, at_target, c_bytes};
use crate::real;
use crate::serve::{held_descriptor, path_target};

/// The device number btfuse files report (`st_dev`): "bt" in the minor, major 0x42, far from
/// the numbers Linux hands out for real filesystems.
const DEV_MAJOR: u32 = 0x42;
const DEV_MINOR: u32 = 0x6274;

/// Fills `st` as `stat(2)` would.
fn fill_stat(st: &mut libc::stat, attr: &Attr) {
    // SAFETY: an all-zero `stat` is a valid value (plain integers).
    *st = unsafe { std::mem::zeroed() };
    st.st_dev = libc::makedev(DEV_MAJOR, DEV_MINOR);
    st.st_ino = attr.ino.0;
    st.st_mode = attr.mode();
    st.st_nlink = u64::from(attr.nlink);
    st.st_uid = attr.uid;
    st.st_gid = attr.gid;
    st.st_rdev = u64::from(attr.rdev);
    st.st_size = attr.size as i64;
    st.st_blksize = i64::from(attr.blksize);
    st.st_blocks = attr.blocks as i64;
    st.st_atime = attr.atime.secs;
    st.st_atime_nsec = i64::from(attr.atime.nanos);
    st.st_mtime = attr.mtime.secs;
    st.st_mtime_nsec = i64::from(attr.mtime.nanos);
    st.st_ctime = attr.ctime.secs;
    st.st_ctime_nsec = i64::from(attr.ctime.nanos);
}

/// Fills `stx` as `statx(2)` would for every basic field.
fn fill_statx(stx: &mut libc::statx, attr: &Attr) {
    // SAFETY: an all-zero `statx` is a valid value (plain integers).
    *stx = unsafe { std::mem::zeroed() };
    let ts = |t: btfuse_core::Timestamp| {
        // SAFETY: an all-zero timestamp is valid; the private padding stays zero.
        let mut out: libc::statx_timestamp = unsafe { std::mem::zeroed() };
        out.tv_sec = t.secs;
        out.tv_nsec = t.nanos;
        out
    };
    stx.stx_mask = libc::STATX_BASIC_STATS;
    stx.stx_blksize = attr.blksize;
    stx.stx_nlink = attr.nlink;
    stx.stx_uid = attr.uid;
    stx.stx_gid = attr.gid;
    stx.stx_mode = attr.mode() as u16;
    stx.stx_ino = attr.ino.0;
    stx.stx_size = attr.size;
    stx.stx_blocks = attr.blocks;
    stx.stx_atime = ts(attr.atime);
    stx.stx_ctime = ts(attr.ctime);
    stx.stx_mtime = ts(attr.mtime);
    stx.stx_rdev_major = libc::major(u64::from(attr.rdev));
    stx.stx_rdev_minor = libc::minor(u64::from(attr.rdev));
    stx.stx_dev_major = DEV_MAJOR;
    stx.stx_dev_minor = DEV_MINOR;
}

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

/// Asks for directory `dir`'s listing with every name's stamped attributes (walked from
/// `at`) and keeps it; whether it came. A refusal (a directory the caller may not list, one
/// too large, a change under way) leaves the question to `StatStamped`.
fn fetch_listing(client: &Client, at: Option<u32>, dir: &[u8]) -> bool {
    let target = Target::Path {
        at,
        path: dir,
        follow: true,
    };
    let asked = attrs::asking();
    let fetched = call(client, &Request::StatDir { target }, |r| match r {
        Response::StampedDir { stamps, entries } => {
            attrs::keep_listing(client, (at, dir), asked, stamps, entries);
            Ok(())
        }
        _ => Err(PROTOCOL),
    });
    if fetched.is_err() {
        // A walk that left is the question's to find again, with its own walk.
        crate::left::discard();
    }
    fetched.is_ok()
}

/// The attributes the path `t` names (`flags`: `AT_SYMLINK_NOFOLLOW`), or the errno: from
/// what this process keeps while that stands, else asked with `StatStamped` and the answer
/// kept (see [`crate::attrs`]).
fn path_attr(t: &PathTarget<'_>, flags: c_int) -> Result<Attr, c_int> {
    let (at, path, follow) = (t.at, &t.path[..], flags & libc::AT_SYMLINK_NOFOLLOW == 0);
    let key = (at, path, follow);
    if let Some(outcome) = attrs::kept(&t.client, key) {
        return outcome.map_err(|e| e.code());
    }
    if let Some(dir) = attrs::missed(key)
        && fetch_listing(&t.client, at, dir)
        && let Some(outcome) = attrs::from_listing(&t.client, key)
    {
        return outcome.map_err(|e| e.code());
    }
    ask_stamped(&t.client, key)
}

/// Asks the server for the attributes of `key` with `StatStamped` and keeps the answer (see
/// [`crate::attrs`]): the attributes, or the errno.
pub(super) fn ask_stamped(client: &Client, key: attrs::Key<'_>) -> Result<Attr, c_int> {
    let (at, path, follow) = key;
    let target = Target::Path { at, path, follow };
    let asked = attrs::asking();
    call(client, &Request::StatStamped { target }, |r| match r {
        Response::Attr(attr) => Ok(attr),
        Response::Stamped { outcome, stamps } => {
            attrs::keep(client, key, asked, outcome, stamps);
            outcome.map_err(|e| e.code())
        }
        _ => Err(PROTOCOL),
    })
}

interpose! {
    /// Interposed.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn fstat, fstat64(fd: c_int, buf: *mut libc::stat) -> c_int {
        // A description's attributes do not depend on its offset: one this process keeps
        // stays kept (see `held`).
        let (entry, client) = held_descriptor(fd)?;
        Some(ring_stat(&client, Target::Fd(entry.desc), buf))
    }
}

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
    // SAFETY: the caller's contract.
    let empty = unsafe { c_bytes(path) }.is_some_and(<[u8]>::is_empty);
    if empty && flags & libc::AT_EMPTY_PATH != 0 {
        let (entry, client) = held_descriptor(dirfd)?;
        return Some(ring_stat(&client, Target::Fd(entry.desc), buf));
    }
    // SAFETY: the caller's contract.
    let t = unsafe { at_target(dirfd, path) }?;
    follow(
        t,
        |t| match path_attr(t, flags) {
            Ok(attr) => {
                // SAFETY: the caller's `buf` points at a `struct stat`.
                fill_stat(unsafe { &mut *buf }, &attr);
                0
            }
            Err(code) => fail(code),
        },
        // SAFETY: libc's `fstatat` with an absolute path and the caller's buffer.
        |host| unsafe { real::fstatat()(libc::AT_FDCWD, host.as_ptr(), buf, flags) },
        fail,
    )
}

interpose! {
    /// Interposed.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn stat, stat64(path: *const c_char, buf: *mut libc::stat) -> c_int {
        // SAFETY: libc's contract.
        unsafe { stat_at(libc::AT_FDCWD, path, buf, 0) }
    }

    /// Interposed.
    fn lstat, lstat64(path: *const c_char, buf: *mut libc::stat) -> c_int {
        // SAFETY: libc's contract.
        unsafe { stat_at(libc::AT_FDCWD, path, buf, libc::AT_SYMLINK_NOFOLLOW) }
    }

    /// Interposed.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn fstatat, fstatat64(
        dirfd: c_int,
        path: *const c_char,
        buf: *mut libc::stat,
        flags: c_int,
    ) -> c_int {
        // SAFETY: libc's contract.
        unsafe { stat_at(dirfd, path, buf, flags) }
    }

    /// Interposed.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn statx(
        dirfd: c_int,
        path: *const c_char,
        flags: c_int,
        mask: c_uint,
        buf: *mut libc::statx,
    ) -> c_int {
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
            let (entry, client) = held_descriptor(dirfd)?;
            return Some(fill(&client, Target::Fd(entry.desc)));
        }
        // SAFETY: libc's contract.
        let t = unsafe { at_target(dirfd, path) }?;
        follow(
            t,
            |t| match path_attr(t, flags) {
                Ok(attr) => {
                    // SAFETY: the caller's `buf` points at a `struct statx`.
                    fill_statx(unsafe { &mut *buf }, &attr);
                    0
                }
                Err(code) => fail(code),
            },
            // SAFETY: libc's `statx` with an absolute path and the caller's buffer.
            |host| unsafe { real::statx()(libc::AT_FDCWD, host.as_ptr(), flags, mask, buf) },
            fail,
        )
    }
}

/// Interposed: `newfstatat` is glibc's name for `fstatat` in some builds (passed to libc's
/// `fstatat`, hence not in `interpose!`).
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.hot.btfuse")]
pub unsafe extern "C" fn newfstatat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
    flags: c_int,
) -> c_int {
    // SAFETY: libc's contract.
    let served = guarded(|| unsafe { stat_at(dirfd, path, buf, flags) }).flatten();
    // SAFETY: libc's contract, passed on.
    served.unwrap_or_else(|| unsafe { real::fstatat()(dirfd, path, buf, flags) })
}

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

/// Fills `buf` with `fill` from a `Statfs` answer: 0, or -1 and `errno`.
///
/// # Safety
/// `buf` points at a writable `T`.
unsafe fn answer_statfs<T>(
    answer: Result<btfuse_core::StatFs, i32>,
    buf: *mut T,
    fill: fn(&mut T, &btfuse_core::StatFs),
) -> c_int {
    debug_assert!(!buf.is_null());
    match answer {
        Ok(s) => {
            // SAFETY: the caller's contract.
            fill(unsafe { &mut *buf }, &s);
            0
        }
        Err(e) => fail(e),
    }
}

/// `statfs` and `statvfs` of a btfuse path, into `buf` with `fill`; `kernel` where the walk
/// leaves the tree.
///
/// # Safety
/// `path` is null or a valid C string; `buf` points at a writable `T`.
unsafe fn path_statfs<T>(
    path: *const c_char,
    buf: *mut T,
    fill: fn(&mut T, &btfuse_core::StatFs),
    kernel: impl FnMut(&CStr) -> c_int,
) -> Option<c_int> {
    // SAFETY: the caller's contract.
    let t = unsafe { at_target(libc::AT_FDCWD, path) }?;
    let statfs = |t: &PathTarget<'_>| {
        let answer = ring_statfs(&t.client, path_target(t, 0));
        // SAFETY: the caller's contract.
        unsafe { answer_statfs(answer, buf, fill) }
    };
    follow(t, statfs, kernel, fail)
}

/// `fstatfs` and `fstatvfs` of a btfuse descriptor, into `buf` with `fill`.
///
/// # Safety
/// `buf` points at a writable `T`.
unsafe fn fd_statfs<T>(
    fd: c_int,
    buf: *mut T,
    fill: fn(&mut T, &btfuse_core::StatFs),
) -> Option<c_int> {
    let (entry, client) = held_descriptor(fd)?;
    let answer = ring_statfs(&client, Target::Fd(entry.desc));
    // SAFETY: the caller's contract.
    Some(unsafe { answer_statfs(answer, buf, fill) })
}

interpose! {
    /// Interposed.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn statfs, statfs64(path: *const c_char, buf: *mut libc::statfs) -> c_int; real = libc_fn {
        // SAFETY: libc's call with an absolute path and the caller's buffer.
        let kernel = |host: &CStr| unsafe { libc_fn()(host.as_ptr(), buf) };
        // SAFETY: libc's contract.
        unsafe { path_statfs(path, buf, fill_statfs, kernel) }
    }

    /// Interposed.
    fn statvfs, statvfs64(path: *const c_char, buf: *mut libc::statvfs) -> c_int; real = libc_fn {
        // SAFETY: libc's call with an absolute path and the caller's buffer.
        let kernel = |host: &CStr| unsafe { libc_fn()(host.as_ptr(), buf) };
        // SAFETY: libc's contract.
        unsafe { path_statfs(path, buf, fill_statvfs, kernel) }
    }

    /// Interposed.
    fn fstatfs, fstatfs64(fd: c_int, buf: *mut libc::statfs) -> c_int {
        // SAFETY: libc's contract.
        unsafe { fd_statfs(fd, buf, fill_statfs) }
    }

    /// Interposed.
    fn fstatvfs, fstatvfs64(fd: c_int, buf: *mut libc::statvfs) -> c_int {
        // SAFETY: libc's contract.
        unsafe { fd_statfs(fd, buf, fill_statvfs) }
    }
}

/// The structure versions glibc's old `stat` entry points accept on this architecture
/// (`_STAT_VER_KERNEL` and `_STAT_VER_LINUX`): both the `struct stat` of today's calls.
fn stat_version_known(version: c_int) -> bool {
    version == 0 || version == 1
}

/// Interposed: glibc's old entry point for `stat` (programs built before glibc 2.33 call
/// it), the structure version first; served as `stat`, or `EINVAL` for a version glibc
/// refuses too.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __xstat(
    version: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
) -> c_int {
    if !stat_version_known(version) {
        return fail(libc::EINVAL);
    }
    // SAFETY: libc's contract.
    unsafe { stat(path, buf) }
}

/// Interposed: as [`__xstat`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __xstat64(
    version: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
) -> c_int {
    // SAFETY: libc's contract.
    unsafe { __xstat(version, path, buf) }
}

/// Interposed: glibc's old entry point for `lstat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __lxstat(
    version: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
) -> c_int {
    if !stat_version_known(version) {
        return fail(libc::EINVAL);
    }
    // SAFETY: libc's contract.
    unsafe { lstat(path, buf) }
}

/// Interposed: as [`__lxstat`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __lxstat64(
    version: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
) -> c_int {
    // SAFETY: libc's contract.
    unsafe { __lxstat(version, path, buf) }
}

/// Interposed: glibc's old entry point for `fstat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __fxstat(version: c_int, fd: c_int, buf: *mut libc::stat) -> c_int {
    if !stat_version_known(version) {
        return fail(libc::EINVAL);
    }
    // SAFETY: libc's contract.
    unsafe { fstat(fd, buf) }
}

/// Interposed: as [`__fxstat`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __fxstat64(version: c_int, fd: c_int, buf: *mut libc::stat) -> c_int {
    // SAFETY: libc's contract.
    unsafe { __fxstat(version, fd, buf) }
}

/// Interposed: glibc's old entry point for `fstatat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __fxstatat(
    version: c_int,
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
    flags: c_int,
) -> c_int {
    if !stat_version_known(version) {
        return fail(libc::EINVAL);
    }
    // SAFETY: libc's contract.
    unsafe { fstatat(dirfd, path, buf, flags) }
}

/// Interposed: as [`__fxstatat`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __fxstatat64(
    version: c_int,
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
    flags: c_int,
) -> c_int {
    // SAFETY: libc's contract.
    unsafe { __fxstatat(version, dirfd, path, buf, flags) }
}
