//! Calls that name a path: `open` and its relatives, `access`, `mkdir`, `rmdir`, `unlink`,
//! `rename`, `link`, `symlink`, `readlink`, and `umask`, which the creating calls apply.

use std::borrow::Cow;
use std::ffi::CStr;
use std::sync::Arc;

use btfuse_core::ring::{self, Request, Response, Target};
use btfuse_core::{AccessMask, Errno, FileType, RenameMode};
use libc::{c_char, c_int, c_uint, mode_t, size_t, ssize_t};

use crate::attrs;
use crate::connection::{self, PROTOCOL, call};
use crate::descriptors::{self, Entry};
use crate::errno::fail;
use crate::held;
use crate::listings;
use crate::outside::{self, Side, follow};
use crate::paths::{self, PathTarget, at_target, c_bytes};
use crate::real;
use crate::serve::{expect_ok, path_target, release, ring_read, simple};

/// The process's file mode creation mask, as this library last saw it set (`u32::MAX`:
/// not read yet). `umask` is interposed to keep it, so that a create costs no system calls to
/// read it (umask has no query form: reading it takes two).
static UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// The umask system call itself.
fn sys_umask(mask: mode_t) -> mode_t {
    // SAFETY: umask cannot fail and touches no memory.
    unsafe { libc::syscall(libc::SYS_umask, mask) as mode_t }
}

pub(crate) fn current_umask() -> mode_t {
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

/// Opens `target` over the ring and gives it a descriptor number.
fn ring_open(target: &PathTarget, flags: c_int, mode: mode_t) -> c_int {
    if flags & libc::O_TMPFILE == libc::O_TMPFILE {
        return fail(libc::EOPNOTSUPP);
    }
    // A name a kept listing of its directory does not hold is not there (see `attrs`): an
    // open that would not create it fails as the server's walk would, without asking.
    if flags & libc::O_CREAT == 0 {
        let key = (target.at, &target.path[..], flags & libc::O_NOFOLLOW == 0);
        if attrs::from_listing(&target.client, key) == Some(Err(Errno::NotFound)) {
            return fail(libc::ENOENT);
        }
    }
    let parkable = target.at.is_none() && held::parkable(flags);
    if parkable && let Some(fd) = open_parked(target, flags) {
        return fd;
    }
    // Read before the open is sent: the answers kept by then stood before it was served.
    let parking = parkable.then(|| (flags, attrs::moment()));
    let options = ring::OpenOptions::from_linux(flags);
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
        Err(e) => return fail(connection::transport_failed(&e)),
    };
    let placeholder = descriptors::placeholder(flags & libc::O_CLOEXEC != 0);
    // The bytes are copied out while the channel is taken; the table is changed after it is
    // given back (a `fork` settling every description may need a channel meanwhile).
    let mut stamp = None;
    let opened = connection::finish(sent, |r| match r {
        Response::Opened { fd, attr } => Ok((fd, attr.kind, None)),
        Response::OpenedDir { fd, attr, slot }
            if prefetch > 0 && attr.kind == FileType::Directory =>
        {
            stamp = Some(listings::Stamp {
                ino: attr.ino,
                slot,
            });
            Ok((fd, FileType::Directory, None))
        }
        Response::Prefetched {
            fd,
            ino,
            slot,
            version,
            data,
        } if prefetch > 0 && data.len() <= prefetch as usize => {
            let data = (!data.is_empty()).then(|| Arc::<[u8]>::from(data));
            Ok((
                fd,
                FileType::RegularFile,
                Some(((ino, slot, version), data)),
            ))
        }
        _ => Err(PROTOCOL),
    });
    let close_placeholder = || {
        if let Ok(fd) = placeholder {
            // SAFETY: the placeholder was made above and is nobody else's.
            unsafe { real::close()(fd) };
        }
    };
    let (desc, dir) = match opened {
        Ok((desc, _, Some((stamp, data)))) => {
            held::keep(desc, named, stamp, (data, known), prefetch, parking);
            (desc, false)
        }
        Ok((desc, kind, None)) => (desc, kind == FileType::Directory),
        // The engine keeps a fifo or a device node but cannot serve opening it: the kernel
        // opens it (see `open_kernel_object`).
        Err(libc::EOPNOTSUPP) => {
            close_placeholder();
            return open_kernel_object(target, flags, mode);
        }
        Err(e) => {
            close_placeholder();
            return fail(e);
        }
    };
    if dir {
        let base = match target.at {
            None => Some(Vec::new()),
            Some(at) => paths::desc_path(at),
        };
        if let Some(path) = base.and_then(|b| paths::join_lexically(&b, &target.path)) {
            paths::remember_path(desc, path);
        }
    }
    match placeholder {
        Ok(fd) => {
            descriptors::insert(fd, Entry { desc, dir });
            if dir {
                listings::opened(fd, desc, stamp);
            }
            super::streams::sync_std_stream(fd);
            fd
        }
        Err(e) => {
            release(&target.client, desc);
            fail(e)
        }
    }
}

/// Opens `target` (from the served root, `flags` [`held::parkable`]) with the description
/// parked for it, if an open now would reach that one again (see `held`): the descriptor, or
/// `None` for the caller to ask the server. With a description parked but no answer kept to
/// vouch for it, the path's attributes are asked first (`StatStamped`), so that the
/// description the caller opens is parked with one.
fn open_parked(target: &PathTarget, flags: c_int) -> Option<c_int> {
    let client = &target.client;
    let follow = flags & libc::O_NOFOLLOW == 0;
    let key = (None, &target.path[..], follow);
    let stands = |ino, opened_after| match attrs::kept_since(client, key) {
        Some((Ok(attr), kept)) => {
            attr.ino == ino
                && attr.kind == FileType::RegularFile
                && kept <= opened_after
                && recently_read(attr.atime.secs)
        }
        _ => false,
    };
    let desc = match held::open_parked(client.content_source(), &target.path, flags, stands) {
        Ok(desc) => desc,
        Err(ask) => {
            if ask {
                // The path alone: a question about one file is no reason to fetch its
                // directory's names.
                let _ = super::stat::ask_stamped(client, key);
            }
            return None;
        }
    };
    match descriptors::placeholder(flags & libc::O_CLOEXEC != 0) {
        Ok(fd) => {
            descriptors::insert(fd, Entry { desc, dir: false });
            super::streams::sync_std_stream(fd);
            Some(fd)
        }
        Err(e) => {
            release(client, desc);
            Some(fail(e))
        }
    }
}

/// Whether an access time of `atime` (seconds) is recent enough that the server's first read
/// of an open would leave it (relatime moves one a day old), with an hour to spare.
fn recently_read(atime: i64) -> bool {
    const SPARED: i64 = 23 * 60 * 60;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    now.saturating_sub(atime) < SPARED
}

/// Opens a fifo or device node of the btfuse tree: through the mount at the prefix (the
/// kernel makes the pipe or reaches the device); with the ring alone there is none, and the
/// answer is `ENXIO`, as for a device with no driver behind it. (A socket is `ENXIO` from
/// the engine, as from Linux.)
fn open_kernel_object(target: &PathTarget, flags: c_int, mode: mode_t) -> c_int {
    if !crate::config::prefix_is_mounted() {
        return fail(libc::ENXIO);
    }
    match paths::kernel_name(target) {
        // SAFETY: libc's `openat` with the kernel's name for the node.
        Some(name) => unsafe { real::openat()(libc::AT_FDCWD, name.as_ptr(), flags, mode) },
        None => fail(libc::ENOENT),
    }
}

/// `open` and its relatives: served over the ring for btfuse paths.
///
/// # Safety
/// As for `openat(2)`.
unsafe fn open_at(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> Option<c_int> {
    // SAFETY: the caller's contract.
    let target = unsafe { at_target(dirfd, path) }?;
    follow(
        target,
        |t| ring_open(t, flags, mode),
        // SAFETY: libc's `openat` with an absolute path and the caller's flags and mode.
        |host| unsafe { real::openat()(libc::AT_FDCWD, host.as_ptr(), flags, mode) },
        fail,
    )
}

interpose! {
    /// Interposed: btfuse paths open over the ring.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn open, open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
        // SAFETY: libc's contract.
        unsafe { open_at(libc::AT_FDCWD, path, flags, mode) }
    }

    /// Interposed: btfuse paths open over the ring.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn openat, openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
        // SAFETY: libc's contract.
        unsafe { open_at(dirfd, path, flags, mode) }
    }

    /// Interposed: the fortified `open` without a mode.
    fn __open_2, __open64_2(path: *const c_char, flags: c_int) -> c_int {
        // SAFETY: libc's contract.
        unsafe { open_at(libc::AT_FDCWD, path, flags, 0) }
    }

    /// Interposed: the fortified `openat` without a mode (`tar` opens every member with it).
    fn __openat_2, __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
        // SAFETY: libc's contract.
        unsafe { open_at(dirfd, path, flags, 0) }
    }

    /// Interposed: `open(path, O_CREAT | O_WRONLY | O_TRUNC, mode)`.
    fn creat, creat64(path: *const c_char, mode: mode_t) -> c_int {
        let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;
        // SAFETY: libc's contract.
        unsafe { open_at(libc::AT_FDCWD, path, flags, mode) }
    }
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
}

interpose! {
    /// Interposed.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn access(path: *const c_char, mode: c_int) -> c_int {
        // SAFETY: libc's contract.
        unsafe { access_at(libc::AT_FDCWD, path, mode, 0) }
    }

    /// Interposed: `access` with the effective ids (glibc runs it on its own `fstatat`,
    /// which no interposer sees).
    fn euidaccess, eaccess(path: *const c_char, mode: c_int) -> c_int {
        // SAFETY: libc's contract.
        unsafe { access_at(libc::AT_FDCWD, path, mode, libc::AT_EACCESS) }
    }

    /// Interposed.
    fn faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int {
        // SAFETY: libc's contract.
        unsafe { access_at(dirfd, path, mode, flags) }
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdir(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe { mkdirat(libc::AT_FDCWD, path, mode) }
}

interpose! {
    /// Interposed.
    fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
        let serve = |t: &PathTarget<'_>| {
            let mode = mode & 0o7777 & !current_umask();
            let request = Request::Mkdir {
                at: t.at,
                path: &t.path,
                mode,
            };
            expect_ok(&t.client, &request)
        };
        // SAFETY: libc's `mkdirat` with an absolute path.
        let kernel = |host: &CStr| unsafe { real::mkdirat()(libc::AT_FDCWD, host.as_ptr(), mode) };
        // SAFETY: libc's contract.
        unsafe { simple(dirfd, path, serve, kernel) }
    }

    /// Interposed.
    fn rmdir(path: *const c_char) -> c_int {
        let serve = |t: &PathTarget<'_>| ring_rmdir(t);
        // SAFETY: libc's `rmdir` with an absolute path.
        let kernel = |host: &CStr| unsafe { real::rmdir()(host.as_ptr()) };
        // SAFETY: libc's contract.
        unsafe { simple(libc::AT_FDCWD, path, serve, kernel) }
    }
}

/// `rmdir` of a btfuse directory: over the ring, or by the kernel through the mount when a
/// filesystem is mounted below the prefix (the directory may be its mount point, which the
/// kernel refuses to remove with `EBUSY` and the ring cannot see).
fn ring_rmdir(t: &PathTarget<'_>) -> c_int {
    if crate::config::prefix_is_mounted()
        && paths::mounts_below_prefix()
        && let Some(name) = paths::kernel_name(t)
    {
        // SAFETY: libc's `rmdir` with the kernel's name for the directory.
        return unsafe { real::rmdir()(name.as_ptr()) };
    }
    let request = Request::Rmdir {
        at: t.at,
        path: &t.path,
    };
    expect_ok(&t.client, &request)
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe { unlinkat(libc::AT_FDCWD, path, 0) }
}

interpose! {
    /// Interposed.
    fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
        let serve = |t: &PathTarget<'_>| {
            if flags & libc::AT_REMOVEDIR != 0 {
                return ring_rmdir(t);
            }
            // A removed file's bytes are freed once nothing holds it (see `held`).
            held::unpark_all(&t.client);
            let request = Request::Unlink {
                at: t.at,
                path: &t.path,
            };
            expect_ok(&t.client, &request)
        };
        // SAFETY: libc's `unlinkat` with an absolute path.
        let kernel =
            |host: &CStr| unsafe { real::unlinkat()(libc::AT_FDCWD, host.as_ptr(), flags) };
        // SAFETY: libc's contract.
        unsafe { simple(dirfd, path, serve, kernel) }
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
    // A pointer that cannot be the caller's, or a path the kernel refuses before it resolves
    // anything (`PATH_MAX` bytes or more): the kernel's answer for both.
    let refused = |p: *const c_char| {
        // SAFETY: the caller's contract (a pointer that fails the check is not read).
        unsafe { c_bytes(p) }.is_none_or(|b| b.len() >= libc::PATH_MAX as usize)
    };
    if refused(old) || refused(new) {
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
    // SAFETY: the caller's contract.
    let (from, to) = unsafe { two_sides(olddir, old, newdir, new) }?;
    let mode = match flags {
        0 => RenameMode::Replace,
        libc::RENAME_NOREPLACE => RenameMode::NoReplace,
        libc::RENAME_EXCHANGE => RenameMode::Exchange,
        _ => return Some(fail(libc::EINVAL)),
    };
    let serve = |from: &PathTarget<'_>, to: &PathTarget<'_>| {
        // A file renamed over is freed once nothing holds it (see `held`).
        held::unpark_all(&from.client);
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
}

interpose! {
    /// Interposed.
    fn rename(old: *const c_char, new: *const c_char) -> c_int {
        // SAFETY: libc's contract.
        unsafe { rename_at(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0) }
    }

    /// Interposed.
    fn renameat(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char) -> c_int {
        // SAFETY: libc's contract.
        unsafe { rename_at(olddir, old, newdir, new, 0) }
    }

    /// Interposed.
    fn renameat2(
        olddir: c_int,
        old: *const c_char,
        newdir: c_int,
        new: *const c_char,
        flags: c_uint,
    ) -> c_int {
        // SAFETY: libc's contract.
        unsafe { rename_at(olddir, old, newdir, new, flags) }
    }
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
}

interpose! {
    /// Interposed.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t {
        // SAFETY: libc's contract.
        unsafe { readlink_at(libc::AT_FDCWD, path, buf, size) }
    }

    /// Interposed.
    fn readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t {
        // SAFETY: libc's contract.
        unsafe { readlink_at(dirfd, path, buf, size) }
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

interpose! {
    /// Interposed.
    fn symlink(target: *const c_char, path: *const c_char) -> c_int {
        // SAFETY: libc's contract.
        unsafe { symlink_at(target, libc::AT_FDCWD, path) }
    }

    /// Interposed.
    fn symlinkat(target: *const c_char, dirfd: c_int, path: *const c_char) -> c_int {
        // SAFETY: libc's contract.
        unsafe { symlink_at(target, dirfd, path) }
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
}

interpose! {
    /// Interposed.
    fn link(old: *const c_char, new: *const c_char) -> c_int {
        // SAFETY: libc's contract.
        unsafe { link_at(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0) }
    }

    /// Interposed.
    fn linkat(
        olddir: c_int,
        old: *const c_char,
        newdir: c_int,
        new: *const c_char,
        flags: c_int,
    ) -> c_int {
        // SAFETY: libc's contract.
        unsafe { link_at(olddir, old, newdir, new, flags) }
    }
}

/// Interposed: glibc's `remove` is its internal `unlink`, then `rmdir` on `EISDIR`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn remove(path: *const c_char) -> c_int {
    // SAFETY: libc's contract; this library's calls.
    unsafe {
        let saved = crate::errno::errno();
        if unlink(path) == 0 {
            return 0;
        }
        if crate::errno::errno() != libc::EISDIR {
            return -1;
        }
        crate::errno::set_errno(saved);
        rmdir(path)
    }
}

/// Interposed: `readlink` as `_FORTIFY_SOURCE` compiles it, with the buffer's known size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __readlink_chk(
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    buf_len: size_t,
) -> ssize_t {
    if size > buf_len {
        // SAFETY: libc's contract, passed on: libc reports the overflow and aborts.
        return unsafe { real::__readlink_chk()(path, buf, size, buf_len) };
    }
    // SAFETY: libc's contract.
    unsafe { readlink(path, buf, size) }
}

/// Interposed: `readlinkat` as `_FORTIFY_SOURCE` compiles it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __readlinkat_chk(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    buf_len: size_t,
) -> ssize_t {
    if size > buf_len {
        // SAFETY: libc's contract, passed on.
        return unsafe { real::__readlinkat_chk()(dirfd, path, buf, size, buf_len) };
    }
    // SAFETY: libc's contract.
    unsafe { readlinkat(dirfd, path, buf, size) }
}

#[cfg(test)]
mod tests {
    use btfuse_core::ring::OpenOptions;

    #[test]
    fn libc_open_flags_decode_to_their_options() {
        let decoded = OpenOptions::from_linux;
        assert!(decoded(libc::O_RDONLY).read && !decoded(libc::O_RDONLY).write);
        assert!(decoded(libc::O_WRONLY).write && !decoded(libc::O_WRONLY).read);
        assert!(decoded(libc::O_RDWR).read && decoded(libc::O_RDWR).write);
        assert!(decoded(libc::O_ACCMODE).check_read_write);
        assert!(decoded(libc::O_APPEND).append);
        assert!(decoded(libc::O_TRUNC).truncate);
        assert!(decoded(libc::O_CREAT).create);
        assert!(decoded(libc::O_EXCL).exclusive);
        assert!(decoded(libc::O_DIRECTORY).directory);
        assert!(decoded(libc::O_NOFOLLOW).nofollow);
        assert!(decoded(libc::O_NONBLOCK).nonblock);
        assert!(decoded(libc::O_PATH).path_only);
        // What has no option leaves the access mode alone.
        let ignored = libc::O_CLOEXEC | libc::O_LARGEFILE | libc::O_NOCTTY | libc::O_SYNC;
        assert_eq!(decoded(libc::O_WRONLY | ignored), decoded(libc::O_WRONLY));
    }
}
