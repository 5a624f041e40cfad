//! Where the filesystem is and how to reach it: the environment's variables (`BTFUSE_SOCKET`,
//! `BTFUSE_PREFIX`) or, without them, the btfuse mounts this process sees, and the one a
//! process binds to once it touches it.
//!
//! **Nothing here allocates, locks or makes an interposed call.** Every intercepted call asks
//! this module first whether its path is btfuse's, including calls made while the program's
//! allocator initialises itself (jemalloc reads `/etc/malloc.conf` from inside its first
//! `malloc`), from signal handlers and from the dynamic loader's constructors. So the
//! configuration lives in fixed static buffers, is published with atomics, and is read from
//! the system with raw system calls:
//!
//! - [`load`] runs as the library's first constructor: it copies the variables (`getenv`
//!   neither allocates nor locks) and then marks the library [`ready`]. Until then every
//!   call passes through to libc untouched ([`crate::guard`] asks).
//! - The btfuse mounts are found at the first path call that needs them: from the list a
//!   parent process passed in `BTFUSE_MOUNTS`, else from the sockets in the directories that
//!   hold the sockets this process may use (root's, `/run/btfuse`, and its own user's; see
//!   `btfuse_ring_client::discovery`), each socket's mount point checked with one `statx`
//!   (see [`mounted_at`]). Either way the list is handed on to the programs this process
//!   executes (see [`mounts_variable`]), so that in a shell script or a build only the first
//!   process lists the sockets.
//! - Without a list handed down, the sockets are listed only for an absolute path: three
//!   system calls, and a path under no mount point they name is not looked at again. The
//!   mount table (`/proc/self/mountinfo`) is never read for this: the kernel writes it out
//!   in full at every read, which cost a new process about 80 µs.
//! - Whichever way the mount was found, the server says in its welcome which kernel mount
//!   it serves (its device), and a process uses the connection only if that device is the
//!   one mounted at the mount point now ([`serves_mount`]). So a list from another mount
//!   namespace, or a socket whose mount was replaced, never puts the ring where the kernel
//!   shows something else; the paths go to the kernel instead.
//!
//! A list passed down can be stale in one direction only: a btfuse mount made after the
//! parent looked is not in it, and its paths then go to the kernel (through that mount) as
//! without this library. A mount that went away has no socket either, so the connection
//! fails and calls go to the kernel as well.

use std::cell::UnsafeCell;
use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use btfuse_ring_client::discovery::{self, Writer};

use crate::hot::HOT;

/// Environment variable naming the server's socket.
pub const SOCKET_VAR: &str = "BTFUSE_SOCKET";
/// Environment variable naming the directory the server's filesystem appears at.
pub const PREFIX_VAR: &str = "BTFUSE_PREFIX";
/// Environment variable an `exec` hands the descriptor table to the next program in.
pub const INHERIT_VAR: &str = "BTFUSE_INHERIT";
/// Environment variable a process hands the btfuse mounts it found to the programs it
/// executes in: for each mount the uid that mounted it, `:` and its mount point escaped as
/// `mountinfo` escapes it, separated by spaces.
pub const MOUNTS_VAR: &str = "BTFUSE_MOUNTS";
/// How an entry of [`MOUNTS_VAR`] starts in an environment.
pub(crate) const MOUNTS_VAR_ENTRY: &[u8] = b"BTFUSE_MOUNTS=";

/// The longest prefix kept (`PATH_MAX`).
const PREFIX_CAP: usize = libc::PATH_MAX as usize;
/// The longest socket path a Unix socket address holds (`sun_path`).
const SOCKET_CAP: usize = 108;
/// The btfuse mounts kept; paths under any further one go to the kernel, through its mount.
const MAX_MOUNTS: usize = 8;
/// The longest `BTFUSE_MOUNTS` value read or written; a longer list is read again from the
/// mount table instead.
const MOUNTS_VALUE_CAP: usize = 16 * 1024;

/// Where the filesystem is and how to reach it.
pub(crate) struct Config {
    /// Absolute, without a trailing slash (empty for `/`).
    prefix: [u8; PREFIX_CAP],
    prefix_len: usize,
    socket: [u8; SOCKET_CAP],
    socket_len: usize,
    /// The user that mounted it (0 for one named by the variables).
    uid: u32,
}

impl Config {
    const EMPTY: Config = Config {
        prefix: [0; PREFIX_CAP],
        prefix_len: 0,
        socket: [0; SOCKET_CAP],
        socket_len: 0,
        uid: 0,
    };

    /// The directory the filesystem appears at: absolute, without a trailing slash (empty for
    /// `/`).
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix[..self.prefix_len]
    }

    /// The server's socket.
    pub(crate) fn socket(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.socket[..self.socket_len]))
    }

    /// Sets the prefix from `path` (absolute, trailing slashes dropped); `None` if it is not
    /// absolute or does not fit.
    fn set_prefix(&mut self, path: &[u8]) -> Option<()> {
        if path.first() != Some(&b'/') {
            return None;
        }
        let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
        let trimmed = path.get(..end)?;
        self.prefix
            .get_mut(..trimmed.len())?
            .copy_from_slice(trimmed);
        self.prefix_len = trimmed.len();
        Some(())
    }
}

/// A static written once, before the atomic that publishes it is stored with `Release`, and
/// read only after that atomic was loaded with `Acquire`.
struct Published<T>(UnsafeCell<T>);

// SAFETY: see the type's doc: one writer, before publication; readers after it.
unsafe impl<T> Sync for Published<T> {}

impl<T> Published<T> {
    /// # Safety
    /// The caller is the one writer, and nothing has been published yet.
    #[allow(clippy::mut_from_ref)]
    unsafe fn write(&self) -> &mut T {
        // SAFETY: the caller's contract.
        unsafe { &mut *self.0.get() }
    }

    /// # Safety
    /// The value was published (see the type's doc).
    unsafe fn read(&self) -> &T {
        // SAFETY: the caller's contract: no writer any more.
        unsafe { &*self.0.get() }
    }
}

// Set by `load` once the variables are read: `HOT.ready`. Whether the variables named a
// configuration (`EXPLICIT` holds it), written before it: `HOT.has_explicit`.
static EXPLICIT: Published<Config> = Published(UnsafeCell::new(Config::EMPTY));

/// What [`load`] copied from the environment besides the explicit configuration.
///
/// The lengths come first and the values follow one another, so that short ones (the usual
/// case) share one page of `.bss` with the lengths: each page of it a process writes is a
/// page fault.
#[repr(C)]
struct Environment {
    /// The length of `XDG_RUNTIME_DIR` (where this user's sockets are), at the start of
    /// `values`.
    runtime_len: Option<usize>,
    /// The length of `BTFUSE_MOUNTS`'s value, right after the runtime directory in `values`.
    mounts_len: Option<usize>,
    values: [u8; PREFIX_CAP + MOUNTS_VALUE_CAP],
}

impl Environment {
    /// `XDG_RUNTIME_DIR`, if it was set (and fit).
    fn runtime(&self) -> Option<&[u8]> {
        self.runtime_len.map(|len| &self.values[..len])
    }

    /// `BTFUSE_MOUNTS`'s value, if it was set (and fit).
    fn mounts(&self) -> Option<&[u8]> {
        let start = self.runtime_len.unwrap_or(0);
        self.mounts_len.map(|len| &self.values[start..start + len])
    }
}

static ENVIRONMENT: Published<Environment> = Published(UnsafeCell::new(Environment {
    runtime_len: None,
    mounts_len: None,
    values: [0; PREFIX_CAP + MOUNTS_VALUE_CAP],
}));

/// Whether the library has read its configuration: until then every call passes through.
pub(crate) fn ready() -> bool {
    HOT.ready.load(Ordering::Acquire)
}

/// `name`'s value, as the environment holds it now.
fn getenv(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv reads the environment without allocating or locking; the value is
    // copied by the caller before the program runs on (this is the library's constructor).
    let value = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: getenv returned null or a NUL-terminated string.
    (!value.is_null()).then(|| unsafe { CStr::from_ptr(value) }.to_bytes())
}

/// Copies `value` into `buf`; its length, or `None` if it does not fit.
fn copy_into(buf: &mut [u8], value: &[u8]) -> Option<usize> {
    buf.get_mut(..value.len())?.copy_from_slice(value);
    Some(value.len())
}

/// Reads the variables, then marks the library ready. The library's first constructor (a
/// `.init_array` entry of high priority, so it runs before the others of this library).
#[unsafe(link_section = ".text.hot.btfuse")]
extern "C" fn load() {
    // SAFETY: this runs once, in the constructor, before `HOT.ready` publishes anything.
    let explicit = unsafe { EXPLICIT.write() };
    if let (Some(socket), Some(prefix)) = (getenv(c"BTFUSE_SOCKET"), getenv(c"BTFUSE_PREFIX"))
        && explicit.set_prefix(prefix).is_some()
        && let Some(len) = copy_into(&mut explicit.socket, socket)
    {
        explicit.socket_len = len;
        HOT.has_explicit.store(true, Ordering::Relaxed);
    }
    // SAFETY: as above.
    let environment = unsafe { ENVIRONMENT.write() };
    // Written only when set: a process without the variables never touches the buffer.
    let runtime = &mut environment.values[..PREFIX_CAP];
    let runtime_len = getenv(c"XDG_RUNTIME_DIR").and_then(|d| copy_into(runtime, d));
    if runtime_len.is_some() {
        environment.runtime_len = runtime_len;
    }
    // The list goes right after the runtime directory (see `Environment`), within its cap.
    let start = runtime_len.unwrap_or(0);
    let mounts = &mut environment.values[start..start + MOUNTS_VALUE_CAP];
    if let Some(len) = getenv(c"BTFUSE_MOUNTS").and_then(|m| copy_into(mounts, m)) {
        environment.mounts_len = Some(len);
    }
    // Pairs with the Acquire load of `ready`.
    HOT.ready.store(true, Ordering::Release);
}

#[used]
#[unsafe(link_section = ".init_array.00100")]
static LOAD: extern "C" fn() = load;

/// The configuration the environment gives (`BTFUSE_SOCKET` and `BTFUSE_PREFIX`).
fn explicit() -> Option<&'static Config> {
    if !ready() || !HOT.has_explicit.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: published by `load` before `HOT.ready`, which was just loaded with Acquire.
    Some(unsafe { EXPLICIT.read() })
}

fn environment() -> Option<&'static Environment> {
    // SAFETY: as in `explicit`.
    ready().then(|| unsafe { ENVIRONMENT.read() })
}

/// The btfuse mounts found, once `HOT.discovery` is [`FOUND`] (their count:
/// `HOT.mount_count`).
static MOUNTS: Published<[Config; MAX_MOUNTS]> =
    Published(UnsafeCell::new([const { Config::EMPTY }; MAX_MOUNTS]));
/// `BTFUSE_MOUNTS=...` for the programs this process executes, NUL-terminated; empty if the
/// list does not fit (its length: `HOT.mounts_entry_len`). Written when a program is first
/// started (`HOT.entry`), not when the mounts are found: most processes never start one, and
/// then never touch this buffer's page.
static MOUNTS_ENTRY: Published<[u8; MOUNTS_VALUE_CAP + 16]> =
    Published(UnsafeCell::new([0; MOUNTS_VALUE_CAP + 16]));

/// Where finding the mounts stands (`HOT.discovery`) and listing the candidates
/// (`HOT.listing`): [`UNREAD`], [`READING`] (one thread is at it) or [`FOUND`].
pub(crate) const UNREAD: u8 = 0;
const READING: u8 = 1;
const FOUND: u8 = 2;

/// The btfuse mounts this process may serve, found once. A thread that finds another one
/// reading them waits for it (a few system calls that never block on anything of this
/// library's; the reader cannot be interrupted into this function on its own thread, since
/// it runs as the interceptor and calls made then pass through).
#[unsafe(link_section = ".text.hot.btfuse")]
fn mounts() -> &'static [Config] {
    let found = once(&HOT.discovery, &MOUNTS, |found| {
        let count = discover(found);
        HOT.mount_count.store(count, Ordering::Relaxed);
    });
    &found[..HOT.mount_count.load(Ordering::Relaxed)]
}

/// The mount points the socket directories name (see the module doc): a path under none of
/// them is served by no mount this process can reach over the ring.
struct Candidates {
    points: [[u8; SOCKET_CAP]; MAX_MOUNTS],
    lens: [usize; MAX_MOUNTS],
    /// The user whose directory named each: the one that mounted it.
    uids: [u32; MAX_MOUNTS],
    count: usize,
    /// More than fit, or a name that did not read back: every path may be served.
    overflow: bool,
}

// In `.data` (see `crate::hot`): every process that makes a path call fills it.
#[unsafe(link_section = ".data.btfuse.candidates")]
static CANDIDATES: Published<Candidates> = Published(UnsafeCell::new(Candidates {
    points: [[0; SOCKET_CAP]; MAX_MOUNTS],
    lens: [0; MAX_MOUNTS],
    uids: [0; MAX_MOUNTS],
    count: 0,
    overflow: false,
}));

/// Runs `fill` once, by the first thread to get here, on `value`, published by `state`; a
/// thread that finds another one at it waits (see [`mounts`] for why that cannot deadlock).
fn once<T>(
    state: &AtomicU8,
    value: &'static Published<T>,
    fill: impl FnOnce(&mut T),
) -> &'static T {
    if state.load(Ordering::Acquire) != FOUND {
        if state
            .compare_exchange(UNREAD, READING, Ordering::Acquire, Ordering::Acquire)
            .is_ok()
        {
            // SAFETY: this thread won the right to write; nothing is published yet.
            fill(unsafe { value.write() });
            // Pairs with the Acquire loads above.
            state.store(FOUND, Ordering::Release);
        } else {
            while state.load(Ordering::Acquire) != FOUND {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }
    // SAFETY: published: FOUND was loaded with Acquire.
    unsafe { value.read() }
}

/// Whether `path` (absolute) may be under a btfuse mount this process can serve, found
/// without checking any mount point when no list was handed down.
fn may_be_served(path: &[u8]) -> bool {
    if HOT.discovery.load(Ordering::Acquire) == FOUND
        || environment().is_some_and(|e| e.mounts().is_some())
    {
        return true;
    }
    let candidates = once(&HOT.listing, &CANDIDATES, list_candidates);
    candidates.overflow
        || (0..candidates.count).any(|i| {
            let point = &candidates.points[i][..candidates.lens[i]];
            let point = if point == b"/" { &b""[..] } else { point };
            under(path, point)
        })
}

/// Lists the socket directories this process may use into `found`.
fn list_candidates(found: &mut Candidates) {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mut own = [0u8; PREFIX_CAP + 16];
    let mut dir = Writer::new(&mut own);
    let runtime = environment().and_then(Environment::runtime);
    let own_len = (euid != 0)
        .then(|| discovery::write_socket_dir(euid, runtime, &mut dir).map(|()| dir.len()))
        .flatten();
    let mut root = *b"/run/btfuse\0";
    list_sockets(&mut root, 0, found);
    if let Some(len) = own_len.filter(|&len| len < own.len()) {
        own[len] = 0;
        list_sockets(&mut own[..=len], euid, found);
    }
}

/// Adds the mount points the `*.sock` names in directory `dir` (NUL-terminated, `uid`'s)
/// stand for, read with raw system calls.
fn list_sockets(dir: &mut [u8], uid: u32, found: &mut Candidates) {
    // SAFETY: raw system calls (not the interposed `open`) on a NUL-terminated path.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: getdents64 fills at most `buf.len()` bytes of `buf`.
        let got = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        let Ok(got) = usize::try_from(got) else {
            found.overflow = true;
            break;
        };
        if got == 0 {
            break;
        }
        let mut at = 0;
        // A linux_dirent64: inode (8), offset (8), record length (2), type (1), name.
        while at + 19 <= got {
            let reclen = usize::from(u16::from_ne_bytes([buf[at + 16], buf[at + 17]]));
            if reclen < 19 || at + reclen > got {
                found.overflow = true;
                break;
            }
            let name = &buf[at + 19..at + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(stem) = name.strip_suffix(b".sock") {
                add_candidate(stem, uid, found);
            }
            at += reclen;
        }
    }
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

fn add_candidate(stem: &[u8], uid: u32, found: &mut Candidates) {
    let Some(slot) = found.points.get_mut(found.count) else {
        found.overflow = true;
        return;
    };
    let mut out = Writer::new(slot);
    match discovery::write_unescaped_path(stem, &mut out) {
        Some(()) => {
            found.lens[found.count] = out.len();
            found.uids[found.count] = uid;
            found.count += 1;
        }
        None => found.overflow = true,
    }
}

/// The btfuse mounts that may hold `path`: none, without reading the mount table, when no
/// socket names a mount point above it (see [`may_be_served`]).
#[unsafe(link_section = ".text.hot.btfuse")]
fn mounts_for(path: &[u8]) -> &'static [Config] {
    if may_be_served(path) { mounts() } else { &[] }
}

/// Fills `found` with the btfuse mounts: the inherited list if there is one, else those the
/// listed sockets name whose mount point is a mount here ([`mounted_at`]). Returns how many.
/// Either way the mount a process binds to is checked when it connects ([`serves_mount`]).
fn discover(found: &mut [Config; MAX_MOUNTS]) -> usize {
    let Some(environment) = environment() else {
        return 0;
    };
    let runtime = environment.runtime();
    let inherited = environment.mounts().and_then(read_inherited);
    let mut count = 0;
    match inherited {
        Some(list) => {
            for (mountpoint, uid) in list {
                if let Some(slot) = found.get_mut(count)
                    && fill(slot, mountpoint, uid, runtime).is_some()
                {
                    count += 1;
                }
            }
        }
        None => {
            let candidates = once(&HOT.listing, &CANDIDATES, list_candidates);
            for i in 0..candidates.count {
                let point = &candidates.points[i][..candidates.lens[i]];
                if let Some(slot) = found.get_mut(count)
                    && mounted_at(point).is_some()
                    && fill_point(slot, point, candidates.uids[i], runtime).is_some()
                {
                    count += 1;
                }
            }
        }
    }
    count
}

/// The device of the filesystem mounted at `point` in this process's mount namespace, if
/// it is of the kind btfuse mounts: the root of a mount, on a device without a block device
/// (major 0, as for every FUSE mount). One `statx` that asks the filesystem nothing (no
/// attributes, and what is cached suffices), instead of reading the mount table: a socket
/// named for a mount point whose mount went away, or that this namespace does not see, is
/// not used.
fn mounted_at(point: &[u8]) -> Option<u64> {
    let mut path = [0u8; PREFIX_CAP + 2];
    let point = if point.is_empty() { b"/" } else { point };
    copy_into(&mut path[..PREFIX_CAP + 1], point)?;
    // SAFETY: a zeroed `statx` is a valid buffer for the kernel to fill.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a raw system call (not the interposed `statx`) on a NUL-terminated path (the
    // buffer is one longer than anything copied in) into `stx`.
    let done = unsafe {
        libc::syscall(
            libc::SYS_statx,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT | libc::AT_STATX_DONT_SYNC,
            0u32,
            &mut stx as *mut libc::statx,
        )
    };
    let root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    (done == 0
        && stx.stx_attributes_mask & root != 0
        && stx.stx_attributes & root != 0
        && stx.stx_dev_major == 0)
        .then(|| libc::makedev(stx.stx_dev_major, stx.stx_dev_minor))
}

/// Whether a server that says it serves the kernel mount of device `mount_dev` (0: none)
/// serves what `config` names: always for a configuration the variables gave (a ring with
/// no mount, possibly), and for a discovered mount only if that device is mounted at its
/// mount point now. A socket left by a server whose mount was replaced, or a list handed
/// down from another mount namespace, then never puts the ring where the kernel shows
/// something else.
pub(crate) fn serves_mount(config: &Config, mount_dev: u64) -> bool {
    explicit().is_some() || (mount_dev != 0 && mounted_at(config.prefix()) == Some(mount_dev))
}

/// `slot` for the mount at `mountpoint` (escaped as `mountinfo` escapes it) mounted by `uid`,
/// with its socket placed by the discovery rule. `None` if it does not fit: a mount point
/// longer than a socket address is never served over the ring.
fn fill(slot: &mut Config, mountpoint: &[u8], uid: u32, runtime: Option<&[u8]>) -> Option<()> {
    let mut point = [0u8; SOCKET_CAP];
    let mut unescaped = Writer::new(&mut point);
    discovery::unescape_mountinfo_into(mountpoint, &mut unescaped)?;
    let len = unescaped.len();
    fill_point(slot, &point[..len], uid, runtime)
}

/// [`fill`] for the mount point `point` as it is (not escaped).
fn fill_point(slot: &mut Config, point: &[u8], uid: u32, runtime: Option<&[u8]>) -> Option<()> {
    slot.set_prefix(point)?;
    // SAFETY: geteuid cannot fail.
    let own = uid == unsafe { libc::geteuid() };
    let mut other = [0u8; 32];
    let runtime = if own {
        runtime
    } else {
        let mut dir = Writer::new(&mut other);
        dir.push(b"/run/user/")?;
        dir.push_decimal(u64::from(uid))?;
        let len = dir.len();
        Some(&other[..len])
    };
    let mut socket = Writer::new(&mut slot.socket);
    discovery::write_socket_for_mount(point, uid, runtime, &mut socket)?;
    slot.socket_len = socket.len();
    slot.uid = uid;
    Some(())
}

/// The mounts of a `BTFUSE_MOUNTS` value (mount point as escaped there, uid) if it is well
/// formed; `None` otherwise.
fn read_inherited(value: &[u8]) -> Option<impl Iterator<Item = (&[u8], u32)>> {
    let fields = value.split(|&b| b == b' ').filter(|f| !f.is_empty());
    // Checked whole before any of it is used.
    if fields.clone().any(|f| inherited_mount(f).is_none()) {
        return None;
    }
    Some(fields.filter_map(inherited_mount))
}

/// One mount of a `BTFUSE_MOUNTS` value: `UID:MOUNTPOINT`.
fn inherited_mount(field: &[u8]) -> Option<(&[u8], u32)> {
    let (uid, mountpoint) = split_once(field, b':')?;
    Some((mountpoint, u32::try_from(parse_u64(uid)?).ok()?))
}

fn split_once(field: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = field.iter().position(|&b| b == separator)?;
    Some((&field[..at], &field[at + 1..]))
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &d| {
        d.is_ascii_digit()
            .then_some(())
            .and(value.checked_mul(10)?.checked_add(u64::from(d - b'0')))
    })
}

/// Writes `BTFUSE_MOUNTS=...` for `mounts` into `entry`, NUL-terminated; its length without
/// the NUL, or `None` if it does not fit.
fn mounts_entry(mounts: &[Config], entry: &mut [u8]) -> Option<usize> {
    let mut out = Writer::new(entry);
    out.push(MOUNTS_VAR_ENTRY)?;
    for (i, mount) in mounts.iter().enumerate() {
        if i > 0 {
            out.push(b" ")?;
        }
        out.push_decimal(u64::from(mount.uid))?;
        out.push(b":")?;
        let prefix = mount.prefix();
        discovery::escape_mountinfo_into(if prefix.is_empty() { b"/" } else { prefix }, &mut out)?;
    }
    let len = out.len();
    out.push(b"\0")?;
    (len <= MOUNTS_VALUE_CAP).then_some(len)
}

/// The mount this process serves over the ring once it has touched one (an index into the
/// mounts, or [`NONE`]; `HOT.chosen`): a process binds to one btfuse mount; paths under any
/// other still reach theirs, through the kernel.
pub(crate) const NONE: usize = usize::MAX;

fn chosen() -> Option<&'static Config> {
    match HOT.chosen.load(Ordering::Acquire) {
        NONE => None,
        index => mounts().get(index),
    }
}

/// The configuration in force: the environment's, else the discovered mount chosen so far;
/// `None` means everything passes through.
pub(crate) fn config() -> Option<&'static Config> {
    explicit().or_else(chosen)
}

/// Whether `path` (absolute) is `prefix` or below it.
fn under(path: &[u8], prefix: &[u8]) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

/// Whether absolute `path` is spelled from the prefix (whatever `..` follows), so that only
/// this library can walk it: the kernel has nothing at the prefix without a mount.
pub(crate) fn spelled_under_prefix(path: &[u8]) -> bool {
    path.first() == Some(&b'/') && config_for(path).is_some_and(|c| under(path, c.prefix()))
}

/// The configuration for a path about to be used: the one in force, or the discovered mount
/// holding it (the deepest), which the process then binds to.
#[unsafe(link_section = ".text.hot.btfuse")]
pub(crate) fn config_for(path: &[u8]) -> Option<&'static Config> {
    if let Some(config) = config() {
        return Some(config);
    }
    let (best, _) = mounts_for(path)
        .iter()
        .enumerate()
        .filter(|(_, c)| under(path, c.prefix()))
        .max_by_key(|(_, c)| c.prefix_len)?;
    let _ = HOT
        .chosen
        .compare_exchange(NONE, best, Ordering::AcqRel, Ordering::Acquire);
    chosen()
}

/// Whether the kernel also reaches the prefix in force, through a btfuse mount there (always
/// for a discovered one; for one named by the variables, if a btfuse mount is at it).
pub(crate) fn prefix_is_mounted() -> bool {
    let Some(config) = config() else {
        return false;
    };
    explicit().is_none() || mounts().iter().any(|m| m.prefix() == config.prefix())
}

/// The variables a program started by `exec` needs to reach the same mount: set only when
/// the mount was discovered (otherwise the environment already has them).
pub(crate) fn exec_environment() -> Option<(Vec<u8>, Vec<u8>)> {
    if explicit().is_some() {
        return None;
    }
    let chosen = chosen()?;
    let prefix = if chosen.prefix().is_empty() {
        b"/".to_vec()
    } else {
        chosen.prefix().to_vec()
    };
    Some((prefix, chosen.socket().as_os_str().as_bytes().to_vec()))
}

/// `BTFUSE_MOUNTS=...`, NUL-terminated, for the programs this process executes (the mounts
/// are found first if they were not yet); `None` when the list is too long to pass on.
pub(crate) fn mounts_variable() -> Option<&'static CStr> {
    let found = mounts();
    once(&HOT.entry, &MOUNTS_ENTRY, |entry| {
        let len = mounts_entry(found, entry).unwrap_or(0);
        HOT.mounts_entry_len.store(len, Ordering::Relaxed);
    });
    found_mounts_variable()
}

/// [`mounts_variable`] if it was made already; `None` otherwise. It reads the mount table
/// never, allocates nothing and writes nothing, so a `vfork` child may call it (its parent
/// made it before the `vfork`).
pub(crate) fn found_mounts_variable() -> Option<&'static CStr> {
    if HOT.entry.load(Ordering::Acquire) != FOUND {
        return None;
    }
    let len = HOT.mounts_entry_len.load(Ordering::Relaxed);
    // SAFETY: published: FOUND was just loaded from `HOT.entry` with Acquire, and the entry
    // is written only before that (see `mounts_variable`).
    let entry = unsafe { MOUNTS_ENTRY.read() };
    (len > 0)
        .then(|| CStr::from_bytes_with_nul(&entry[..=len]).ok())
        .flatten()
}

/// Whether absolute `path` is under the prefix of a btfuse mount this process may serve
/// (named by the environment or discovered), whether or not it is bound to it yet.
#[unsafe(link_section = ".text.hot.btfuse")]
pub(crate) fn under_a_prefix(path: &[u8]) -> bool {
    mounts_for(path)
        .iter()
        .chain(explicit())
        .any(|c| under(path, c.prefix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inherited_list_is_read_whole_or_not_at_all() {
        let list = |value: &'static [u8]| {
            read_inherited(value).map(|l| l.map(|(m, u)| (m.to_vec(), u)).collect::<Vec<_>>())
        };
        assert_eq!(
            list(b"0:/mnt/a\\040b 1000:/srv/x"),
            Some(vec![
                (b"/mnt/a\\040b".to_vec(), 0),
                (b"/srv/x".to_vec(), 1000)
            ])
        );
        assert_eq!(list(b""), Some(Vec::new()));
        for bad in [&b"1000"[..], b"x:/a", b"0:/a 99999999999:/b", b"0:/a 7"] {
            assert_eq!(list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_passed_on_list_reads_back() {
        let mut mounts = [const { Config::EMPTY }; 2];
        fill(&mut mounts[0], b"/mnt/with\\040space", 0, None).unwrap();
        fill(&mut mounts[1], b"/", 4001, Some(b"/run/user/4001")).unwrap();
        assert_eq!(mounts[0].prefix(), b"/mnt/with space");
        assert_eq!(
            mounts[0].socket(),
            Path::new("/run/btfuse/mnt-with\\x20space.sock")
        );
        assert_eq!(mounts[1].prefix(), b"");
        let mut entry = [0u8; 256];
        let len = mounts_entry(&mounts, &mut entry).unwrap();
        let value = entry[..len].strip_prefix(b"BTFUSE_MOUNTS=").unwrap();
        let seen: Vec<_> = read_inherited(value)
            .unwrap()
            .map(|(m, uid)| (m.to_vec(), uid))
            .collect();
        assert_eq!(
            seen,
            vec![(b"/mnt/with\\040space".to_vec(), 0), (b"/".to_vec(), 4001)]
        );
        assert_eq!(mounts_entry(&mounts, &mut [0u8; 20]), None);
        assert_eq!(mounts_entry(&[], &mut entry), Some(14));
    }

    #[test]
    fn only_a_mount_root_without_a_block_device_counts_as_a_mount_point() {
        // /proc is a mount of its own (major 0) on every Linux system this runs on; a
        // directory inside one is no mount point, and a missing path is none either.
        let proc_dev = std::fs::metadata("/proc").map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.dev()
        });
        assert_eq!(mounted_at(b"/proc"), proc_dev.ok());
        assert_eq!(mounted_at(b"/proc/self"), None);
        assert_eq!(mounted_at(b"/no/such/mount/point"), None);
    }

    #[test]
    fn prefixes_are_trimmed_and_bounded() {
        let mut config = Config::EMPTY;
        assert_eq!(config.set_prefix(b"relative"), None);
        config.set_prefix(b"/mnt/x//").unwrap();
        assert_eq!(config.prefix(), b"/mnt/x");
        config.set_prefix(b"///").unwrap();
        assert_eq!(config.prefix(), b"");
        assert_eq!(config.set_prefix(&[b'/'; PREFIX_CAP + 2][..]), Some(()));
        let long = [b'a'; PREFIX_CAP + 1];
        let mut path = vec![b'/'];
        path.extend_from_slice(&long);
        assert_eq!(config.set_prefix(&path), None);
    }
}
