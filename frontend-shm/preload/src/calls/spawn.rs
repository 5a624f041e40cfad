//! `posix_spawn`, `posix_spawnp`, `system`, `popen` and `pclose`.
//!
//! glibc runs all of them through its internal spawn: a `clone` child applies the file
//! actions with internal calls and execs with its internal `execve`, so file actions on
//! btfuse paths or descriptors would reach the kernel, and the new program would not receive
//! the btfuse descriptors it inherits (it would see `EBADF`). A spawn that involves btfuse
//! (a btfuse descriptor survives the exec, the working directory is btfuse's, or a file
//! action names a btfuse path or descriptor) therefore runs here: this library's `fork` makes
//! the child, with its own channel on the parent's descriptions; the child applies the
//! attributes and the file actions in glibc's order through this library's calls; and this
//! library's exec hands the surviving descriptors on. A failure before the exec reaches the
//! parent through a close-on-exec pipe, and is what `posix_spawn` returns, as glibc's does.
//! Spawns that do not involve btfuse go to glibc untouched.
//!
//! The differences a program can see are those of `fork` against glibc's `CLONE_VFORK`:
//! `pthread_atfork` handlers run, and the parent waits for the exec through a pipe rather
//! than shared memory.

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::{Mutex, OnceLock};

use libc::{FILE, c_char, c_int, c_short, c_uint, pid_t, sigset_t};

use super::process::{self, environ};
use super::{cwd, fd, path};
use crate::config;
use crate::descriptors;
use crate::errno::{errno, fail};
use crate::guard::guarded;
use crate::paths;
use crate::program::Program;
use crate::real;

/// One file action of a `posix_spawn_file_actions_t`, as glibc records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Close(c_int),
    Dup2 {
        fd: c_int,
        newfd: c_int,
    },
    Open {
        fd: c_int,
        path: *const c_char,
        oflag: c_int,
        mode: libc::mode_t,
    },
    Chdir(*const c_char),
    Fchdir(c_int),
    Closefrom(c_int),
    Tcsetpgrp(c_int),
}

/// glibc's layout of `posix_spawn_file_actions_t` (`spawn_int.h`), which the public header
/// leaves opaque. It is checked against glibc's own functions before it is trusted
/// ([`layout_holds`]).
#[repr(C)]
struct RawActions {
    allocated: c_int,
    used: c_int,
    actions: *const RawAction,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RawOpen {
    fd: c_int,
    path: *const c_char,
    oflag: c_int,
    mode: libc::mode_t,
}

#[repr(C)]
#[derive(Clone, Copy)]
union RawArgs {
    fd: c_int,
    pair: [c_int; 2],
    open: RawOpen,
    path: *const c_char,
}

#[repr(C)]
struct RawAction {
    tag: c_int,
    args: RawArgs,
}

/// Reads glibc's file actions.
///
/// # Safety
/// `fa` is null or a `posix_spawn_file_actions_t` glibc initialised.
unsafe fn read_actions(fa: *const libc::posix_spawn_file_actions_t) -> Result<Vec<Action>, c_int> {
    if fa.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: the caller's contract; glibc's layout (checked by `layout_holds`).
    let raw = unsafe { &*fa.cast::<RawActions>() };
    let count = usize::try_from(raw.used).map_err(|_| libc::EINVAL)?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: glibc keeps `used` initialised records at `actions`.
        let action = unsafe { &*raw.actions.add(i) };
        // SAFETY: each arm reads the union member glibc wrote for the tag.
        out.push(unsafe {
            match action.tag {
                0 => Action::Close(action.args.fd),
                1 => Action::Dup2 {
                    fd: action.args.pair[0],
                    newfd: action.args.pair[1],
                },
                2 => Action::Open {
                    fd: action.args.open.fd,
                    path: action.args.open.path,
                    oflag: action.args.open.oflag,
                    mode: action.args.open.mode,
                },
                3 => Action::Chdir(action.args.path),
                4 => Action::Fchdir(action.args.fd),
                5 => Action::Closefrom(action.args.fd),
                6 => Action::Tcsetpgrp(action.args.fd),
                // A newer glibc's action this library does not know: refuse the spawn.
                _ => return Err(libc::ENOSYS),
            }
        });
    }
    Ok(out)
}

/// Whether glibc lays out file actions as [`read_actions`] expects: one of each kind made by
/// glibc's own functions must read back as made.
fn layout_holds() -> bool {
    static HOLDS: OnceLock<bool> = OnceLock::new();
    *HOLDS.get_or_init(|| {
        let probe = c"probe";
        // SAFETY: a zeroed struct is what glibc's init overwrites; every call is glibc's
        // own on an initialised object, destroyed at the end.
        unsafe {
            let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
            if libc::posix_spawn_file_actions_init(&mut fa) != 0 {
                return false;
            }
            let made = libc::posix_spawn_file_actions_addclose(&mut fa, 7) == 0
                && libc::posix_spawn_file_actions_adddup2(&mut fa, 1, 2) == 0
                && libc::posix_spawn_file_actions_addopen(&mut fa, 3, probe.as_ptr(), 5, 6) == 0
                && libc::posix_spawn_file_actions_addchdir_np(&mut fa, probe.as_ptr()) == 0
                && libc::posix_spawn_file_actions_addfchdir_np(&mut fa, 8) == 0
                && libc::posix_spawn_file_actions_addclosefrom_np(&mut fa, 9) == 0
                && libc::posix_spawn_file_actions_addtcsetpgrp_np(&mut fa, 10) == 0;
            let expected = [
                Action::Close(7),
                Action::Dup2 { fd: 1, newfd: 2 },
                Action::Open {
                    fd: 3,
                    path: std::ptr::null(),
                    oflag: 5,
                    mode: 6,
                },
                Action::Chdir(std::ptr::null()),
                Action::Fchdir(8),
                Action::Closefrom(9),
                Action::Tcsetpgrp(10),
            ];
            let read = read_actions(&fa).unwrap_or_default();
            let same = read.len() == expected.len()
                && read
                    .iter()
                    .zip(&expected)
                    .all(|(got, want)| match (got, want) {
                        (
                            Action::Open {
                                path,
                                fd,
                                oflag,
                                mode,
                            },
                            Action::Open { .. },
                        ) => {
                            !path.is_null()
                                && CStr::from_ptr(*path) == probe
                                && Action::Open {
                                    fd: *fd,
                                    path: std::ptr::null(),
                                    oflag: *oflag,
                                    mode: *mode,
                                } == *want
                        }
                        (Action::Chdir(path), Action::Chdir(_)) => {
                            !path.is_null() && CStr::from_ptr(*path) == probe
                        }
                        _ => got == want,
                    });
            libc::posix_spawn_file_actions_destroy(&mut fa);
            made && same
        }
    })
}

/// The attributes of a spawn (`posix_spawnattr_t`), read through glibc's getters.
struct Attributes {
    flags: c_short,
    pgroup: pid_t,
    sigdefault: sigset_t,
    sigmask: sigset_t,
    policy: c_int,
    param: libc::sched_param,
}

impl Attributes {
    fn none() -> Attributes {
        // SAFETY: all-zero sigsets and sched_param are valid (empty) values.
        unsafe { std::mem::zeroed() }
    }

    /// # Safety
    /// `attr` is null or a `posix_spawnattr_t` glibc initialised.
    unsafe fn read(attr: *const libc::posix_spawnattr_t) -> Attributes {
        let mut out = Attributes::none();
        if attr.is_null() {
            return out;
        }
        // SAFETY: glibc's getters on an initialised object, each writing one field.
        unsafe {
            libc::posix_spawnattr_getflags(attr, &mut out.flags);
            libc::posix_spawnattr_getpgroup(attr, &mut out.pgroup);
            libc::posix_spawnattr_getsigdefault(attr, &mut out.sigdefault);
            libc::posix_spawnattr_getsigmask(attr, &mut out.sigmask);
            libc::posix_spawnattr_getschedpolicy(attr, &mut out.policy);
            libc::posix_spawnattr_getschedparam(attr, &mut out.param);
        }
        out
    }

    fn has(&self, flag: c_int) -> bool {
        c_int::from(self.flags) & flag != 0
    }
}

/// The result of a call that answers -1 and `errno` on failure.
fn checked(rc: c_int) -> Result<c_int, c_int> {
    if rc < 0 { Err(errno()) } else { Ok(rc) }
}

/// Whether a spawn with `actions` involves btfuse, so that it must run here.
fn involves_btfuse(actions: &[Action]) -> bool {
    guarded(|| {
        let inherited = descriptors::entries().into_iter().any(|(fd, _)| {
            // SAFETY: F_GETFD on a placeholder this library holds.
            let flags = unsafe { real::fcntl()(fd, libc::F_GETFD, 0) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        });
        inherited
            || super::process::passed_cwd().is_some()
            || actions.iter().any(|action| match *action {
                // SAFETY: paths glibc copied into the file actions.
                Action::Open { path, .. } | Action::Chdir(path) => unsafe {
                    paths::at_target(libc::AT_FDCWD, path).is_some()
                },
                Action::Dup2 { fd, .. } | Action::Fchdir(fd) | Action::Tcsetpgrp(fd) => {
                    descriptors::lookup(fd).is_some()
                }
                Action::Close(_) | Action::Closefrom(_) => false,
            })
    })
    .unwrap_or(false)
}

/// Whether `file` names a program by a btfuse path (a name with a slash: one without is a
/// `PATH` search, which glibc makes in the kernel's directories).
///
/// # Safety
/// `file` is null or a valid C string.
unsafe fn names_btfuse(file: *const c_char) -> bool {
    guarded(|| {
        // SAFETY: the caller's contract.
        let name = unsafe { paths::c_bytes(file) }?;
        // SAFETY: as above.
        Some(name.contains(&b'/') && unsafe { paths::at_target(libc::AT_FDCWD, file) }.is_some())
    })
    .flatten()
    .unwrap_or(false)
}

/// Moves the child's error pipe off `fd` when an action is about to use that number.
fn move_pipe_from(pipe: &mut c_int, fd: c_int) -> Result<(), c_int> {
    if *pipe == fd {
        // SAFETY: duplicates and closes the child's own pipe.
        let moved = checked(unsafe { real::fcntl()(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: as above.
        unsafe { real::close()(fd) };
        *pipe = moved;
    }
    Ok(())
}

/// The descriptor limit glibc checks a failed `close` action against.
fn descriptor_limit() -> c_int {
    // SAFETY: getdtablesize cannot fail.
    unsafe { libc::getdtablesize() }
}

/// Applies one file action in the child, as glibc's spawn child does, through this library.
///
/// # Safety
/// The paths in `action` are valid C strings.
unsafe fn apply(action: Action, attr: &Attributes, pipe: &mut c_int) -> Result<(), c_int> {
    // SAFETY: this library's calls with libc's contracts.
    unsafe {
        match action {
            // The pipe's number is not open as far as the program knows: closing it is the
            // harmless failure glibc ignores, and using it is EBADF.
            Action::Close(fd) if fd == *pipe => {}
            Action::Dup2 { fd, .. } | Action::Fchdir(fd) | Action::Tcsetpgrp(fd) if fd == *pipe => {
                return Err(libc::EBADF);
            }
            Action::Close(fd) => {
                if fd::close(fd) != 0 && !(0..descriptor_limit()).contains(&fd) {
                    return Err(errno());
                }
            }
            Action::Dup2 { fd, newfd } if fd == newfd => {
                // Only the close-on-exec flag is cleared.
                let flags = checked(fd::fcntl(fd, libc::F_GETFD, 0))?;
                let cleared = (flags & !libc::FD_CLOEXEC) as libc::c_ulong;
                checked(fd::fcntl(fd, libc::F_SETFD, cleared))?;
            }
            Action::Dup2 { fd, newfd } => {
                move_pipe_from(pipe, newfd)?;
                if fd::dup2(fd, newfd) != newfd {
                    return Err(errno());
                }
            }
            Action::Open {
                fd,
                path,
                oflag,
                mode,
            } => {
                move_pipe_from(pipe, fd)?;
                // POSIX: a descriptor already open at `fd` is closed first.
                fd::close(fd);
                let opened = checked(path::open(path, oflag | libc::O_LARGEFILE, mode))?;
                if opened != fd {
                    if fd::dup2(opened, fd) != fd {
                        return Err(errno());
                    }
                    checked(fd::close(opened))?;
                }
            }
            Action::Chdir(path) => {
                checked(cwd::chdir(path))?;
            }
            Action::Fchdir(fd) => {
                checked(cwd::fchdir(fd))?;
            }
            Action::Closefrom(low) => {
                let low = low.max(0);
                if *pipe >= low {
                    if *pipe > low {
                        checked(fd::close_range(low as c_uint, (*pipe - 1) as c_uint, 0))?;
                    }
                    fd::closefrom(*pipe + 1);
                } else {
                    fd::closefrom(low);
                }
            }
            Action::Tcsetpgrp(fd) => {
                let group = if attr.has(libc::POSIX_SPAWN_SETPGROUP as c_int) && attr.pgroup != 0 {
                    attr.pgroup
                } else {
                    libc::getpgid(0)
                };
                checked(libc::tcsetpgrp(fd, group))?;
            }
        }
    }
    Ok(())
}

/// Everything the child does before its exec, in glibc's order: signal dispositions,
/// scheduling, session and group, ids, file actions, signal mask.
///
/// # Safety
/// Runs in a freshly forked child; the paths in `actions` are valid C strings.
unsafe fn prepare_child(
    actions: &[Action],
    attr: &Attributes,
    parent_mask: &sigset_t,
    pipe: &mut c_int,
) -> Result<(), c_int> {
    // SAFETY: plain system calls in the child, on its own state.
    unsafe {
        if attr.has(libc::POSIX_SPAWN_SETSIGDEF as c_int) {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            for sig in 1..libc::SIGRTMAX() + 1 {
                if libc::sigismember(&attr.sigdefault, sig) == 1 {
                    // SIGKILL, SIGSTOP and glibc's own signals refuse; glibc ignores that too.
                    libc::sigaction(sig, &default, std::ptr::null_mut());
                }
            }
        }
        let sched = (
            attr.has(libc::POSIX_SPAWN_SETSCHEDPARAM as c_int),
            attr.has(libc::POSIX_SPAWN_SETSCHEDULER as c_int),
        );
        match sched {
            (true, false) => {
                checked(libc::sched_setparam(0, &attr.param))?;
            }
            (_, true) => {
                checked(libc::sched_setscheduler(0, attr.policy, &attr.param))?;
            }
            (false, false) => {}
        }
        if attr.has(libc::POSIX_SPAWN_SETSID as c_int) {
            checked(libc::setsid())?;
        }
        if attr.has(libc::POSIX_SPAWN_SETPGROUP as c_int) {
            checked(libc::setpgid(0, attr.pgroup))?;
        }
        if attr.has(libc::POSIX_SPAWN_RESETIDS as c_int) {
            checked(libc::seteuid(libc::getuid()))?;
            checked(libc::setegid(libc::getgid()))?;
        }
        for &action in actions {
            apply(action, attr, pipe)?;
        }
        let mask = if attr.has(libc::POSIX_SPAWN_SETSIGMASK as c_int) {
            &attr.sigmask
        } else {
            parent_mask
        };
        libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut());
    }
    Ok(())
}

/// glibc's `posix_spawnp` search (`__execvpex`): each `PATH` entry in turn, an empty one
/// meaning the working directory, without the shell fallback `execvp` has for files that are
/// not executables. Returns only on failure, with `errno` set.
///
/// # Safety
/// As for `execve`.
unsafe fn exec_searching(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the caller's contract.
    let name = unsafe { CStr::from_ptr(file) }.to_bytes();
    if name.is_empty() {
        return fail(libc::ENOENT);
    }
    if name.contains(&b'/') {
        // SAFETY: the caller's contract.
        return unsafe { real::execve()(file, argv, envp) };
    }
    // SAFETY: getenv reads the process environment, as glibc's search does.
    let path = unsafe { libc::getenv(c"PATH".as_ptr()) };
    let path: &[u8] = if path.is_null() {
        b"/bin:/usr/bin"
    } else {
        // SAFETY: getenv returned a C string.
        unsafe { CStr::from_ptr(path) }.to_bytes()
    };
    let mut denied = false;
    for dir in path.split(|&b| b == b':') {
        let mut full = dir.to_vec();
        if !dir.is_empty() {
            full.push(b'/');
        }
        full.extend_from_slice(name);
        full.push(0);
        // SAFETY: `full` is NUL-terminated; the rest is the caller's contract.
        unsafe { real::execve()(full.as_ptr().cast(), argv, envp) };
        match errno() {
            libc::EACCES => denied = true,
            libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT => {}
            _ => return -1,
        }
    }
    fail(if denied { libc::EACCES } else { libc::ENOENT })
}

/// A spawn run here: see the module documentation. Returns 0 or an errno, as `posix_spawn`.
///
/// # Safety
/// As for `posix_spawn`; the paths in `actions` are valid C strings.
#[allow(clippy::too_many_arguments)]
unsafe fn spawn_here(
    pid_out: *mut pid_t,
    file: *const c_char,
    actions: &[Action],
    attr: &Attributes,
    argv: *const *const c_char,
    envp: *const *const c_char,
    search: bool,
) -> c_int {
    let mut fds = [0; 2];
    // SAFETY: system calls on this process's own descriptors and signal mask;
    // the child only runs this library's code until its exec or `_exit`.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return errno();
        }
        // No handler of the parent's may run in the child before its exec.
        let mut all: sigset_t = std::mem::zeroed();
        let mut parent_mask: sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut parent_mask);
        let pid = process::fork();
        if pid == 0 {
            real::close()(fds[0]);
            let mut pipe = fds[1];
            let error = match prepare_child(actions, attr, &parent_mask, &mut pipe) {
                Ok(()) if search => {
                    let program = Program::Search(CStr::from_ptr(file));
                    process::exec_with(program, envp, |env| exec_searching(file, argv, env));
                    errno()
                }
                Ok(()) => {
                    // The library's `execve`: a name under the prefix is found as it finds it.
                    process::execve(file, argv, envp);
                    errno()
                }
                Err(e) => e,
            };
            let bytes = error.to_ne_bytes();
            real::write()(pipe, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127);
        }
        let fork_error = errno();
        libc::pthread_sigmask(libc::SIG_SETMASK, &parent_mask, std::ptr::null_mut());
        real::close()(fds[1]);
        if pid < 0 {
            real::close()(fds[0]);
            return fork_error;
        }
        let mut bytes = [0u8; 4];
        let n = loop {
            let n = real::read()(fds[0], bytes.as_mut_ptr().cast(), bytes.len());
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            break n;
        };
        real::close()(fds[0]);
        if n == bytes.len() as isize {
            // The exec did not happen: reap the child, report its error.
            while libc::waitpid(pid, std::ptr::null_mut(), 0) < 0 && errno() == libc::EINTR {}
            return c_int::from_ne_bytes(bytes);
        }
        if !pid_out.is_null() {
            *pid_out = pid;
        }
        0
    }
}

macro_rules! posix_spawn_fn {
    ($name:ident, $search:expr) => {
        /// Interposed: served here when the spawn involves btfuse (see the module
        /// documentation), by glibc otherwise.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            pid: *mut pid_t,
            file: *const c_char,
            file_actions: *const libc::posix_spawn_file_actions_t,
            attr: *const libc::posix_spawnattr_t,
            argv: *const *mut c_char,
            envp: *const *mut c_char,
        ) -> c_int {
            let layout = file_actions.is_null() || layout_holds();
            let actions = if layout {
                // SAFETY: libc's contract; the layout was checked.
                unsafe { read_actions(file_actions) }
            } else {
                Err(libc::ENOSYS)
            };
            let actions = match actions {
                // A program named under the prefix is found (or refused) by the library's
                // exec, as `execve` would be.
                // SAFETY: libc's contract: `file` is a C string.
                Ok(actions) if involves_btfuse(&actions) || unsafe { names_btfuse(file) } => {
                    actions
                }
                // A layout or an action this library cannot read: glibc's spawn is right
                // unless btfuse is involved, which needs the actions.
                Err(e) if involves_btfuse(&[]) => return e,
                // SAFETY: libc's contract, passed on.
                _ => unsafe { return real::$name()(pid, file, file_actions, attr, argv, envp) },
            };
            // SAFETY: libc's contract.
            unsafe {
                let attributes = Attributes::read(attr);
                spawn_here(
                    pid,
                    file,
                    &actions,
                    &attributes,
                    argv.cast(),
                    envp.cast(),
                    $search,
                )
            }
        }
    };
}
posix_spawn_fn!(posix_spawn, false);
posix_spawn_fn!(posix_spawnp, true);

/// `system`'s shared state: how many calls are running, and the SIGINT and SIGQUIT
/// dispositions the first one replaced (glibc's `do_system` keeps the same).
struct SystemSignals {
    running: usize,
    interrupt: libc::sigaction,
    quit: libc::sigaction,
}

static SYSTEM_SIGNALS: Mutex<Option<SystemSignals>> = Mutex::new(None);

/// Interposed: with btfuse involved, runs `/bin/sh -c command` here as glibc's `system`
/// does: SIGINT and SIGQUIT ignored and SIGCHLD blocked in the caller while the command
/// runs, restored in the child (unless they were ignored already), status as `waitpid`
/// gives it, or that of `_exit(127)` when the shell could not be started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn system(command: *const c_char) -> c_int {
    if command.is_null() || !involves_btfuse(&[]) {
        // SAFETY: libc's contract, passed on.
        return unsafe { real::system()(command) };
    }
    // SAFETY: signal calls on this process's own state; `command` is libc's
    // contract.
    unsafe {
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        libc::sigemptyset(&mut ignore.sa_mask);
        {
            let mut shared = SYSTEM_SIGNALS.lock().unwrap_or_else(|p| p.into_inner());
            let state = shared.get_or_insert_with(|| SystemSignals {
                running: 0,
                interrupt: std::mem::zeroed(),
                quit: std::mem::zeroed(),
            });
            if state.running == 0 {
                libc::sigaction(libc::SIGINT, &ignore, &mut state.interrupt);
                libc::sigaction(libc::SIGQUIT, &ignore, &mut state.quit);
            }
            state.running += 1;
        }
        let mut child_signal: sigset_t = std::mem::zeroed();
        let mut parent_mask: sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut child_signal);
        libc::sigaddset(&mut child_signal, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &child_signal, &mut parent_mask);

        let mut attr = Attributes::none();
        attr.flags = (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as c_short;
        attr.sigmask = parent_mask;
        libc::sigemptyset(&mut attr.sigdefault);
        if let Some(state) = SYSTEM_SIGNALS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if state.interrupt.sa_sigaction != libc::SIG_IGN {
                libc::sigaddset(&mut attr.sigdefault, libc::SIGINT);
            }
            if state.quit.sa_sigaction != libc::SIG_IGN {
                libc::sigaddset(&mut attr.sigdefault, libc::SIGQUIT);
            }
        }
        let argv = [c"sh".as_ptr(), c"-c".as_ptr(), command, std::ptr::null()];
        let mut pid: pid_t = 0;
        let spawned = spawn_here(
            &mut pid,
            c"/bin/sh".as_ptr(),
            &[],
            &attr,
            argv.as_ptr(),
            environ,
            false,
        );
        let mut status: c_int = 0;
        if spawned == 0 {
            loop {
                let waited = libc::waitpid(pid, &mut status, 0);
                if waited == pid {
                    break;
                }
                if waited < 0 && errno() == libc::EINTR {
                    continue;
                }
                status = -1;
                break;
            }
        } else {
            // POSIX: as if the shell had run `_exit(127)`.
            status = 127 << 8;
        }
        {
            let mut shared = SYSTEM_SIGNALS.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(state) = shared.as_mut() {
                state.running -= 1;
                if state.running == 0 {
                    libc::sigaction(libc::SIGINT, &state.interrupt, std::ptr::null_mut());
                    libc::sigaction(libc::SIGQUIT, &state.quit, std::ptr::null_mut());
                }
            }
        }
        libc::sigprocmask(libc::SIG_SETMASK, &parent_mask, std::ptr::null_mut());
        status
    }
}

/// The streams `popen` made here: their child's pid and their descriptor.
static POPENED: Mutex<Option<HashMap<usize, (pid_t, c_int)>>> = Mutex::new(None);

/// glibc's `popen` modes: `r` or `w` (exactly one), and `e` for close-on-exec.
fn popen_mode(mode: &[u8]) -> Option<(bool, bool)> {
    let (mut read, mut write, mut cloexec) = (false, false, false);
    for &b in mode {
        match b {
            b'r' => read = true,
            b'w' => write = true,
            b'e' => cloexec = true,
            _ => return None,
        }
    }
    (read != write).then_some((read, cloexec))
}

/// Starts `/bin/sh -c command` with `actions`: here if btfuse is involved, else by glibc's
/// `posix_spawn` with the same actions (only `Close` and `Dup2`, which `popen` uses).
///
/// # Safety
/// `command` is a valid C string.
unsafe fn spawn_shell(command: *const c_char, actions: &[Action]) -> Result<pid_t, c_int> {
    let argv = [c"sh".as_ptr(), c"-c".as_ptr(), command, std::ptr::null()];
    let mut pid: pid_t = 0;
    // SAFETY: glibc's file-action functions on an object initialised here and
    // destroyed before returning; `argv` is null-terminated.
    let rc = unsafe {
        if involves_btfuse(actions) {
            spawn_here(
                &mut pid,
                c"/bin/sh".as_ptr(),
                actions,
                &Attributes::none(),
                argv.as_ptr(),
                environ,
                false,
            )
        } else {
            let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
            libc::posix_spawn_file_actions_init(&mut fa);
            let mut rc = 0;
            for action in actions {
                rc = match *action {
                    Action::Close(fd) => libc::posix_spawn_file_actions_addclose(&mut fa, fd),
                    Action::Dup2 { fd, newfd } => {
                        libc::posix_spawn_file_actions_adddup2(&mut fa, fd, newfd)
                    }
                    _ => libc::EINVAL,
                };
                if rc != 0 {
                    break;
                }
            }
            if rc == 0 {
                rc = real::posix_spawn()(
                    &mut pid,
                    c"/bin/sh".as_ptr(),
                    &fa,
                    std::ptr::null(),
                    argv.as_ptr().cast(),
                    environ.cast(),
                );
            }
            libc::posix_spawn_file_actions_destroy(&mut fa);
            rc
        }
    };
    if rc == 0 { Ok(pid) } else { Err(rc) }
}

/// Interposed: a pipe to or from `/bin/sh -c command`, made as glibc's `popen` makes it
/// (the child's end on its standard input or output, the streams of earlier `popen` calls
/// closed in the child), so that a child that inherits btfuse descriptors receives them.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn popen(command: *const c_char, mode: *const c_char) -> *mut FILE {
    if !guarded(|| config::config().is_some()).unwrap_or(false) {
        // SAFETY: libc's contract, passed on.
        return unsafe { real::popen()(command, mode) };
    }
    // SAFETY: libc's contract.
    let Some((read, cloexec)) = (unsafe { paths::c_bytes(mode) }).and_then(popen_mode) else {
        fail(libc::EINVAL);
        return std::ptr::null_mut();
    };
    let mut fds = [0; 2];
    // SAFETY: descriptor calls on this process's own pipe; `command` is libc's
    // contract.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return std::ptr::null_mut();
        }
        let (parent_end, mut child_end) = if read {
            (fds[0], fds[1])
        } else {
            (fds[1], fds[0])
        };
        let child_fd = if read { 1 } else { 0 };
        // Already on the child's number: move it, so that the dup2 action clears its
        // close-on-exec flag in the child only.
        if child_end == child_fd {
            let moved = real::fcntl()(child_end, libc::F_DUPFD_CLOEXEC, 0);
            if moved < 0 {
                let e = errno();
                real::close()(fds[0]);
                real::close()(fds[1]);
                fail(e);
                return std::ptr::null_mut();
            }
            real::close()(child_end);
            child_end = moved;
        }
        let mut actions = vec![Action::Dup2 {
            fd: child_end,
            newfd: child_fd,
        }];
        if let Some(open) = POPENED.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            actions.extend(
                open.values()
                    .filter(|&&(_, fd)| fd != child_fd)
                    .map(|&(_, fd)| Action::Close(fd)),
            );
        }
        let spawned = spawn_shell(command, &actions);
        real::close()(child_end);
        let pid = match spawned {
            Ok(pid) => pid,
            Err(e) => {
                real::close()(parent_end);
                fail(e);
                return std::ptr::null_mut();
            }
        };
        if !cloexec {
            real::fcntl()(parent_end, libc::F_SETFD, 0);
        }
        let stream_mode = if read { c"r" } else { c"w" };
        let fp = real::fdopen()(parent_end, stream_mode.as_ptr());
        if fp.is_null() {
            let e = errno();
            real::close()(parent_end);
            while libc::waitpid(pid, std::ptr::null_mut(), 0) < 0 && errno() == libc::EINTR {}
            fail(e);
            return fp;
        }
        POPENED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(fp as usize, (pid, parent_end));
        fp
    }
}

/// Interposed: closes a stream `popen` made here and waits for its command; other streams go
/// to glibc.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pclose(fp: *mut FILE) -> c_int {
    let ours = POPENED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
        .and_then(|open| open.remove(&(fp as usize)));
    let Some((pid, _)) = ours else {
        // SAFETY: libc's contract, passed on.
        return unsafe { real::pclose()(fp) };
    };
    // SAFETY: a stream made by `popen` here, closed once.
    unsafe {
        libc::fclose(fp);
        let mut status: c_int = 0;
        loop {
            let waited = libc::waitpid(pid, &mut status, 0);
            if waited == pid {
                return status;
            }
            if waited < 0 && errno() == libc::EINTR {
                continue;
            }
            return -1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_file_actions_read_back() {
        assert_eq!(std::mem::size_of::<RawAction>(), 32);
        assert!(layout_holds());
    }

    #[test]
    fn popen_modes_as_glibc() {
        assert_eq!(popen_mode(b"r"), Some((true, false)));
        assert_eq!(popen_mode(b"we"), Some((false, true)));
        assert_eq!(popen_mode(b"re"), Some((true, true)));
        assert_eq!(popen_mode(b"rw"), None);
        assert_eq!(popen_mode(b"e"), None);
        assert_eq!(popen_mode(b"rb"), None);
        assert_eq!(popen_mode(b""), None);
    }
}
