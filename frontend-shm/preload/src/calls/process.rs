//! `fork` and `exec`: the server's descriptions go with the process as the kernel's would.
//!
//! - `fork`: before the real fork, the server keeps a copy of this process's table under a
//!   token (the descriptions are shared, offsets included); the child opens a channel of its
//!   own and attaches to that copy. The table's locks are held across the fork so the child
//!   never inherits one half-taken.
//! - `exec`: the descriptors without close-on-exec survive in the kernel (their placeholders
//!   are ordinary descriptors); their descriptions are kept under a token, which rides in
//!   `BTFUSE_INHERIT` to the new program, whose copy of this library attaches to them when it
//!   loads. Close-on-exec descriptors are closed by the kernel with their placeholders, and
//!   their descriptions are released with the old program's connection.
//! - `exec` of a program that will not load this library (see [`program`]:
//!   its environment does not preload it, it is static, or the loader runs it in secure
//!   mode): each surviving btfuse file descriptor is handed to the kernel first (the ring's
//!   `Handoff`: the server opens the same file through its FUSE mount at the description's
//!   offset), and the kernel descriptor takes the placeholder's number, so the program reads
//!   and writes the file itself, at the offset it shares with every other holder of the
//!   description. What cannot be handed off (a directory, or no mount: `btfuse-shm`) goes
//!   through `BTFUSE_INHERIT` as above, this library added to `LD_PRELOAD`. The table keeps
//!   the numbers as btfuse's: if the `exec` fails, calls on them still reach the description,
//!   which now reads and writes through the kernel file.
//! - A btfuse working directory is handed on only where the kernel's is not the same
//!   directory (see [`passed_cwd`]): on a mount the kernel's follows it, and a child or a
//!   new program finds it there. A shell in a btfuse directory with no btfuse descriptors
//!   open then forks and executes without a request to the server, and a program that
//!   touches no btfuse file never connects.

use std::ffi::CString;

use libc::{c_char, c_int, pid_t};

use crate::config::{self, INHERIT_VAR};
use crate::connection;
use crate::descriptors::{self, Entry};
use crate::errno::fail;
use crate::guard::{self, guarded};
use crate::held;
use crate::paths;
use crate::program::{self, Program};
use crate::real;

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fork() -> pid_t {
    fork_inner(false)
}

/// `fork` for a caller that asked for `vfork` (see [`btfuse_vfork_target`]): its child will
/// only execute a program or exit, so it does not attach to the table it inherits; it keeps
/// the token, which the next program attaches to (see [`inherit_value`]), and attaches
/// itself only if it uses btfuse first (see `connection::client`). A shell's child that
/// starts a program with a btfuse redirection thus connects once, not twice.
extern "C" fn fork_for_vfork() -> pid_t {
    fork_inner(true)
}

fn fork_inner(for_vfork: bool) -> pid_t {
    if guard::in_vfork_child() {
        // SAFETY: libc's fork; nothing of this library's (the parent's memory) is touched.
        return unsafe { real::fork()() };
    }
    // The mounts are found here, in the parent, once: a child that executes a program hands
    // them on (see `with_mounts`), and it would otherwise read the mount table itself, once
    // per child.
    let _ = guarded(config::mounts_variable);
    // Offsets kept in this process go back to the server first, and nothing is kept again
    // until the child exists: parent and child share the descriptions (see `held`).
    let held = guarded(|| held::settle_all(connection::current_client().as_ref()));
    let token = guarded(|| {
        if descriptors::entries().is_empty() && passed_cwd().is_none() {
            return Ok(None);
        }
        match connection::current_client().map(|c| c.prepare_fork()) {
            Some(Ok(token)) => Ok(Some(token)),
            // The server holds as many of this user's forks as it may: the fork fails as
            // the kernel's does at its process limit, rather than leave the child without
            // the descriptors it inherits.
            Some(Err(e)) if e.raw_os_error() == Some(libc::EAGAIN) => Err(libc::EAGAIN),
            _ => Ok(None),
        }
    })
    .unwrap_or(Ok(None));
    let token = match token {
        Ok(token) => token,
        Err(code) => {
            drop(held);
            return fail(code);
        }
    };
    let client = connection::hold_client();
    let table = descriptors::TABLE_LOCK
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let listings = crate::listings::hold();
    let attrs = crate::attrs::hold();
    let shown = crate::shown::hold();
    // SAFETY: fork has no preconditions; the locks held make the child's copies consistent.
    let pid = unsafe { real::fork()() };
    drop(shown);
    drop(attrs);
    drop(listings);
    drop(table);
    drop(client);
    drop(held);
    if pid == 0 {
        // The parent's channels are the parent's: this process needs its own.
        let _ = guarded(|| {
            connection::set_client(None);
            match token {
                Some(token) if for_vfork => connection::set_pending(token),
                Some(token) => {
                    let attached = connection::client().and_then(|c| c.attach(token).ok());
                    if attached.is_none() {
                        // Without the server the descriptors are unusable: forget them, so
                        // that calls on them fail as on closed descriptors.
                        descriptors::clear();
                        *paths::CWD.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                }
                None => {
                    descriptors::clear();
                    *paths::CWD.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
        });
    }
    pid
}

/// Where `vfork` (defined in `variadic.c`, which jumps to what this returns with its caller's
/// stack untouched, as a `vfork` must) goes: libc's own when this process has nothing of
/// btfuse's for the child to take (no btfuse descriptor, no working directory the kernel's
/// does not stand for) and whatever the child may do can be left to the kernel (no prefix,
/// or one with a mount): the thread is then marked, and the child's calls pass through (see
/// [`crate::guard`]). Otherwise `fork`: a `vfork` child shares its parent's memory, so the
/// descriptor table and connection it changed before `exec` would be the parent's too; a
/// fork child, allowed everywhere a vfork child is, changes only its own.
///
/// Shells start most programs with `vfork` (dash does): a real one copies none of the
/// shell's pages, where a fork makes both processes copy each page they write.
#[unsafe(no_mangle)]
pub extern "C" fn btfuse_vfork_target() -> usize {
    let forked: extern "C" fn() -> pid_t = fork_for_vfork;
    if guard::in_vfork_child() {
        // A vfork child's own vfork: nothing here may change.
        return real::vfork() as usize;
    }
    let nothing_to_take = guarded(|| {
        // The mounts are found here, in the parent, as `fork` finds them: the child's `exec`
        // hands them on (see `exec_from_vfork_child`) and may not look for them itself.
        let _ = config::mounts_variable();
        descriptors::entries().is_empty()
            && passed_cwd().is_none()
            && (config::config().is_none() || config::prefix_is_mounted())
    })
    .unwrap_or(false);
    if nothing_to_take && guard::mark_vfork() {
        // What a child calls is found now, in the parent: the child's calls pass through to
        // these, and looking one up there (the dynamic loader's lock, its memory) would be
        // on the parent's memory.
        let _ = (
            real::execve(),
            real::execv(),
            real::execvpe(),
            real::fexecve(),
        );
        let _ = (real::execveat(), real::dup2(), real::close());
        real::vfork() as usize
    } else {
        forked as usize
    }
}

/// The token an exec hands its table on under, with the process, table generation and
/// working directory it was made for.
static EXEC_TOKEN: std::sync::Mutex<Option<ExecToken>> = std::sync::Mutex::new(None);

#[derive(Clone, Copy, PartialEq, Eq)]
struct ExecToken {
    /// A fork child has its parent's copy of the cache, and its own table on the server.
    pid: pid_t,
    generation: u64,
    cwd: Option<u32>,
    token: u64,
}

/// A token for the next program to attach to: the one made for an earlier `exec` that
/// failed, if the process, table and working directory are as they were then, else a new
/// one. A program that searches `PATH` itself (Python's `os.execvp`) calls `execve` once per
/// directory; a token per failed try would keep the whole table (and its locks) on the
/// server until it expired.
fn exec_token(cwd: Option<u32>) -> Option<u64> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let generation = descriptors::generation();
    let mut cached = EXEC_TOKEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(made) = *cached
        && (made.pid, made.generation, made.cwd) == (pid, generation, cwd)
    {
        return Some(made.token);
    }
    let token = connection::client()?.prepare_fork().ok()?;
    *cached = Some(ExecToken {
        pid,
        generation,
        cwd,
        token,
    });
    Some(token)
}

/// Interposed: a new mount namespace has its own mount table (see `paths::mounts`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn unshare(flags: c_int) -> c_int {
    // SAFETY: libc's contract, passed on.
    let rc = unsafe { real::unshare()(flags) };
    if rc == 0 && flags & libc::CLONE_NEWNS != 0 {
        paths::namespace_changed();
    }
    rc
}

/// Interposed: as [`unshare`]; `nstype` 0 may be any kind of namespace.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setns(fd: c_int, nstype: c_int) -> c_int {
    // SAFETY: libc's contract, passed on.
    let rc = unsafe { real::setns()(fd, nstype) };
    if rc == 0 && (nstype == 0 || nstype & libc::CLONE_NEWNS != 0) {
        paths::namespace_changed();
    }
    rc
}

/// Interposed: a child made for `vfork` that exits without executing a program (say, a
/// command not found) attaches first, so that the server drops the table it inherited when
/// it goes, as the kernel closes a process's descriptors, instead of keeping it until the
/// token expires (see `fork_for_vfork`).
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.hot.btfuse")]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    if connection::pending().is_some() {
        let _ = guarded(connection::client);
    }
    exit_group(status)
}

/// Ends the process as libc's `_exit` does, with the `exit_group` system call, made through
/// `syscall` (this library's, which passes the number to libc's, found when the library
/// loaded) rather than through libc's `_exit`: `_exit` may be called from a signal handler or
/// a `vfork` child, where the dynamic loader may not be asked for it, and asking it for
/// `_exit` when the library loaded cost every process about 20 µs (`posix_spawn` of `true`,
/// 2,000 per build, both orders of the builds).
#[unsafe(link_section = ".text.hot.btfuse")]
fn exit_group(status: c_int) -> ! {
    loop {
        // SAFETY: exit_group takes one integer and does not return.
        unsafe { libc::syscall(libc::SYS_exit_group, libc::c_long::from(status)) };
    }
}

/// Interposed: as [`_exit`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    // SAFETY: as `_exit`.
    unsafe { _exit(status) }
}

/// Those of the btfuse descriptors `all` an exec now keeps (no close-on-exec).
fn surviving_of(all: &[(c_int, Entry)]) -> Vec<(c_int, Entry)> {
    all.iter()
        .copied()
        .filter(|&(fd, _)| {
            // SAFETY: F_GETFD on a placeholder this library holds.
            let flags = unsafe { real::fcntl()(fd, libc::F_GETFD, 0) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .collect()
}

/// Hands each of `surviving`'s files to the kernel (see the module documentation) and puts
/// the kernel descriptor on its number; returns the descriptors it could not hand off.
fn hand_off(surviving: Vec<(c_int, Entry)>) -> Vec<(c_int, Entry)> {
    let Some(client) = connection::client() else {
        return surviving;
    };
    let mut left = Vec::new();
    let mut available = true;
    for (fd, entry) in surviving {
        if entry.dir || !available {
            left.push((fd, entry));
            continue;
        }
        match client.handoff(entry.desc) {
            Ok(kernel) => {
                use std::os::fd::AsRawFd;
                // SAFETY: `kernel` is open; `fd` is this library's placeholder, replaced
                // atomically by a descriptor that survives the exec.
                if unsafe { real::dup3()(kernel.as_raw_fd(), fd, 0) } != fd {
                    left.push((fd, entry));
                }
            }
            Err(e) => {
                // No mount (`EOPNOTSUPP`) answers the same for every description.
                available = e.raw_os_error() != Some(libc::EOPNOTSUPP);
                left.push((fd, entry));
            }
        }
    }
    left
}

/// The btfuse working directory, when a child or the next program must be handed it: not
/// when the kernel's working directory is the same directory through the mount, where the
/// other process's relative names reach it from the kernel's (see `paths::from_kernel_cwd`).
/// A shell in a btfuse directory then starts each program without preparing a table for it,
/// and a program that touches no btfuse file never connects.
pub(crate) fn passed_cwd() -> Option<(u32, Vec<u8>)> {
    let cwd = paths::CWD
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()?;
    (!paths::kernel_cwd_is(&cwd.1)).then_some(cwd)
}

/// The value of `BTFUSE_INHERIT` for an exec now: `TOKEN;FD=DESC[d],...;[CWD];DESC,...`
/// (the descriptors the next program takes over, its working directory if it is handed on,
/// and the descriptions of the token's table it must close: those of close-on-exec
/// descriptors, handed-off ones and a working directory not handed on, which the kernel
/// closes for the program), or `None` when nothing survives the exec. With
/// `hand_off_first`, the files are handed to the kernel first and only what could not be
/// is listed.
fn inherit_value(hand_off_first: bool) -> Option<String> {
    let all = descriptors::entries();
    let surviving = surviving_of(&all);
    let hand_off_first = hand_off_first && !surviving.is_empty();
    // A child made for `vfork` has its parent's table under a token it has not attached to
    // (see `fork_for_vfork`): the next program attaches to that one instead.
    let pending = connection::pending().filter(|_| !hand_off_first);
    if pending.is_none() {
        // The new program uses the server's descriptions, offsets included (see `held`).
        drop(held::settle_all(connection::current_client().as_ref()));
    }
    let surviving = if hand_off_first {
        hand_off(surviving)
    } else {
        surviving
    };
    let cwd = passed_cwd();
    if surviving.is_empty() && cwd.is_none() && pending.is_none() {
        return None;
    }
    let token = match pending {
        Some(token) => token,
        None => exec_token(cwd.as_ref().map(|c| c.0))?,
    };
    let mut value = format!("{token};");
    for (i, (fd, entry)) in surviving.iter().enumerate() {
        if i > 0 {
            value.push(',');
        }
        value.push_str(&format!(
            "{fd}={}{}",
            entry.desc,
            if entry.dir { "d" } else { "" }
        ));
    }
    value.push(';');
    if let Some((desc, path)) = &cwd {
        value.push_str(&format!("{desc}:"));
        for b in path {
            value.push_str(&format!("{b:02x}"));
        }
    }
    value.push(';');
    let kept = |desc: u32| {
        surviving.iter().any(|(_, e)| e.desc == desc) || cwd.as_ref().is_some_and(|c| c.0 == desc)
    };
    let mut closed: Vec<u32> = all
        .iter()
        .map(|(_, e)| e.desc)
        .chain(paths::cwd_desc())
        .filter(|&desc| !kept(desc))
        .collect();
    closed.sort_unstable();
    closed.dedup();
    let closed: Vec<String> = closed.iter().map(u32::to_string).collect();
    value.push_str(&closed.join(","));
    Some(value)
}

/// This library's file name, as the dynamic loader loaded it.
fn library_path() -> Option<&'static [u8]> {
    static PATH: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        // SAFETY: dladdr fills `info` for an address inside a loaded object; `dli_fname` is
        // the loader's string, copied at once.
        unsafe {
            let mut info: libc::Dl_info = std::mem::zeroed();
            let here = library_path as *const libc::c_void;
            if libc::dladdr(here, &mut info) == 0 || info.dli_fname.is_null() {
                return None;
            }
            Some(std::ffi::CStr::from_ptr(info.dli_fname).to_bytes().to_vec())
        }
    })
    .as_deref()
}

/// `envp` with `BTFUSE_INHERIT` set to `value` (and any older value dropped), and with what
/// the next program needs to take the descriptors over even when `envp` was built without
/// it (`execle` with a fresh environment): the mount's variables (always, when the mount was
/// discovered rather than named), and this library in `LD_PRELOAD`.
///
/// # Safety
/// `envp` is a null-terminated array of C strings.
unsafe fn with_inherit(envp: *const *const c_char, value: &str) -> Vec<CString> {
    let discovered = config::exec_environment();
    let inherit = format!("{INHERIT_VAR}=");
    let socket_var = format!("{}=", config::SOCKET_VAR);
    let prefix_var = format!("{}=", config::PREFIX_VAR);
    let mut kept = Vec::new();
    let mut named = false;
    let mut preload: Option<Vec<u8>> = None;
    let mut p = envp;
    // SAFETY: the caller's contract: walk until the terminating null.
    unsafe {
        while !p.is_null() && !(*p).is_null() {
            let entry = std::ffi::CStr::from_ptr(*p).to_bytes();
            if entry.starts_with(inherit.as_bytes()) {
                // Dropped: the new value goes last.
            } else if let Some(list) = entry.strip_prefix(b"LD_PRELOAD=") {
                preload = Some(list.to_vec());
            } else {
                named |= entry.starts_with(socket_var.as_bytes())
                    || entry.starts_with(prefix_var.as_bytes());
                kept.push(entry.to_vec());
            }
            p = p.add(1);
        }
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mount = discovered.or_else(|| {
        // Named by the environment: passed on only if `envp` lost the variables.
        let config = config::config().filter(|_| !named)?;
        let prefix = if config.prefix().is_empty() {
            b"/".to_vec()
        } else {
            config.prefix().to_vec()
        };
        Some((
            prefix,
            config.socket().as_os_str().as_encoded_bytes().to_vec(),
        ))
    });
    if let Some((prefix, socket)) = mount {
        out.push([prefix_var.as_bytes(), &prefix].concat());
        out.push([socket_var.as_bytes(), &socket].concat());
    }
    out.extend(kept);
    if let Some(library) = library_path() {
        let list = preload.unwrap_or_default();
        let present = list
            .split(|&b| b == b':' || b == b' ')
            .any(|entry| entry == library);
        let list = match (present, list.is_empty()) {
            (true, _) => list,
            (false, true) => library.to_vec(),
            (false, false) => [&list[..], b":", library].concat(),
        };
        out.push([b"LD_PRELOAD=", &list[..]].concat());
    } else if let Some(list) = preload {
        out.push([b"LD_PRELOAD=", &list[..]].concat());
    }
    out.push(format!("{inherit}{value}").into_bytes());
    if let Some(mounts) = config::mounts_variable()
        && !out
            .iter()
            .any(|var| var.starts_with(config::MOUNTS_VAR_ENTRY))
    {
        out.push(mounts.to_bytes().to_vec());
    }
    out.into_iter()
        .filter_map(|var| CString::new(var).ok())
        .collect()
}

/// `envp` with the btfuse mounts this process sees added (see [`config::mounts_variable`]),
/// so that the next program, when it loads this library, need not read the mount table
/// again; `None` when there is nothing to add (`envp` already has a list, or no
/// `LD_PRELOAD`).
///
/// # Safety
/// `envp` is a null-terminated array of C strings.
unsafe fn with_mounts(envp: *const *const c_char) -> Option<Vec<*const c_char>> {
    let mut out = Vec::new();
    let mut preloading = false;
    let mut p = envp;
    // SAFETY: the caller's contract: walk until the terminating null.
    unsafe {
        while !p.is_null() && !(*p).is_null() {
            let entry = std::ffi::CStr::from_ptr(*p).to_bytes();
            if entry.starts_with(config::MOUNTS_VAR_ENTRY) {
                return None;
            }
            preloading |= entry.starts_with(b"LD_PRELOAD=");
            out.push(*p);
            p = p.add(1);
        }
    }
    if !preloading {
        return None;
    }
    let mounts = guarded(config::mounts_variable).flatten()?;
    out.push(mounts.as_ptr());
    out.push(std::ptr::null());
    Some(out)
}

/// Environment entries a `vfork` child's `exec` adds the mounts' list to; a longer
/// environment is passed on as given.
const VFORK_ENV_CAP: usize = 512;

/// `exec` in a `vfork` child: there is nothing of btfuse's to hand on (see
/// [`btfuse_vfork_target`]), only the mounts the parent found, as [`with_mounts`] adds them;
/// but on the parent's memory nothing may be allocated or changed, so the environment with
/// them is built on the child's stack.
///
/// # Safety
/// `envp` is a null-terminated array of C strings.
unsafe fn exec_from_vfork_child(
    envp: *const *const c_char,
    exec: impl FnOnce(*const *const c_char) -> c_int,
) -> c_int {
    let Some(mounts) = config::found_mounts_variable() else {
        return exec(envp);
    };
    let mut env = [std::ptr::null::<c_char>(); VFORK_ENV_CAP];
    let mut len = 0;
    let mut preloading = false;
    let mut p = envp;
    // SAFETY: the caller's contract: walk until the terminating null.
    unsafe {
        while !p.is_null() && !(*p).is_null() {
            let entry = std::ffi::CStr::from_ptr(*p).to_bytes();
            // Room for the list and the terminating null; an environment with a list already
            // keeps it.
            if len + 2 > VFORK_ENV_CAP || entry.starts_with(config::MOUNTS_VAR_ENTRY) {
                return exec(envp);
            }
            preloading |= entry.starts_with(b"LD_PRELOAD=");
            env[len] = *p;
            len += 1;
            p = p.add(1);
        }
    }
    if !preloading {
        return exec(envp);
    }
    env[len] = mounts.as_ptr();
    exec(env.as_ptr())
}

fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

unsafe extern "C" {
    /// The process environment.
    pub(crate) static environ: *const *const c_char;
}

/// Runs `exec` of `program` with the environment it should get: `envp` plus the inherited
/// table, if any, after handing the btfuse files to the kernel when `program` will not load
/// this library.
///
/// # Safety
/// `envp` is a null-terminated array of C strings; `program`'s strings are C strings.
pub(crate) unsafe fn exec_with(
    program: Program<'_>,
    envp: *const *const c_char,
    exec: impl FnOnce(*const *const c_char) -> c_int,
) -> c_int {
    if guard::in_vfork_child() {
        // SAFETY: the caller's contract.
        return unsafe { exec_from_vfork_child(envp, exec) };
    }
    let value = guarded(|| {
        let foreign = !descriptors::entries().is_empty()
            && library_path().is_some_and(|library| {
                // SAFETY: the caller's contract.
                !unsafe { program::loads_library(program, envp, library) }
            });
        inherit_value(foreign)
    })
    .flatten();
    match value {
        // SAFETY: the caller's contract.
        None => match unsafe { with_mounts(envp) } {
            Some(env) => exec(env.as_ptr()),
            None => exec(envp),
        },
        Some(value) => {
            // SAFETY: the caller's contract.
            let env = unsafe { with_inherit(envp, &value) };
            let ptrs = pointers(&env);
            exec(ptrs.as_ptr())
        }
    }
}

/// What the kernel must be given for a program named `path` from `dirfd` (`AT_FDCWD` for
/// the working directory).
enum ProgramPath {
    /// The kernel finds it as named.
    Unchanged,
    /// A relative name from a btfuse directory, spelled from the prefix: the kernel finds it
    /// there when the FUSE mount is, and answers `ENOENT` when not, instead of looking in its
    /// own stale working directory or from a placeholder's `/`.
    Spelled(CString),
    /// A btfuse file named by descriptor: the kernel cannot execute it.
    Refused(c_int),
}

fn program_path(dirfd: c_int, path: &[u8], empty_path: bool) -> ProgramPath {
    let Some(base) = (if dirfd == libc::AT_FDCWD {
        paths::CWD
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, path)| path.clone())
    } else {
        match descriptors::lookup(dirfd) {
            None => None,
            Some(_) if path.is_empty() && empty_path => {
                return ProgramPath::Refused(libc::EACCES);
            }
            Some(entry) if !entry.dir && path.first() != Some(&b'/') => {
                return ProgramPath::Refused(libc::ENOTDIR);
            }
            Some(_) => paths::dir_path(dirfd).or_else(|| Some(b"/".to_vec())),
        }
    }) else {
        return ProgramPath::Unchanged;
    };
    if path.is_empty() || path.first() == Some(&b'/') {
        return ProgramPath::Unchanged;
    }
    let Some(config) = config::config() else {
        return ProgramPath::Unchanged;
    };
    let mut full = config.prefix().to_vec();
    full.extend_from_slice(&base);
    if full.last() != Some(&b'/') {
        full.push(b'/');
    }
    full.extend_from_slice(path);
    match CString::new(full) {
        Ok(full) => ProgramPath::Spelled(full),
        Err(_) => ProgramPath::Unchanged,
    }
}

/// Without a mount at the prefix, a program named under it is nowhere the kernel can find:
/// the walk is the server's (a link out of the tree, as a venv's `bin/python`, leads the
/// kernel to its target), and a file it finds cannot be executed (`EACCES`, as from a
/// filesystem mounted `noexec`), where the kernel would answer `ENOENT` or run what lies
/// beneath the prefix. `None`: the kernel finds the program as named.
fn ring_alone_program(path: &[u8]) -> Option<ProgramPath> {
    if !config::spelled_under_prefix(path) || config::prefix_is_mounted() {
        return None;
    }
    let c_path = CString::new(path).ok()?;
    // SAFETY: `c_path` is a C string that outlives the call.
    let target = unsafe { paths::at_target(libc::AT_FDCWD, c_path.as_ptr()) }?;
    let stat = |t: &paths::PathTarget<'_>| {
        let target = btfuse_core::ring::Target::Path {
            at: t.at,
            path: &t.path,
            follow: true,
        };
        let request = btfuse_core::ring::Request::Stat { target };
        match connection::call(&t.client, &request, |_| Ok(())) {
            Ok(()) => ProgramPath::Refused(libc::EACCES),
            Err(e) => ProgramPath::Refused(e),
        }
    };
    let kernel = |host: &std::ffi::CStr| ProgramPath::Spelled(host.to_owned());
    crate::outside::follow(target, stat, kernel, ProgramPath::Refused)
}

/// Runs `exec` with the program's path as the kernel must see it (see [`ProgramPath`]).
///
/// # Safety
/// `path` is a valid C string.
unsafe fn with_program_path(
    dirfd: c_int,
    path: *const c_char,
    empty_path: bool,
    exec: impl FnOnce(*const c_char) -> c_int,
) -> c_int {
    if !paths::user_pointer(path) {
        return fail(libc::EFAULT);
    }
    let resolved = guarded(|| {
        // SAFETY: the caller's contract.
        let bytes = unsafe { paths::c_bytes(path) }?;
        Some(match program_path(dirfd, bytes, empty_path) {
            ProgramPath::Unchanged => ring_alone_program(bytes).unwrap_or(ProgramPath::Unchanged),
            ProgramPath::Spelled(full) => {
                ring_alone_program(full.as_bytes()).unwrap_or(ProgramPath::Spelled(full))
            }
            refused => refused,
        })
    })
    .flatten();
    match resolved {
        None | Some(ProgramPath::Unchanged) => exec(path),
        Some(ProgramPath::Spelled(full)) => exec(full.as_ptr()),
        Some(ProgramPath::Refused(e)) => fail(e),
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        with_program_path(libc::AT_FDCWD, path, false, |path| {
            let program = Program::Path(std::ffi::CStr::from_ptr(path));
            exec_with(program, envp, |env| real::execve()(path, argv, env))
        })
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: libc's contract, passed on; `environ` is the process environment.
    unsafe { execve(path, argv, environ) }
}

/// Whether `file` names a program by path rather than by a `PATH` search.
///
/// # Safety
/// `file` is null or a valid C string.
unsafe fn has_slash(file: *const c_char) -> bool {
    // SAFETY: the caller's contract.
    unsafe { paths::c_bytes(file) }.is_some_and(|f| f.contains(&b'/'))
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: libc's contract, passed on; `environ` is the process environment.
    unsafe { execvpe(file, argv, environ) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe {
        let run = |file: *const c_char| {
            let program = Program::Search(std::ffi::CStr::from_ptr(file));
            exec_with(program, envp, |env| real::execvpe()(file, argv, env))
        };
        if has_slash(file) {
            with_program_path(libc::AT_FDCWD, file, false, run)
        } else {
            run(file)
        }
    }
}

/// Interposed: glibc's `fexecve` execs with its internal `execveat`, which no interposer
/// sees. A kernel descriptor's program receives the btfuse descriptors; a btfuse file cannot
/// be executed by the kernel (`EACCES`, as from a filesystem that forbids it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fexecve(
    fd: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    if guarded(|| descriptors::lookup(fd).is_some()).unwrap_or(false) {
        return fail(libc::EACCES);
    }
    // SAFETY: libc's contract, passed on.
    unsafe { exec_with(Program::Fd(fd), envp, |env| real::fexecve()(fd, argv, env)) }
}

/// Interposed: a relative name from a btfuse directory descriptor is spelled from the
/// prefix (the kernel would resolve it from the placeholder's `/`); a btfuse file named by
/// `AT_EMPTY_PATH` cannot be executed by the kernel (`EACCES`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    flags: c_int,
) -> c_int {
    let empty_path = flags & libc::AT_EMPTY_PATH != 0;
    // SAFETY: libc's contract, passed on.
    unsafe {
        with_program_path(dirfd, path, empty_path, |resolved| {
            let dirfd = if resolved == path {
                dirfd
            } else {
                libc::AT_FDCWD
            };
            let program = Program::At(dirfd, std::ffi::CStr::from_ptr(resolved), flags);
            exec_with(program, envp, |env| {
                real::execveat()(dirfd, resolved, argv, env, flags)
            })
        })
    }
}

unsafe extern "C" {
    // Defined in `variadic.c` (stable Rust cannot define C-variadic functions): they build
    // the argument vector and call this library's `execve` and `execvp`.
    fn execl(path: *const c_char, arg: *const c_char, ...) -> c_int;
    fn execle(path: *const c_char, arg: *const c_char, ...) -> c_int;
    fn execlp(file: *const c_char, arg: *const c_char, ...) -> c_int;
}

/// Keeps the C definitions of `execl`, `execle` and `execlp` in the library (an archive
/// member nothing refers to would not be linked in).
#[used]
static VARIADIC_EXECS: [unsafe extern "C" fn(*const c_char, *const c_char, ...) -> c_int; 3] =
    [execl, execle, execlp];

/// What an `exec` hands over: the token, the descriptors, the working directory, and the
/// descriptions to close.
type Inherited = (u64, Vec<(c_int, Entry)>, Option<(u32, Vec<u8>)>, Vec<u32>);

/// Parses `TOKEN;FD=DESC[d],...[;[CWDDESC:HEXPATH][;DESC,...]]`.
fn parse_inherit(value: &str) -> Option<Inherited> {
    let mut parts = value.split(';');
    let token = parts.next()?.parse().ok()?;
    let list = parts.next()?;
    let mut entries = Vec::new();
    for item in list.split(',').filter(|s| !s.is_empty()) {
        let (fd, desc) = item.split_once('=')?;
        let (desc, dir) = match desc.strip_suffix('d') {
            Some(d) => (d, true),
            None => (desc, false),
        };
        entries.push((
            fd.parse().ok()?,
            Entry {
                desc: desc.parse().ok()?,
                dir,
            },
        ));
    }
    let cwd = match parts.next() {
        None | Some("") => None,
        Some(cwd) => {
            let (desc, hex) = cwd.split_once(':')?;
            if hex.len() % 2 != 0 {
                return None;
            }
            let path = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            Some((desc.parse().ok()?, path))
        }
    };
    let closed = match parts.next() {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|d| d.parse().ok())
            .collect::<Option<Vec<u32>>>()?,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((token, entries, cwd, closed))
}

/// Runs when the library loads: a program started by `exec` from a btfuse program takes over
/// the descriptions its predecessor left it.
#[unsafe(link_section = ".text.hot.btfuse")]
extern "C" fn on_load() {
    let _ = guarded(|| {
        // libc's getenv, not std's: most processes have no such variable, and this way they
        // run none of std's environment code (nor fault its pages in) to find that out.
        // SAFETY: a constructor, before the program's own threads; the value is copied.
        let raw = unsafe { libc::getenv(c"BTFUSE_INHERIT".as_ptr()) };
        if raw.is_null() {
            return;
        }
        // SAFETY: getenv returned a NUL-terminated string.
        let Ok(value) = unsafe { std::ffi::CStr::from_ptr(raw) }
            .to_str()
            .map(str::to_owned)
        else {
            return;
        };
        // SAFETY: removes the variable before anything else of the program runs, so that
        // its own children do not see a token already used.
        unsafe { libc::unsetenv(c"BTFUSE_INHERIT".as_ptr()) };
        let Some((token, entries, cwd, closed)) = parse_inherit(&value) else {
            return;
        };
        let Some(client) = connection::client() else {
            return;
        };
        if client.attach(token).is_ok() {
            // The program before the exec may have taken POSIX record locks, which this
            // process still holds and which closing any descriptor of their file lets go:
            // no description is parked (see `held`).
            crate::held::stop_parking(&client);
            // What the kernel closed at the exec: the table still has their descriptions.
            // Closed and waited for before the program runs, so that no process it talks to
            // finds a lock of theirs still held.
            for desc in closed {
                crate::serve::release_waited(&client, desc);
            }
            for (fd, entry) in entries {
                descriptors::insert(fd, entry);
            }
            for fd in 0..=2 {
                super::streams::sync_std_stream(fd);
            }
            if let Some((desc, path)) = cwd {
                paths::remember_path(desc, path.clone());
                *paths::CWD.lock().unwrap_or_else(|p| p.into_inner()) = Some((desc, path));
            }
        }
    });
}

#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inherited_table_parses_back() {
        let (token, entries, cwd, closed) = parse_inherit("42;1=7,3=9d").unwrap();
        assert_eq!(token, 42);
        let file = Entry {
            desc: 7,
            dir: false,
        };
        let dir = Entry { desc: 9, dir: true };
        assert_eq!(entries, vec![(1, file), (3, dir)]);
        assert_eq!(cwd, None);
        assert!(closed.is_empty());
        assert!(parse_inherit("x;1=2").is_none());
        assert!(parse_inherit("1;1=x").is_none());
        assert_eq!(
            parse_inherit("5;").map(|(t, e, _, _)| (t, e.len())),
            Some((5, 0))
        );
        let (_, _, cwd, _) = parse_inherit("5;;11:2f61").unwrap();
        assert_eq!(cwd, Some((11, b"/a".to_vec())));
        assert!(parse_inherit("5;;11:2f6").is_none());
        let (_, entries, cwd, closed) = parse_inherit("5;1=7;;4,12").unwrap();
        assert_eq!((entries, cwd, closed), (vec![(1, file)], None, vec![4, 12]));
        let (_, _, cwd, closed) = parse_inherit("5;;11:2f61;3").unwrap();
        assert_eq!((cwd, closed), (Some((11, b"/a".to_vec())), vec![3]));
        assert!(parse_inherit("5;;;x").is_none());
        assert!(parse_inherit("5;;;1;2").is_none());
    }
}
