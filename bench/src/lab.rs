//! The targets' surroundings: a fresh tmpfs, a `btfuse-fuse` daemon with its mount, the
//! worker processes that run one workload each, and the clean-up that undoes all of it, at
//! the end, on an error, or when the run is interrupted (SIGINT, SIGTERM, SIGHUP).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::workload::{Measured, Workload};

/// Where a workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Target {
    /// The kernel's in-memory filesystem: the reference.
    Tmpfs,
    /// The btfuse FUSE mount, through the kernel.
    Fuse,
    /// The same mount with `libbtfuse_preload.so` preloaded: calls go over the ring.
    Fast,
    /// The ring's Rust client (`btfuse_ring_client::Client`) on the same daemon.
    Client,
}

impl Target {
    /// Every target, in report order.
    pub(crate) const ALL: [Target; 4] = [Target::Tmpfs, Target::Fuse, Target::Fast, Target::Client];

    /// The name used on the command line and in files.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Tmpfs => "tmpfs",
            Target::Fuse => "fuse",
            Target::Fast => "fast",
            Target::Client => "client",
        }
    }

    /// The name in tables and charts.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Target::Tmpfs => "tmpfs",
            Target::Fuse => "FUSE mount",
            Target::Fast => "mount + preload",
            Target::Client => "Rust client",
        }
    }

    fn on_btfuse(self) -> bool {
        self != Target::Tmpfs
    }
}

/// How long the daemon may take to mount, and to exit after SIGTERM.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

/// What must be undone, kept where the signal handler can reach it.
#[derive(Debug, Default)]
struct Undo {
    /// The worker running now.
    worker: Option<u32>,
    /// The `btfuse-fuse` daemon.
    daemon: Option<u32>,
    /// Mount points, innermost last.
    mounts: Vec<PathBuf>,
    /// The run's temporary directory.
    root: Option<PathBuf>,
}

static UNDO: Mutex<Undo> = Mutex::new(Undo {
    worker: None,
    daemon: None,
    mounts: Vec::new(),
    root: None,
});

fn undo() -> std::sync::MutexGuard<'static, Undo> {
    UNDO.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Set once a signal asked the run to stop.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Status of a run stopped by a signal.
const INTERRUPTED_STATUS: i32 = 130;

/// Makes SIGINT, SIGTERM and SIGHUP clean up and exit with status 130.
pub(crate) fn clean_up_on_signals() -> io::Result<()> {
    ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("\nbtfuse-bench: interrupted; stopping daemons and unmounting");
        clean_up();
        std::process::exit(INTERRUPTED_STATUS);
    })
    .map_err(io::Error::other)
}

/// When a signal stopped the run (its worker killed, the run failing because of it), waits
/// for the clean-up the signal started and exits as the signal handler does; otherwise
/// returns.
pub(crate) fn exit_if_interrupted() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        // Blocks until the handler's clean-up is done.
        clean_up();
        std::process::exit(INTERRUPTED_STATUS);
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory effects; the pid is a child of ours not yet reaped.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Waits for child `pid` to exit, up to `timeout`; whether it did (and was reaped).
fn reap(pid: u32, timeout: Duration) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: waitpid on our own child; a null status pointer is allowed.
        let got = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        if got == pid || got < 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Undoes everything recorded: kills the worker, stops the daemon (it unmounts itself),
/// detaches what is still mounted and removes the temporary directory. Safe to call twice.
pub(crate) fn clean_up() {
    let mut undo = undo();
    if let Some(pid) = undo.worker.take() {
        signal(pid, libc::SIGKILL);
        reap(pid, DAEMON_TIMEOUT);
    }
    if let Some(pid) = undo.daemon.take() {
        signal(pid, libc::SIGTERM);
        if !reap(pid, DAEMON_TIMEOUT) {
            signal(pid, libc::SIGKILL);
            reap(pid, DAEMON_TIMEOUT);
        }
    }
    for mount in undo.mounts.drain(..).rev() {
        if is_mounted(&mount)
            && let Ok(path) = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes())
        {
            // SAFETY: `path` is NUL-terminated.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
    if let Some(root) = undo.root.take() {
        // Never remove through a mount that is still there.
        if mounts_under(&root).is_empty() {
            let _ = std::fs::remove_dir_all(&root);
        } else {
            eprintln!(
                "btfuse-bench: {} still has mounts; left in place",
                root.display()
            );
        }
    }
}

/// Mount points at or under `dir`, from /proc/self/mountinfo.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(btfuse_ring_client::discovery::unescape_mountinfo)
        .filter(|point| point.starts_with(dir))
        .collect()
}

fn is_mounted(dir: &Path) -> bool {
    mounts_under(dir).iter().any(|point| point == dir)
}

/// The artifacts a run needs, found beside `btfuse-bench` unless told otherwise.
#[derive(Clone, Debug)]
pub(crate) struct Artifacts {
    /// `btfuse-fuse`.
    pub(crate) fuse: PathBuf,
    /// `libbtfuse_preload.so`.
    pub(crate) preload: PathBuf,
    /// eBPF programs the daemon runs (`btfuse-fuse --bpf`), to measure what they cost.
    pub(crate) bpf: Vec<PathBuf>,
}

impl Artifacts {
    /// Checks that what `targets` need exists in `dir`.
    pub(crate) fn find(dir: &Path, targets: &[Target]) -> io::Result<Artifacts> {
        let artifacts = Artifacts {
            fuse: dir.join("btfuse-fuse"),
            preload: dir.join("libbtfuse_preload.so"),
            bpf: Vec::new(),
        };
        let mut needed = Vec::new();
        if targets.iter().any(|t| t.on_btfuse()) {
            needed.push(&artifacts.fuse);
        }
        if targets.contains(&Target::Fast) {
            needed.push(&artifacts.preload);
        }
        for path in needed {
            if !path.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} is missing; btfuse-bench builds nothing: run `cargo build \
                         --release -p btfuse-fuse -p btfuse-preload -p btfuse-bench` first, \
                         or name the directory with --bin-dir",
                        path.display()
                    ),
                ));
            }
        }
        Ok(artifacts)
    }
}

/// The running surroundings of one benchmark run.
#[derive(Debug)]
pub(crate) struct Lab {
    artifacts: Artifacts,
    tmpfs: Option<PathBuf>,
    /// The btfuse mount point, its ring socket and the daemon's metrics address.
    btfuse: Option<(PathBuf, PathBuf, String)>,
    daemon: Option<Child>,
    log: PathBuf,
}

/// The arguments `btfuse-fuse` runs with, before `--metrics ADDR MOUNTPOINT`.
pub(crate) const DAEMON_ARGS: &[&str] = &[];

impl Lab {
    /// Mounts what `targets` need under a new temporary directory.
    pub(crate) fn start(artifacts: Artifacts, targets: &[Target]) -> io::Result<Lab> {
        let root = tempfile::Builder::new()
            .prefix("btfuse-bench-")
            .tempdir()?
            .keep();
        undo().root = Some(root.clone());
        let mut lab = Lab {
            artifacts,
            tmpfs: None,
            btfuse: None,
            daemon: None,
            log: root.join("btfuse-fuse.log"),
        };
        if targets.contains(&Target::Tmpfs) {
            let dir = root.join("tmpfs");
            std::fs::create_dir(&dir)?;
            mount_tmpfs(&dir)?;
            undo().mounts.push(dir.clone());
            lab.tmpfs = Some(dir);
        }
        if targets.iter().any(|t| t.on_btfuse()) {
            lab.start_daemon(&root.join("btfuse"))?;
        }
        Ok(lab)
    }

    fn start_daemon(&mut self, mountpoint: &Path) -> io::Result<()> {
        std::fs::create_dir(mountpoint)?;
        // A port the kernel just handed out and released: free, barring a race that the
        // daemon would report as a clear error.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let metrics = format!("127.0.0.1:{port}");
        let log = File::create(&self.log)?;
        let child = Command::new(&self.artifacts.fuse)
            .args(DAEMON_ARGS)
            .args(["--metrics", &metrics])
            .args(
                self.artifacts
                    .bpf
                    .iter()
                    .flat_map(|p| [Path::new("--bpf"), p]),
            )
            .arg(mountpoint)
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        undo().daemon = Some(child.id());
        undo().mounts.push(mountpoint.to_path_buf());
        self.daemon = Some(child);
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        let socket =
            btfuse_ring_client::discovery::socket_for_mount(mountpoint, uid, runtime.as_deref());
        let deadline = Instant::now() + DAEMON_TIMEOUT;
        while !(is_mounted(mountpoint) && btfuse_ring_client::Client::connect(&socket).is_ok()) {
            if let Some(child) = self.daemon.as_mut()
                && let Some(status) = child.try_wait()?
            {
                undo().daemon = None;
                return Err(self.daemon_error(&format!("btfuse-fuse exited ({status})")));
            }
            if Instant::now() > deadline {
                return Err(self.daemon_error("btfuse-fuse did not mount in time"));
            }
            std::thread::sleep(POLL);
        }
        self.btfuse = Some((mountpoint.to_path_buf(), socket, metrics));
        Ok(())
    }

    fn daemon_error(&self, what: &str) -> io::Error {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        io::Error::other(format!("{what}; its output:\n{log}"))
    }

    /// Runs `workload` of `size` on `target` in a worker process and checks that the fast
    /// path really went over the ring.
    pub(crate) fn measure(
        &self,
        target: Target,
        workload: Workload,
        size: u64,
    ) -> io::Result<Measured> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("worker")
            .args(["--workload", workload.name()])
            .args(["--size", &size.to_string()])
            .env_remove("LD_PRELOAD")
            .env_remove(btfuse_preload_vars::SOCKET)
            .env_remove(btfuse_preload_vars::PREFIX)
            .env_remove(btfuse_preload_vars::INHERIT)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let dir_name = format!("{}-{}", target.name(), workload.name());
        match (target, &self.tmpfs, &self.btfuse) {
            (Target::Tmpfs, Some(tmpfs), _) => {
                cmd.arg("--dir").arg(tmpfs.join(&dir_name));
            }
            (Target::Fuse, _, Some((mnt, _, _))) => {
                cmd.arg("--dir").arg(mnt.join(&dir_name));
            }
            (Target::Fast, _, Some((mnt, _, _))) if workload.runs_processes() => {
                // The worker starts the programs, and only they are preloaded.
                cmd.arg("--dir")
                    .arg(mnt.join(&dir_name))
                    .arg("--preload")
                    .arg(&self.artifacts.preload);
            }
            (Target::Fast, _, Some((mnt, _, _))) => {
                // No BTFUSE_* variables: the preload finds the mount and its socket itself.
                cmd.arg("--dir")
                    .arg(mnt.join(&dir_name))
                    .env("LD_PRELOAD", &self.artifacts.preload);
            }
            (Target::Client, _, Some((_, socket, _))) => {
                cmd.arg("--dir")
                    .arg(Path::new("/").join(&dir_name))
                    .arg("--socket")
                    .arg(socket);
            }
            _ => {
                return Err(io::Error::other(format!(
                    "{} was not started",
                    target.name()
                )));
            }
        }
        let before = match target {
            Target::Fast => Some(self.operations()?),
            _ => None,
        };
        let child = cmd.spawn()?;
        undo().worker = Some(child.id());
        let output = child.wait_with_output();
        undo().worker = None;
        let output = output?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "{} on {} failed ({}): {}",
                workload.name(),
                target.name(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let measured: Measured = serde_json::from_slice(&output.stdout).map_err(|e| {
            io::Error::other(format!("the worker's answer is not a measurement: {e}"))
        })?;
        if let Some(before) = before {
            let after = self.operations()?;
            let (ring, kernel) = (after.ring - before.ring, after.fuse - before.fuse);
            // Everything the workload does (set-up, warm-up and the timed part) must go over
            // the ring; the kernel may see a few requests around the worker's start. The
            // workloads that run programs set up through the kernel (the worker is not
            // preloaded), and then every program but the untouched one uses the ring.
            let missed = match workload {
                Workload::Untouched => ring != 0,
                w if w.runs_processes() => ring < size,
                _ => ring == 0 || kernel > 100,
            };
            if missed {
                return Err(io::Error::other(format!(
                    "{} under the preload made {ring} ring requests and {kernel} FUSE \
                     requests: the preload did not take the fast path (is it the right \
                     build?)",
                    workload.name(),
                )));
            }
        }
        Ok(measured)
    }

    /// Removes what `workload` left on every target (its fixtures), through the kernel.
    pub(crate) fn remove_fixtures(&self, workload: Workload) -> io::Result<()> {
        let roots = self
            .tmpfs
            .iter()
            .chain(self.btfuse.iter().map(|(mnt, _, _)| mnt));
        for root in roots {
            for target in Target::ALL {
                let dir = root.join(format!("{}-{}", target.name(), workload.name()));
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("removing {}: {e}", dir.display()),
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The daemon's counts of operations served over the ring and through the kernel, from
    /// its metrics.
    fn operations(&self) -> io::Result<Operations> {
        let Some((_, _, addr)) = &self.btfuse else {
            return Err(io::Error::other("no daemon"));
        };
        let mut stream = TcpStream::connect(addr.as_str())?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(Operations {
            ring: operations_in(&text, "shm"),
            fuse: operations_in(&text, "fuse"),
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        clean_up();
    }
}

/// Operations a daemon served, by frontend.
#[derive(Clone, Copy, Debug)]
struct Operations {
    ring: u64,
    fuse: u64,
}

/// Sums `btfuse_operations_total{frontend="FRONTEND",...}` in an exposition.
fn operations_in(exposition: &str, frontend: &str) -> u64 {
    let prefix = format!("btfuse_operations_total{{frontend=\"{frontend}\"");
    exposition
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next())
        .filter_map(|value| value.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

fn mount_tmpfs(dir: &Path) -> io::Result<()> {
    let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())?;
    // SAFETY: every argument is a NUL-terminated string that outlives the call.
    let ret = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"mode=0755".as_ptr().cast(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        let err = io::Error::last_os_error();
        Err(io::Error::new(
            err.kind(),
            format!(
                "mounting tmpfs at {} failed: {err} (btfuse-bench runs as root)",
                dir.display()
            ),
        ))
    }
}

/// The preload's variables, which a worker must not inherit. (The preload crate exports
/// them too, but linking it would interpose this program's own calls.)
mod btfuse_preload_vars {
    pub(super) const SOCKET: &str = "BTFUSE_SOCKET";
    pub(super) const PREFIX: &str = "BTFUSE_PREFIX";
    pub(super) const INHERIT: &str = "BTFUSE_INHERIT";
}
