//! Shared harness of the `btfuse-fuse` integration tests.
//!
//! - [`Mount`] runs the `btfuse-fuse` binary on a fresh directory and waits until the kernel
//!   lists it in `/proc/self/mountinfo`; dropping it (also while a test panics) stops the daemon
//!   and makes sure nothing stays mounted.
//! - [`Tmpfs`] is the reference: a tmpfs mounted on a fresh directory.
//! - [`Forked`] runs a closure in a forked child, optionally as another user, and hands back the
//!   transcript (a `Vec<String>`) the closure produced.
//! - The ring beside the mount: [`Mount::default_socket`], [`Mount::metrics`] with
//!   [`ring_operations`], [`connect_ring`], and [`preloaded`], which sets a command up to run
//!   under `libbtfuse_preload.so` with no `BTFUSE_*` variable (the mount is discovered).
//! - The rest are safe wrappers over the syscalls `std` has no call for. They are the only
//!   `unsafe` code of the tests.
#![allow(unsafe_code)]
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The filesystem type the kernel shows for a `btfuse-fuse` mount.
pub(crate) const BTFUSE_FSTYPE: &str = "fuse.btfuse-fuse";
/// How long the daemon may take to mount, and to exit after `SIGTERM`.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A running `btfuse-fuse` daemon and the directory it serves.
pub(crate) struct Mount {
    dir: PathBuf,
    args: Vec<String>,
    daemon: Option<Child>,
    /// How the daemon ended, once [`Mount::stop`] has run.
    stopped: Option<Stopped>,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

/// How a daemon ended when asked to with `SIGTERM`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stopped {
    /// The daemon's exit status (`None` when it had to be killed after the timeout).
    pub(crate) status: Option<ExitStatus>,
    /// Whether the mount was gone once the daemon had exited, before any clean-up of ours.
    pub(crate) unmounted: bool,
}

impl Mount {
    /// Mounts a fresh filesystem with `btfuse-fuse ARGS DIR` on a new temporary directory and
    /// waits until the kernel shows it; panics with the daemon's output if that fails.
    pub(crate) fn start(args: &[&str]) -> Mount {
        let dir = fresh_dir("btfuse-mnt-");
        let log_dir = tempfile::Builder::new()
            .prefix("btfuse-log-")
            .tempdir()
            .expect("create a directory for the daemon's output");
        let log_path = log_dir.path().join("output");
        let log = File::create(&log_path).expect("create the daemon's output file");
        let log_for_stdout = log.try_clone().expect("duplicate the output file");
        // Output goes to a file, not a pipe: a pipe nobody drains would block a chatty daemon
        // while it holds a FUSE request, and with it the test.
        let daemon = Command::new(env!("CARGO_BIN_EXE_btfuse-fuse"))
            .args(args)
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_for_stdout))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn btfuse-fuse");
        // From here on a panic drops `mount`, which stops the daemon and cleans up.
        let mut mount = Mount {
            dir,
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            daemon: Some(daemon),
            stopped: None,
            log_path,
            _log_dir: log_dir,
        };
        let deadline = Instant::now() + DAEMON_TIMEOUT;
        loop {
            let fstype = mounted_fstype(&mount.dir);
            if fstype.as_deref() == Some(BTFUSE_FSTYPE) {
                return mount;
            }
            let daemon = mount.daemon.as_mut().expect("the daemon runs");
            if let Some(status) = daemon.try_wait().expect("poll the daemon") {
                panic!(
                    "btfuse-fuse {:?} {} exited with {status} before mounting; its output:\n{}",
                    mount.args,
                    mount.dir.display(),
                    mount.output()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "btfuse-fuse {:?} {} did not mount as {BTFUSE_FSTYPE} within {:?} (the kernel \
                     shows {fstype:?} there); its output:\n{}",
                    mount.args,
                    mount.dir.display(),
                    DAEMON_TIMEOUT,
                    mount.output()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The mount point.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// The daemon's pid, until [`Mount::stop`] has reaped it.
    pub(crate) fn daemon_pid(&self) -> Option<libc::pid_t> {
        let daemon = self.daemon.as_ref()?;
        libc::pid_t::try_from(daemon.id()).ok()
    }

    /// What the daemon has printed so far.
    pub(crate) fn output(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|err| format!("(output unreadable: {err})"))
    }

    /// Sends `SIGTERM`, waits for the daemon to exit (`SIGKILL` after the timeout) and reports
    /// whether it exited cleanly and unmounted by itself. The mount point stays until drop.
    pub(crate) fn stop(&mut self) -> Stopped {
        self.stop_with(libc::SIGTERM)
    }

    /// [`stop`](Self::stop) with another signal than `SIGTERM`.
    pub(crate) fn stop_with(&mut self, signal: libc::c_int) -> Stopped {
        self.end(Some(signal))
    }

    /// Waits for a daemon that was told to stop some other way (an unmount from outside) to
    /// exit by itself (`SIGKILL` after the timeout), and reports how it ended.
    pub(crate) fn wait_for_exit(&mut self) -> Stopped {
        self.end(None)
    }

    fn end(&mut self, signal: Option<libc::c_int>) -> Stopped {
        if let Some(stopped) = self.stopped {
            return stopped;
        }
        let mut daemon = self
            .daemon
            .take()
            .expect("a mount not yet stopped has its daemon");
        let pid = i32::try_from(daemon.id()).expect("a pid fits in pid_t");
        // The daemon is our child and has not been waited for, so `pid` still names it.
        if let Some(signal) = signal {
            let _ = send_signal(pid, signal);
        }
        let deadline = Instant::now() + DAEMON_TIMEOUT;
        let status = loop {
            match daemon.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
                _ => {
                    let _ = daemon.kill();
                    let _ = daemon.wait();
                    break None;
                }
            }
        };
        let stopped = Stopped {
            status,
            unmounted: mounted_fstype(&self.dir).is_none(),
        };
        self.stopped = Some(stopped);
        stopped
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let stopped = self.stop();
        if thread::panicking() {
            eprintln!(
                "btfuse-fuse {:?} {} ended as {stopped:?}; its output:\n{}",
                self.args,
                self.dir.display(),
                self.output()
            );
        }
        // A daemon that was killed, or exited without unmounting, leaves a dead mount behind,
        // and its ring socket at the default place, where no one answers any more.
        if mounted_fstype(&self.dir).is_some() {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let default_socket = !self
            .args
            .iter()
            .any(|arg| arg == "--shm-socket" || arg == "--no-shm");
        if default_socket {
            let socket = self.default_socket();
            if std::os::unix::net::UnixStream::connect(&socket).is_err() {
                let _ = fs::remove_file(socket);
            }
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// The ring beside the mount

impl Mount {
    /// Where the daemon's ring socket is when no `--shm-socket` is given: the rule of
    /// `btfuse_ring_client::discovery` for root (the tests run as root).
    pub(crate) fn default_socket(&self) -> PathBuf {
        btfuse_ring_client::discovery::socket_for_mount(&self.dir, 0, None)
    }

    /// The daemon's metrics text, from the address it logged (started with `--metrics
    /// 127.0.0.1:0`).
    pub(crate) fn metrics(&self) -> String {
        const LOGGED: &str = "metrics on http://";
        let output = self.output();
        let start = output
            .find(LOGGED)
            .unwrap_or_else(|| panic!("the daemon logs its metrics address:\n{output}"))
            + LOGGED.len();
        let addr = output[start..]
            .split('/')
            .next()
            .expect("split yields a first part");
        let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics");
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send the metrics request");
        let mut text = String::new();
        stream
            .read_to_string(&mut text)
            .expect("read the metrics answer");
        text
    }
}

/// How many operations the ring has served, from a metrics text.
pub(crate) fn ring_operations(metrics: &str) -> u64 {
    operations(metrics, "shm")
}

/// How many operations the kernel's FUSE requests made, from a metrics text; `forget` is left
/// out, since the kernel sends it on its own schedule when it drops an inode from its cache
/// (which the ring's invalidations cause), not for a program's call.
pub(crate) fn fuse_operations(metrics: &str) -> u64 {
    operations(metrics, "fuse")
}

fn operations(metrics: &str, frontend: &str) -> u64 {
    let prefix = format!("btfuse_operations_total{{frontend=\"{frontend}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix) && !l.contains("operation=\"forget\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A ring client of `socket`, retrying while the daemon starts.
pub(crate) fn connect_ring(socket: &Path) -> btfuse_ring_client::Client {
    let deadline = Instant::now() + DAEMON_TIMEOUT;
    loop {
        match btfuse_ring_client::Client::connect(socket) {
            Ok(client) => return client,
            Err(_) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
            Err(e) => panic!("cannot reach the ring at {}: {e}", socket.display()),
        }
    }
}

/// `target/<profile>/libbtfuse_preload.so`, built beside the daemon.
pub(crate) fn preload_library() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps")
        .join("libbtfuse_preload.so");
    assert!(
        path.exists(),
        "{} is missing: cargo build --release -p btfuse-preload",
        path.display()
    );
    path
}

/// Sets `command` up to run under the preload with no `BTFUSE_*` variable, so that the
/// library finds the mount and its socket by itself.
pub(crate) fn preloaded(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.as_bytes().starts_with(b"BTFUSE_") {
            command.env_remove(name);
        }
    }
    command.env("LD_PRELOAD", preload_library())
}

/// Compiles C source `text` as `build/name` with the system's `cc`, warnings as errors.
pub(crate) fn compile_source(build: &Path, name: &str, text: &str) -> PathBuf {
    compile_source_with(build, name, text, &["-O1", "-Wall", "-Werror"])
}

/// [`compile_source`] with the compiler flags `flags`.
pub(crate) fn compile_source_with(build: &Path, name: &str, text: &str, flags: &[&str]) -> PathBuf {
    let source = build.join(format!("{name}.c"));
    std::fs::write(&source, text).unwrap();
    let binary = build.join(name);
    let status = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "{name}.c does not compile");
    binary
}

/// Waits for `child` up to `timeout`; on timeout kills it (by its pid, which stays ours until
/// reaped), reaps it and returns `None`.
pub(crate) fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// A tmpfs mounted on a fresh temporary directory, the reference for btfuse's behaviour.
pub(crate) struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts `tmpfs -o size=256M` on a new temporary directory.
    pub(crate) fn new() -> Tmpfs {
        let dir = fresh_dir("btfuse-tmpfs-");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256M", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        let tmpfs = Tmpfs { dir };
        assert!(
            status.success(),
            "mount -t tmpfs on {} failed: {status}",
            tmpfs.dir.display()
        );
        tmpfs
    }

    /// The mount point.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if mounted_fstype(&self.dir).is_some() {
            let unmounted = Command::new("umount").arg(&self.dir).status();
            if !matches!(unmounted, Ok(status) if status.success()) {
                let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
            }
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// A new empty directory under the temporary directory, by its canonical path (the one
/// `/proc/self/mountinfo` will show), kept until the caller removes it.
fn fresh_dir(prefix: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory")
        .keep();
    fs::canonicalize(&dir).expect("canonicalize the temporary directory")
}

/// The type of the filesystem mounted on `dir` (the topmost one), if any.
pub(crate) fn mounted_fstype(dir: &Path) -> Option<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut fstype = None;
    for line in mountinfo.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`
        let Some((mount_fields, fs_fields)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = mount_fields.split(' ').nth(4) else {
            continue;
        };
        if unescape_mountinfo(mount_point) == dir.as_os_str().as_bytes() {
            fstype = fs_fields.split(' ').next().map(str::to_owned);
        }
    }
    fstype
}

/// Undoes mountinfo's `\ooo` octal escapes (of space, tab, newline and backslash).
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 4).filter(|digits| {
            bytes[i] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match escape {
            Some(digits) => {
                out.push(
                    digits
                        .iter()
                        .fold(0u8, |acc, digit| acc * 8 + (digit - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The credentials a forked child switches to.
#[derive(Clone, Debug)]
pub(crate) struct Creds {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups.
    pub(crate) groups: Vec<u32>,
}

impl Creds {
    /// `uid` with primary group `gid` and the supplementary groups `groups`.
    pub(crate) fn new(uid: u32, gid: u32, groups: &[u32]) -> Creds {
        Creds {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }
}

/// Runs `body` in a forked child as `creds` and returns its transcript (see [`Forked::join`]).
pub(crate) fn as_user(creds: &Creds, body: impl FnOnce() -> Vec<String>) -> Vec<String> {
    Forked::spawn(Some(creds), body).join()
}

/// A forked child running a closure; its transcript comes back through a pipe.
pub(crate) struct Forked {
    pid: libc::pid_t,
    transcript: File,
}

/// Ends the transcript of a child whose closure returned.
const TRANSCRIPT_END: &str = "\u{1}end";

impl Forked {
    /// Forks; the child switches to `creds` (if given: `setgroups`, `setgid`, then `setuid`),
    /// runs `body`, writes the lines it returns into a pipe and `_exit`s. It never returns into
    /// the test harness, and nothing of the parent (mounts, temporary directories) is dropped in
    /// it.
    ///
    /// Forking a multi-threaded process leaves only the forking thread in the child; glibc keeps
    /// `malloc` usable across `fork`, and the bodies the tests pass take no other lock that a
    /// test-harness thread could hold.
    pub(crate) fn spawn(creds: Option<&Creds>, body: impl FnOnce() -> Vec<String>) -> Forked {
        let (read_end, write_end) = pipe().expect("create a pipe");
        // SAFETY: the child runs only `run_child`, which ends in `_exit` without unwinding or
        // returning (see the function doc for why the child may allocate).
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => panic!("fork: {}", io::Error::last_os_error()),
            0 => {
                drop(read_end);
                run_child(creds, body, File::from(write_end))
            }
            _ => {
                drop(write_end);
                Forked {
                    pid,
                    transcript: File::from(read_end),
                }
            }
        }
    }

    /// Waits for the child and returns the lines its closure returned. A child that panicked,
    /// failed to switch users or died adds a last line saying so, which no transcript of a
    /// well-behaved run contains.
    pub(crate) fn join(mut self) -> Vec<String> {
        let mut text = String::new();
        let read = self.transcript.read_to_string(&mut text);
        let status = wait_pid(self.pid);
        let mut lines: Vec<String> = text.lines().map(unescape_line).collect();
        let finished = lines.last().map(String::as_str) == Some(TRANSCRIPT_END);
        if finished {
            lines.pop();
        }
        if let Err(err) = read {
            lines.push(format!("child transcript unreadable: {err}"));
        }
        match status {
            Ok(0) if finished => {}
            Ok(status) => lines.push(format!("child ended with wait status {status:#x}")),
            Err(err) => lines.push(format!("waitpid: {err}")),
        }
        lines
    }
}

fn run_child(creds: Option<&Creds>, body: impl FnOnce() -> Vec<String>, mut out: File) -> ! {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        if let Some(creds) = creds {
            switch_user(creds)?;
        }
        Ok::<_, String>(body())
    }));
    let (lines, code) = match outcome {
        Ok(Ok(mut lines)) => {
            lines.push(TRANSCRIPT_END.to_owned());
            (lines, 0)
        }
        Ok(Err(message)) => (vec![message], 2),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            (vec![format!("child panicked: {message}")], 3)
        }
    };
    let text: String = lines.iter().map(|line| escape_line(line) + "\n").collect();
    let code = if out.write_all(text.as_bytes()).is_ok() {
        code
    } else {
        4
    };
    // SAFETY: `_exit` ends the process at once; nothing of the parent's state is dropped here.
    unsafe { libc::_exit(code) }
}

fn switch_user(creds: &Creds) -> Result<(), String> {
    let groups: Vec<libc::gid_t> = creds.groups.clone();
    // SAFETY: `groups` is a live array of `groups.len()` gids.
    let set = unsafe { libc::setgroups(groups.len(), groups.as_ptr()) };
    cvt(set).map_err(|err| format!("setgroups {groups:?}: {err}"))?;
    // SAFETY: plain syscalls on integers.
    cvt(unsafe { libc::setgid(creds.gid) }).map_err(|err| format!("setgid: {err}"))?;
    // SAFETY: as above.
    cvt(unsafe { libc::setuid(creds.uid) }).map_err(|err| format!("setuid: {err}"))?;
    Ok(())
}

fn escape_line(line: &str) -> String {
    line.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unescape_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Syscall wrappers

/// The symbolic name of an error's errno (`"ENOENT"`), or its text when it has none.
pub(crate) fn errno_name(err: &io::Error) -> String {
    let Some(errno) = err.raw_os_error() else {
        return err.to_string();
    };
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOTCONN => "ENOTCONN",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EINTR => "EINTR",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: isize) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("test paths contain no NUL")
}

fn c_str(text: &str) -> CString {
    CString::new(text).expect("test names contain no NUL")
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe2` writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: `pipe2` succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits for child `pid` and returns its raw wait status.
fn wait_pid(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid place for the wait status.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        match cvt(ret) {
            Ok(_) => return Ok(status),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
}

/// `kill(pid, signal)`.
pub(crate) fn send_signal(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on integers; callers pass the pid of their own unreaped child.
    cvt(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// Sets the process's umask and returns the previous one.
pub(crate) fn set_umask(mask: u32) -> u32 {
    // SAFETY: plain syscall on an integer.
    unsafe { libc::umask(mask) }
}

/// `mknod(path, mode, dev)`.
pub(crate) fn mknod(path: &Path, mode: u32, dev: u64) -> io::Result<()> {
    let path = c_path(path);
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    cvt(unsafe { libc::mknod(path.as_ptr(), mode, dev) }).map(drop)
}

/// `mkfifo(path, mode)`.
pub(crate) fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    let path = c_path(path);
    // SAFETY: as in `mknod`.
    cvt(unsafe { libc::mkfifo(path.as_ptr(), mode) }).map(drop)
}

/// `renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)` through the raw syscall.
pub(crate) fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let (from, to) = (c_path(from), c_path(to));
    // SAFETY: both paths are NUL-terminated strings that outlive the call; the arguments have
    // the types the syscall takes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `truncate(path, len)`.
pub(crate) fn truncate(path: &Path, len: i64) -> io::Result<()> {
    let path = c_path(path);
    // SAFETY: as in `mknod`.
    cvt(unsafe { libc::truncate(path.as_ptr(), len) }).map(drop)
}

/// `ftruncate(fd, len)`, also with lengths `File::set_len` would refuse.
pub(crate) fn ftruncate(file: &File, len: i64) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor `file` keeps open.
    cvt(unsafe { libc::ftruncate(file.as_raw_fd(), len) }).map(drop)
}

/// `fallocate(fd, mode, offset, len)`.
pub(crate) fn fallocate(file: &File, mode: libc::c_int, offset: i64, len: i64) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor `file` keeps open.
    cvt(unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) }).map(drop)
}

/// `lseek(fd, offset, whence)`, for the whences `Seek` lacks (`SEEK_DATA`, `SEEK_HOLE`).
pub(crate) fn lseek(file: &File, offset: i64, whence: libc::c_int) -> io::Result<i64> {
    // SAFETY: plain syscall on a descriptor `file` keeps open.
    let ret = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// One timestamp argument of `utimensat`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TimeArg {
    /// `UTIME_NOW`.
    Now,
    /// `UTIME_OMIT`.
    Omit,
    /// An explicit time: seconds and nanoseconds.
    At(i64, i64),
}

impl TimeArg {
    fn timespec(self) -> libc::timespec {
        let (tv_sec, tv_nsec) = match self {
            TimeArg::Now => (0, libc::UTIME_NOW),
            TimeArg::Omit => (0, libc::UTIME_OMIT),
            TimeArg::At(sec, nsec) => (sec, nsec),
        };
        libc::timespec { tv_sec, tv_nsec }
    }
}

/// `utimensat(AT_FDCWD, path, [atime, mtime], flags)`.
pub(crate) fn utimensat(
    path: &Path,
    atime: TimeArg,
    mtime: TimeArg,
    flags: libc::c_int,
) -> io::Result<()> {
    let path = c_path(path);
    let times = [atime.timespec(), mtime.timespec()];
    // SAFETY: `path` is NUL-terminated and `times` holds the two timespecs the call reads.
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), flags) }).map(drop)
}

/// `setxattr` (or `lsetxattr` when `nofollow`).
pub(crate) fn setxattr(
    path: &Path,
    name: &str,
    value: &[u8],
    flags: libc::c_int,
    nofollow: bool,
) -> io::Result<()> {
    let (path, name) = (c_path(path), c_str(name));
    let call = if nofollow {
        libc::lsetxattr
    } else {
        libc::setxattr
    };
    // SAFETY: `path` and `name` are NUL-terminated; `value` is readable for `value.len()` bytes.
    cvt(unsafe {
        call(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

/// `getxattr` (or `lgetxattr`) into a buffer of `buf_len` bytes. With `buf_len` 0 the kernel
/// reports the value's size instead, returned as that many zero bytes.
pub(crate) fn getxattr(
    path: &Path,
    name: &str,
    buf_len: usize,
    nofollow: bool,
) -> io::Result<Vec<u8>> {
    let (path, name) = (c_path(path), c_str(name));
    let call = if nofollow {
        libc::lgetxattr
    } else {
        libc::getxattr
    };
    let mut buf = vec![0u8; buf_len];
    let ptr = if buf_len == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    // SAFETY: `path` and `name` are NUL-terminated; `ptr` is null with size 0 or writable for
    // `buf_len` bytes.
    let len = cvt_size(unsafe { call(path.as_ptr(), name.as_ptr(), ptr, buf_len) })?;
    buf.resize(len, 0);
    Ok(buf)
}

/// `listxattr` (or `llistxattr`) into a buffer of `buf_len` bytes; with `buf_len` 0 the size,
/// as that many zero bytes.
pub(crate) fn listxattr(path: &Path, buf_len: usize, nofollow: bool) -> io::Result<Vec<u8>> {
    let path = c_path(path);
    let call = if nofollow {
        libc::llistxattr
    } else {
        libc::listxattr
    };
    let mut buf = vec![0u8; buf_len];
    let ptr = if buf_len == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    // SAFETY: `path` is NUL-terminated; `ptr` is null with size 0 or writable for `buf_len`.
    let len = cvt_size(unsafe { call(path.as_ptr(), ptr, buf_len) })?;
    buf.resize(len, 0);
    Ok(buf)
}

/// `removexattr` (or `lremovexattr`).
pub(crate) fn removexattr(path: &Path, name: &str, nofollow: bool) -> io::Result<()> {
    let (path, name) = (c_path(path), c_str(name));
    let call = if nofollow {
        libc::lremovexattr
    } else {
        libc::removexattr
    };
    // SAFETY: both strings are NUL-terminated and outlive the call.
    cvt(unsafe { call(path.as_ptr(), name.as_ptr()) }).map(drop)
}

/// `access(path, mode)` (checks with the real uid and gid).
pub(crate) fn access(path: &Path, mode: libc::c_int) -> io::Result<()> {
    let path = c_path(path);
    // SAFETY: as in `mknod`.
    cvt(unsafe { libc::access(path.as_ptr(), mode) }).map(drop)
}

/// `statfs(path)`.
pub(crate) fn statfs(path: &Path) -> io::Result<libc::statfs> {
    let path = c_path(path);
    // SAFETY: `statfs` is plain old data, for which all-zero bytes are a valid value.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `buf` is a valid place for the result.
    cvt(unsafe { libc::statfs(path.as_ptr(), &mut buf) })?;
    Ok(buf)
}

/// `copy_file_range` between explicit offsets (`None` uses and moves the file offset).
pub(crate) fn copy_file_range(
    from: &File,
    from_offset: Option<i64>,
    to: &File,
    to_offset: Option<i64>,
    len: usize,
) -> io::Result<usize> {
    let mut from_offset = from_offset;
    let mut to_offset = to_offset;
    let from_ptr = from_offset
        .as_mut()
        .map_or(std::ptr::null_mut(), |offset| offset as *mut i64);
    let to_ptr = to_offset
        .as_mut()
        .map_or(std::ptr::null_mut(), |offset| offset as *mut i64);
    // SAFETY: both descriptors are kept open by their `File`s; each offset pointer is null or
    // points at a live `i64`.
    cvt_size(unsafe {
        libc::copy_file_range(from.as_raw_fd(), from_ptr, to.as_raw_fd(), to_ptr, len, 0)
    })
}

/// `readlink(path)` into a buffer of `buf_len` bytes (a short buffer truncates the target).
pub(crate) fn readlink(path: &Path, buf_len: usize) -> io::Result<Vec<u8>> {
    let path = c_path(path);
    let mut buf = vec![0u8; buf_len];
    // SAFETY: `path` is NUL-terminated and `buf` is writable for `buf_len` bytes.
    let len = cvt_size(unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr().cast(), buf_len) })?;
    buf.truncate(len);
    Ok(buf)
}

/// One entry as `readdir(3)` returns it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DirEntry {
    pub(crate) name: Vec<u8>,
    pub(crate) d_type: u8,
}

/// Lists a directory with `opendir`/`readdir`, `.` and `..` included, in the order returned.
/// `between` runs after each entry read, with the entries read so far (to change the directory
/// while it is being listed).
pub(crate) fn read_dir_raw(
    path: &Path,
    mut between: impl FnMut(&[DirEntry]),
) -> io::Result<Vec<DirEntry>> {
    let c_dir = c_path(path);
    // SAFETY: `c_dir` is NUL-terminated.
    let dir = unsafe { libc::opendir(c_dir.as_ptr()) };
    if dir.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut entries = Vec::new();
    let result = loop {
        // `readdir` signals errors only through errno, so clear it first.
        // SAFETY: `__errno_location` returns this thread's errno.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `dir` is an open stream, used by this thread only.
        let entry = unsafe { libc::readdir(dir) };
        if entry.is_null() {
            let err = io::Error::last_os_error();
            break if err.raw_os_error() == Some(0) {
                Ok(())
            } else {
                Err(err)
            };
        }
        // SAFETY: a non-null `readdir` result points at a valid dirent whose `d_name` is
        // NUL-terminated, valid until the next `readdir` on the stream.
        let (name, d_type) = unsafe {
            let entry = &*entry;
            (
                std::ffi::CStr::from_ptr(entry.d_name.as_ptr())
                    .to_bytes()
                    .to_vec(),
                entry.d_type,
            )
        };
        entries.push(DirEntry { name, d_type });
        between(&entries);
    };
    // SAFETY: `dir` is open and is not used after this.
    unsafe { libc::closedir(dir) };
    result.map(|()| entries)
}

/// The path `dir/name` for a name given as bytes.
pub(crate) fn join_bytes(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}
