//! The interceptor's state: its configuration, its connection to the server, the descriptor
//! table that maps this process's descriptor numbers to the server's open descriptions, and
//! the guard that keeps its own work from being intercepted again.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CStr, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::{Mutex, OnceLock, RwLock};

use btfuse_core::ring::{Request, Response};
use btfuse_ring_client::Client;
use libc::c_int;

/// Environment variable naming the server's socket.
pub const SOCKET_VAR: &str = "BTFUSE_SOCKET";
/// Environment variable naming the directory the server's filesystem appears at.
pub const PREFIX_VAR: &str = "BTFUSE_PREFIX";
/// Environment variable an `exec` hands the descriptor table to the next program in.
pub const INHERIT_VAR: &str = "BTFUSE_INHERIT";

/// Where the filesystem is and how to reach it.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Absolute, without a trailing slash (empty for `/`).
    pub(crate) prefix: Vec<u8>,
    pub(crate) socket: PathBuf,
}

fn getenv(name: &str) -> Option<Vec<u8>> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: getenv reads the environment; the result is copied before anything can change
    // it (the interceptor never runs concurrently with setenv in practice, as libc warns).
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    Some(unsafe { CStr::from_ptr(value) }.to_bytes().to_vec())
}

fn trimmed(mut prefix: Vec<u8>) -> Option<Vec<u8>> {
    if prefix.first() != Some(&b'/') {
        return None;
    }
    while prefix.last() == Some(&b'/') {
        prefix.pop();
    }
    Some(prefix)
}

/// The configuration the environment gives (`BTFUSE_SOCKET` and `BTFUSE_PREFIX`), read once.
fn explicit() -> Option<&'static Config> {
    static EXPLICIT: OnceLock<Option<Config>> = OnceLock::new();
    EXPLICIT
        .get_or_init(|| {
            let socket = getenv(SOCKET_VAR)?;
            Some(Config {
                prefix: trimmed(getenv(PREFIX_VAR)?)?,
                socket: PathBuf::from(OsStr::from_bytes(&socket)),
            })
        })
        .as_ref()
}

/// Without the variables: the btfuse mounts of `/proc/self/mountinfo`, each with its ring
/// socket placed by `btfuse_ring_client::discovery`'s rule, read once.
fn discovered() -> &'static [Config] {
    static MOUNTS: OnceLock<Vec<Config>> = OnceLock::new();
    MOUNTS.get_or_init(|| {
        if explicit().is_some() {
            return Vec::new();
        }
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        btfuse_ring_client::discovery::read_btfuse_mounts()
            .into_iter()
            .filter_map(|m| {
                let runtime = if m.uid == euid {
                    getenv("XDG_RUNTIME_DIR").map(|d| PathBuf::from(OsStr::from_bytes(&d)))
                } else {
                    Some(PathBuf::from(format!("/run/user/{}", m.uid)))
                };
                let socket = btfuse_ring_client::discovery::socket_for_mount(
                    &m.mountpoint,
                    m.uid,
                    runtime.as_deref(),
                );
                Some(Config {
                    prefix: trimmed(m.mountpoint.as_os_str().as_bytes().to_vec())?,
                    socket,
                })
            })
            .collect()
    })
}

/// The mount this process serves over the ring once it has touched one: a process binds to
/// one btfuse mount; paths under any other still reach theirs, through the kernel.
static CHOSEN: OnceLock<Config> = OnceLock::new();

/// The configuration in force: the environment's, else the discovered mount chosen so far;
/// `None` means everything passes through.
pub(crate) fn config() -> Option<&'static Config> {
    explicit().or_else(|| CHOSEN.get())
}

/// Whether `path` (absolute) is `prefix` or below it.
fn under(path: &[u8], prefix: &[u8]) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

/// Whether absolute `path` is spelled from the prefix (whatever `..` follows), so that only
/// this library can walk it: the kernel has nothing at the prefix without a mount.
pub(crate) fn spelled_under_prefix(path: &[u8]) -> bool {
    path.first() == Some(&b'/') && config_for(path).is_some_and(|c| under(path, &c.prefix))
}

/// The configuration for a path about to be used: the one in force, or the discovered mount
/// holding it (the deepest), which the process then binds to.
fn config_for(path: &[u8]) -> Option<&'static Config> {
    if let Some(config) = config() {
        return Some(config);
    }
    let best = discovered()
        .iter()
        .filter(|c| under(path, &c.prefix))
        .max_by_key(|c| c.prefix.len())?;
    Some(CHOSEN.get_or_init(|| best.clone()))
}

/// Whether the kernel also reaches the prefix in force, through a btfuse mount there (always
/// for a discovered one; for one named by the variables, if mountinfo shows a btfuse mount at
/// it). Read once.
pub(crate) fn prefix_is_mounted() -> bool {
    static MOUNTED: OnceLock<bool> = OnceLock::new();
    let Some(config) = config() else {
        return false;
    };
    if explicit().is_none() {
        return true;
    }
    *MOUNTED.get_or_init(|| {
        btfuse_ring_client::discovery::read_btfuse_mounts()
            .iter()
            .any(|m| m.mountpoint.as_os_str().as_bytes() == config.prefix.as_slice())
    })
}

/// The variables a program started by `exec` needs to reach the same mount: set only when
/// the mount was discovered (otherwise the environment already has them).
pub(crate) fn exec_environment() -> Option<(Vec<u8>, Vec<u8>)> {
    if explicit().is_some() {
        return None;
    }
    let chosen = CHOSEN.get()?;
    let prefix = if chosen.prefix.is_empty() {
        b"/".to_vec()
    } else {
        chosen.prefix.clone()
    };
    Some((prefix, chosen.socket.as_os_str().as_bytes().to_vec()))
}

thread_local! {
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as the interceptor: calls it makes into libc are not intercepted again. Returns
/// `None` (pass the call through) when already inside.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    // One lookup of the thread-local for both entering and leaving: in a shared library each
    // lookup is a call into the dynamic loader, and this runs on every intercepted call.
    // (A thread being torn down has no thread-locals left: pass through.)
    let busy: *const Cell<bool> = BUSY.try_with(|busy| busy as *const Cell<bool>).ok()?;
    // SAFETY: the cell is this thread's, and lives as long as the thread, which outlives this
    // call; a `Cell` is only ever used from its own thread.
    if unsafe { (*busy).replace(true) } {
        return None;
    }
    struct Leave(*const Cell<bool>);
    impl Drop for Leave {
        fn drop(&mut self) {
            // SAFETY: as above; the same cell, on the same thread.
            unsafe { (*self.0).set(false) };
        }
    }
    let _leave = Leave(busy);
    Some(f())
}

/// The connection, once made: a leaked `Box`, so that every intercepted call reads it with
/// one load and no lock. It is freed only by [`set_client`], which runs in a fork child
/// before the child has a second thread: no other thread can hold a reference then.
static CLIENT: AtomicPtr<Client> = AtomicPtr::new(std::ptr::null_mut());

/// Serialises making the connection (and is held across `fork`).
static CONNECTING: Mutex<()> = Mutex::new(());

/// The connection if one is made.
fn loaded() -> Option<Client> {
    let client = CLIENT.load(Ordering::Acquire);
    // SAFETY: a non-null pointer is a live leaked `Box<Client>` (see `CLIENT`); the Acquire
    // load pairs with the Release store that published it.
    (!client.is_null()).then(|| unsafe { (*client).clone() })
}

/// The connection to the server, made on first use. `None` if it cannot be made: the call
/// then goes to the kernel, which answers for the prefix as it would without btfuse. Once the
/// session is lost (the server went away) no new one is made: this process's btfuse
/// descriptors and working directory belong to the lost one, so path calls go to the kernel
/// (to the mount, if it is still there) and those descriptors keep failing with `ENOTCONN`.
pub(crate) fn client() -> Option<Client> {
    let config = config()?;
    if LOST.load(Ordering::Relaxed) {
        return None;
    }
    if let Some(client) = loaded() {
        return Some(client);
    }
    let _connecting = CONNECTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(client) = loaded() {
        return Some(client);
    }
    // After a failed attempt (no daemon, a mount without the ring), calls go to the kernel
    // for a second before the next attempt, instead of paying for one each.
    let now = coarse_seconds();
    let failed = LAST_FAILURE.load(Ordering::Relaxed);
    if failed != 0 && now.saturating_sub(failed) < 1 {
        return None;
    }
    btfuse_ring_client::set_private_fd_floor(private_fd_floor());
    let Ok(client) = Client::connect(&config.socket) else {
        LAST_FAILURE.store(now.max(1), Ordering::Relaxed);
        return None;
    };
    CLIENT.store(Box::into_raw(Box::new(client.clone())), Ordering::Release);
    Some(client)
}

/// Set when a call found the server gone: see [`client`].
static LOST: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set by the call that found the server gone, for its caller to redo through the kernel.
    static FELL_BACK: Cell<bool> = const { Cell::new(false) };
}

/// Records that the server is gone (a call failed with `ENOTCONN` from the transport); the
/// call that finds it out is marked for its caller.
fn lost() {
    if !LOST.swap(true, Ordering::Relaxed) {
        let _ = FELL_BACK.try_with(|f| f.set(true));
    }
}

/// The session for a name relative to a btfuse directory (a descriptor or the working
/// directory): the live one, or once the server is gone the lost one, whose calls fail with
/// `ENOTCONN`. Never the kernel: it would resolve the name from the wrong directory.
pub(crate) fn session() -> Option<Client> {
    if LOST.load(Ordering::Relaxed) {
        current_client()
    } else {
        client()
    }
}

/// Whether the call just made found the server gone; clears the mark.
pub(crate) fn take_fell_back() -> bool {
    FELL_BACK.try_with(|f| f.replace(false)).unwrap_or(false)
}

/// The kernel's working directory when it lies under a btfuse prefix, as `getcwd` gave it;
/// read again after every `chdir`/`fchdir` the kernel makes.
static KERNEL_CWD: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// What is known of the kernel's working directory, so that the common answer ("not under
/// any prefix") takes one load and no lock: [`UNKNOWN`], [`OUTSIDE`] or [`INSIDE`].
static KERNEL_CWD_STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const OUTSIDE: u8 = 1;
const INSIDE: u8 = 2;

/// `rel` joined to the kernel's working directory when that directory is under a btfuse
/// prefix (the program entered the mount through the kernel, e.g. by a relative `chdir`);
/// `None` otherwise.
pub(crate) fn from_kernel_cwd(rel: &[u8]) -> Option<Vec<u8>> {
    if KERNEL_CWD_STATE.load(Ordering::Acquire) == OUTSIDE {
        return None;
    }
    let mut cached = KERNEL_CWD.lock().unwrap_or_else(|p| p.into_inner());
    if KERNEL_CWD_STATE.load(Ordering::Acquire) == UNKNOWN {
        *cached = kernel_cwd_under_a_prefix();
        let state = if cached.is_some() { INSIDE } else { OUTSIDE };
        KERNEL_CWD_STATE.store(state, Ordering::Release);
    }
    let mut full = cached.clone()?;
    drop(cached);
    if full.last() != Some(&b'/') {
        full.push(b'/');
    }
    full.extend_from_slice(rel);
    Some(full)
}

/// The kernel's `getcwd`, if it is under a btfuse prefix.
fn kernel_cwd_under_a_prefix() -> Option<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `buf` holds PATH_MAX bytes.
    let got = unsafe { (crate::real::getcwd())(buf.as_mut_ptr().cast(), buf.len()) };
    if got.is_null() {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0)?;
    buf.truncate(len);
    let served = discovered()
        .iter()
        .chain(explicit())
        .any(|c| under(&buf, &c.prefix));
    served.then_some(buf)
}

/// Forgets the kernel's working directory (it changed).
pub(crate) fn forget_kernel_cwd() {
    let _cached = KERNEL_CWD.lock().unwrap_or_else(|p| p.into_inner());
    KERNEL_CWD_STATE.store(UNKNOWN, Ordering::Release);
}

/// When the last connection attempt failed (coarse seconds; 0: none failed).
static LAST_FAILURE: AtomicU64 = AtomicU64::new(0);

fn coarse_seconds() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64
}

/// Holds the lock of making the connection (across `fork`, so the child never inherits it
/// taken).
pub(crate) fn hold_client() -> std::sync::MutexGuard<'static, ()> {
    CONNECTING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where this library's own descriptors (the channels' sockets) go: near the top of the
/// descriptor limit, far from the small numbers programs choose themselves (a shell's
/// `exec 3> file` must not land on a socket of ours).
fn private_fd_floor() -> i32 {
    let floor = compute_private_fd_floor();
    PRIVATE_FLOOR.fetch_min(floor, Ordering::Relaxed);
    floor
}

/// The lowest number any of this library's own descriptors may have (`i32::MAX` before the
/// first is made): below it, a descriptor is never one of them, with no lock taken to know.
static PRIVATE_FLOOR: AtomicI32 = AtomicI32::new(i32::MAX);

/// Whether `fd` is one of this library's own descriptors (see [`private_fds`]).
pub(crate) fn is_private(fd: c_int) -> bool {
    fd >= PRIVATE_FLOOR.load(Ordering::Relaxed)
        && private_fds(current_client().as_ref()).contains(&fd)
}

fn compute_private_fd_floor() -> i32 {
    let mut limit = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    // SAFETY: getrlimit writes the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let soft = i64::try_from(limit.rlim_cur).unwrap_or(i64::MAX);
    (soft - 64).clamp(100, 4096) as i32
}

/// The descriptor placeholders are copied from: an `O_PATH` descriptor of `/`, close-on-exec,
/// at a private number (-1 until first needed, and again if the program closes or replaces
/// that number). Copying it (`F_DUPFD`, which takes the lowest free number, as `open` does)
/// costs the kernel no path walk and no file to set up or tear down, about half of what an
/// `open("/", O_PATH)` and its `close` cost.
static PLACEHOLDER_BASE: AtomicI32 = AtomicI32::new(-1);

/// A placeholder kernel descriptor for a new btfuse descriptor: the number the program sees,
/// the lowest free one, as `open` gives. It is an `O_PATH` descriptor of `/`: anything that
/// reaches the kernel with it instead of this library (a read or write from inside libc, a
/// static program after `exec`) fails with `EBADF` rather than quietly reading nothing or
/// writing nowhere.
pub(crate) fn placeholder(cloexec: bool) -> Result<c_int, i32> {
    let command = if cloexec {
        libc::F_DUPFD_CLOEXEC
    } else {
        libc::F_DUPFD
    };
    let mut base = PLACEHOLDER_BASE.load(Ordering::Acquire);
    if base < 0 {
        base = placeholder_base()?;
    }
    // The system call itself: the library's own `fcntl` would look the number up again.
    // SAFETY: F_DUPFD(_CLOEXEC) of a descriptor this library holds.
    let fd = unsafe { libc::syscall(libc::SYS_fcntl, base, command, 0) };
    if fd < 0 {
        // SAFETY: reads this thread's errno.
        return Err(unsafe { *libc::__errno_location() });
    }
    Ok(fd as c_int)
}

/// Opens the placeholders' base descriptor and moves it to a private number.
fn placeholder_base() -> Result<c_int, i32> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: a literal path; `open` returns a descriptor or -1.
    let fd = unsafe { crate::real::open()(c"/".as_ptr(), flags, 0) };
    if fd < 0 {
        // SAFETY: reads this thread's errno.
        return Err(unsafe { *libc::__errno_location() });
    }
    // SAFETY: as in `placeholder`.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_fcntl,
            fd,
            libc::F_DUPFD_CLOEXEC,
            private_fd_floor(),
        )
    } as c_int;
    // SAFETY: reads this thread's errno.
    let error = unsafe { *libc::__errno_location() };
    // SAFETY: `fd` is this function's own descriptor.
    unsafe { crate::real::close()(fd) };
    if moved < 0 {
        return Err(error);
    }
    // Two threads may get here at once: the first one's base stays, the other's goes.
    match PLACEHOLDER_BASE.compare_exchange(-1, moved, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(moved),
        Err(current) => {
            // SAFETY: `moved` is this function's own descriptor.
            unsafe { crate::real::close()(moved) };
            Ok(current)
        }
    }
}

/// The program closed or replaced descriptor `fd`: if it was the placeholders' base, a new
/// one is made when next needed.
pub(crate) fn placeholder_base_gone(fd: c_int) {
    if fd >= 0 {
        let _ = PLACEHOLDER_BASE.compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// This library's own descriptors, which a program's `close_range`/`closefrom` leaves open:
/// `client`'s sockets and the placeholders' base.
pub(crate) fn private_fds(client: Option<&Client>) -> Vec<c_int> {
    let mut fds = client.map(Client::private_fds).unwrap_or_default();
    let base = PLACEHOLDER_BASE.load(Ordering::Acquire);
    if base >= 0 {
        fds.push(base);
    }
    fds
}

/// Replaces the connection. Only in a fork child, before it starts a thread: the old one is
/// freed, which no other thread may then be reading (see [`CLIENT`]).
pub(crate) fn set_client(client: Option<Client>) {
    let new = client.map_or(std::ptr::null_mut(), |c| Box::into_raw(Box::new(c)));
    let old = CLIENT.swap(new, Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: `old` was a leaked Box (see `CLIENT`), now unreachable; this process has
        // one thread (the caller's contract), so nobody else holds a reference into it.
        drop(unsafe { Box::from_raw(old) });
    }
}

/// The connection if one is already made, without making one.
pub(crate) fn current_client() -> Option<Client> {
    loaded()
}

/// One of this process's descriptors that stands for a server description. The number is a
/// real kernel descriptor (an `O_PATH` one) that this library holds, so the kernel never
/// hands the number to anything else and `dup2`, `close` and `exec` treat it as they treat
/// every descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The server's description.
    pub(crate) desc: u32,
    /// A directory (listing state lives in the server's description).
    pub(crate) dir: bool,
}

/// Descriptor numbers below this are kept in [`SLOTS`], one atomic word each, so that the
/// question every intercepted descriptor call asks first ("is this one btfuse's?") is one
/// load with no lock, whichever thread asks.
const DIRECT: usize = 4096;

/// Slot encoding: 0 for none, else `1 | dir << 1 | desc << 32`.
static SLOTS: [AtomicU64; DIRECT] = [const { AtomicU64::new(0) }; DIRECT];

/// Btfuse descriptors numbered `DIRECT` and above (rare), under a lock.
static HIGH: RwLock<Option<HashMap<c_int, Entry>>> = RwLock::new(None);

/// Serialises changes to the table (and is held across `fork`), so that a child never
/// inherits it half-changed. Lookups do not take it.
pub(crate) static TABLE_LOCK: Mutex<()> = Mutex::new(());

fn encode(entry: Entry) -> u64 {
    1 | (u64::from(entry.dir) << 1) | (u64::from(entry.desc) << 32)
}

fn decode(word: u64) -> Option<Entry> {
    (word & 1 != 0).then_some(Entry {
        desc: (word >> 32) as u32,
        dir: word & 2 != 0,
    })
}

pub(crate) fn lookup(fd: c_int) -> Option<Entry> {
    let index = usize::try_from(fd).ok()?;
    if let Some(slot) = SLOTS.get(index) {
        return decode(slot.load(Ordering::Acquire));
    }
    HIGH.read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()?
        .get(&fd)
        .copied()
}

pub(crate) fn insert(fd: c_int, entry: Entry) -> Option<Entry> {
    let _changing = TABLE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let index = usize::try_from(fd).ok()?;
    if let Some(slot) = SLOTS.get(index) {
        return decode(slot.swap(encode(entry), Ordering::AcqRel));
    }
    HIGH.write()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(fd, entry)
}

pub(crate) fn remove(fd: c_int) -> Option<Entry> {
    let _changing = TABLE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let index = usize::try_from(fd).ok()?;
    if let Some(slot) = SLOTS.get(index) {
        return decode(slot.swap(0, Ordering::AcqRel));
    }
    HIGH.write()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()?
        .remove(&fd)
}

/// Forgets every btfuse descriptor (a child that could not reattach).
pub(crate) fn clear() {
    for slot in &SLOTS {
        slot.store(0, Ordering::Release);
    }
    *HIGH.write().unwrap_or_else(|p| p.into_inner()) = None;
}

pub(crate) fn entries() -> Vec<(c_int, Entry)> {
    let mut out: Vec<(c_int, Entry)> = SLOTS
        .iter()
        .enumerate()
        .filter_map(|(fd, slot)| Some((fd as c_int, decode(slot.load(Ordering::Acquire))?)))
        .collect();
    if let Some(high) = HIGH.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        out.extend(high.iter().map(|(&fd, &e)| (fd, e)));
    }
    out
}

/// The working directory, when it is a btfuse directory (the kernel's then lags behind): the
/// description it is open as, and its path from the served root as last set.
pub(crate) static CWD: Mutex<Option<(u32, Vec<u8>)>> = Mutex::new(None);

/// Paths (from the served root) of the directory descriptions this process opened, for
/// `getcwd` after `fchdir`.
static DIR_PATHS: Mutex<Option<HashMap<u32, Vec<u8>>>> = Mutex::new(None);

/// Remembers that directory description `desc` is at `path`.
pub(crate) fn remember_path(desc: u32, path: Vec<u8>) {
    let previous = DIR_PATHS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(desc, path);
    if previous.is_none() {
        DIR_PATH_COUNT.fetch_add(1, Ordering::Relaxed);
    }
}

/// Paths in [`DIR_PATHS`]: closing a file, when there are none, takes no lock.
static DIR_PATH_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Forgets the path of description `desc` (it is being closed; its number may come back for
/// another directory).
pub(crate) fn forget_path(desc: u32) {
    if DIR_PATH_COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(paths) = DIR_PATHS.lock().unwrap_or_else(|p| p.into_inner()).as_mut()
        && paths.remove(&desc).is_some()
    {
        DIR_PATH_COUNT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The path of directory description `desc`, if known.
pub(crate) fn desc_path(desc: u32) -> Option<Vec<u8>> {
    DIR_PATHS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()?
        .get(&desc)
        .cloned()
}

/// The path of the btfuse directory open as descriptor `fd`, if known.
pub(crate) fn dir_path(fd: c_int) -> Option<Vec<u8>> {
    desc_path(lookup(fd)?.desc)
}

/// The btfuse working directory's description, if the working directory is btfuse's.
pub(crate) fn cwd_desc() -> Option<u32> {
    CWD.lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|(d, _)| *d)
}

/// `base` (a path from the served root) joined with `rel` and made lexical (`.` and `..`
/// resolved); `None` if `..` climbs above the served root.
pub(crate) fn join_lexically(base: &[u8], rel: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let start: &[u8] = if rel.first() == Some(&b'/') {
        b""
    } else {
        base
    };
    for component in start.split(|&b| b == b'/').chain(rel.split(|&b| b == b'/')) {
        match component {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    let mut out = Vec::new();
    for part in parts {
        out.push(b'/');
        out.extend_from_slice(part);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Some(out)
}

/// The server's path for `path` if it is spelled from the prefix (absolute). A `..` that
/// climbs out of the tree is the server's to walk as well: it answers where the walk goes on
/// (see [`crate::outside`]), after the links it met on the way.
pub(crate) fn ring_path(path: &[u8]) -> Option<Vec<u8>> {
    ring_path_in(path).map(Cow::into_owned)
}

/// [`ring_path`] without a copy: the part of `path` after the prefix.
pub(crate) fn ring_path_in(path: &[u8]) -> Option<Cow<'_, [u8]>> {
    if path.first() != Some(&b'/') {
        return None;
    }
    let config = config_for(path)?;
    let rest = path.strip_prefix(config.prefix.as_slice())?;
    if !(rest.is_empty() || rest[0] == b'/') {
        return None;
    }
    Some(if rest.is_empty() {
        Cow::Borrowed(b"/")
    } else {
        Cow::Borrowed(rest)
    })
}

/// A C string argument as bytes (`None` for a null pointer).
///
/// # Safety
/// `p` is null or a NUL-terminated string valid for the call.
pub(crate) unsafe fn c_bytes<'a>(p: *const libc::c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    Some(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// Sets `errno` and returns -1, the C convention.
pub(crate) fn fail(code: i32) -> c_int {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() = code };
    -1
}

/// The errno of an I/O error from the client (`EIO` if it carries none).
pub(crate) fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Sends `request` and maps the answer with `read`; failures become errno values.
pub(crate) fn call<T>(
    client: &Client,
    request: &Request<'_>,
    read: impl FnOnce(Response<'_>) -> Result<T, i32>,
) -> Result<T, i32> {
    match client.send(request) {
        Ok(sent) => finish(sent, read),
        Err(e) => Err(transport_failed(&e)),
    }
}

/// Waits for the answer to a request sent with `Client::send` and maps it as [`call`] does.
/// An `Outside` answer is kept for the path call being served (see [`crate::outside`]), and
/// fails with [`PROTOCOL`].
pub(crate) fn finish<T>(
    sent: btfuse_ring_client::Sent<'_>,
    read: impl FnOnce(Response<'_>) -> Result<T, i32>,
) -> Result<T, i32> {
    let mut outcome = Err(libc::EIO);
    let received = sent.finish(|r| {
        outcome = match r {
            Response::Err(e) => Err(e.code()),
            Response::Outside {
                second,
                links,
                path,
            } => {
                crate::outside::record(crate::outside::Left {
                    second,
                    links,
                    path: path.to_vec(),
                });
                Err(PROTOCOL)
            }
            other => read(other),
        };
        Ok(())
    });
    match received {
        Ok(()) => outcome,
        Err(e) => Err(transport_failed(&e)),
    }
}

/// The errno of a request that could not be carried out; notes a server that is gone.
pub(crate) fn transport_failed(e: &io::Error) -> i32 {
    let code = errno_of(e);
    if code == libc::ENOTCONN {
        lost();
    }
    code
}

/// The errno for an answer of an unexpected kind: the server broke the protocol.
pub(crate) const PROTOCOL: i32 = libc::EIO;
