//! `btfuse-fuse`: mounts a fresh btfuse in-memory filesystem through FUSE.
//!
//! - [`adapter`]: fuser requests to `btfuse_core::Filesystem` calls;
//! - [`closing`]: open files holding a `flock` whose RELEASE may be on its way;
//! - [`creds`]: the credentials of each request, supplementary groups included;
//! - [`errno`]: engine errors to errno values, in one exhaustive match;
//! - [`handoff`]: the ring's `Handoff`, opening the mount's inodes through the kernel;
//! - [`lock_waits`]: the kernel's parked lock waits, by request, for its interrupts;
//! - [`options`]: command-line and `-o` mount options;
//! - [`sys`]: signals and daemonising, the only `unsafe` code.

#![deny(unsafe_code)]

mod adapter;
mod closing;
mod coherence;
mod creds;
mod errno;
mod handoff;
mod lock_waits;
mod options;
mod sys;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use btfuse_core::{Config, MemFs};
use clap::Parser;

use crate::adapter::{CachePolicy, FuseFs};
use crate::coherence::Coherent;
use btfuse_daemon::bpf::{Hooks, Programmed};
use btfuse_daemon::metrics::{self, Frontend, Metered};
use btfuse_daemon::{
    Signal, Sizing, SystemClock, block_stop_signals, parse_size, raise_descriptor_limit,
    wait_for_signal,
};
use btfuse_ring_server::mapped::{DEFAULT_SHOWN_FILES, FileShower, MappedStore};
use btfuse_ring_server::{Server, ServerConfig};

use crate::options::{Settings, parse_mode};

/// The filesystem type the mount shows in /proc/mounts (`fuse.` + the subtype).
pub(crate) const FS_TYPE: &str = "fuse.btfuse-fuse";

/// Command line. As a mount helper (`mount -t fuse.btfuse-fuse none DIR -o OPTS`) it is
/// called with a source and a mount point and detaches once mounted.
#[derive(Parser, Debug)]
#[command(
    name = "btfuse-fuse",
    version,
    about = "Mount a fresh in-memory btfuse filesystem through FUSE",
    long_about = "Mount a fresh in-memory btfuse filesystem at MOUNTPOINT and serve it in the \
foreground until SIGINT or SIGTERM, then unmount and exit 0.\n\n\
As a mount helper (`mount -t fuse.btfuse-fuse none DIR`, or a line in /etc/fstab) it is called \
as `btfuse-fuse SOURCE MOUNTPOINT -o OPTIONS`: SOURCE is ignored, and it detaches into the \
background once the filesystem is mounted (unless -f). Stop it with `umount DIR`.\n\n\
Logs go to stderr; RUST_LOG=debug (or info, warn, error) sets the level.",
    after_help = "Mount options (-o, comma-separated): size=BYTES, nr_inodes=N, mode=OCTAL, \
uid=N, gid=N, threads=N, allow_other, ro, rw, nosuid, suid, nodev, dev, noexec, exec, noatime, \
atime, sync, async, dirsync; mount(8)'s own (defaults, auto, noauto, user, nofail, x-*) are \
accepted and ignored. Command-line flags win over -o."
)]
struct Cli {
    /// The mount point; or, as a mount helper, the (ignored) source followed by the mount point.
    #[arg(value_name = "MOUNTPOINT", num_args = 1..=2, required = true)]
    paths: Vec<PathBuf>,

    /// Capacity in bytes, with an optional k/M/G/T suffix or as N% of memory [default: 50%].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    size: Option<u64>,

    /// Most inodes [default: one per 4 KiB of --size].
    #[arg(long, value_name = "N")]
    inodes: Option<u64>,

    /// Threads serving the kernel [default: the number of CPUs].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// Let users other than the one mounting use the filesystem (permission checks still apply).
    #[arg(long)]
    allow_other: bool,

    /// Most ring connections one user may have at once; more are refused (EMFILE) with a
    /// log line.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..),
          default_value_t = btfuse_ring_server::DEFAULT_MAX_CONNECTIONS_PER_USER as u32)]
    max_connections_per_user: u32,

    /// Owner of the root directory [default: 0].
    #[arg(long, value_name = "UID")]
    uid: Option<u32>,

    /// Group of the root directory [default: 0].
    #[arg(long, value_name = "GID")]
    gid: Option<u32>,

    /// Mode of the root directory, in octal [default: 755].
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    mode: Option<u32>,

    /// Mount options, comma-separated, as mount(8) passes them (see below).
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,

    /// How long the kernel may cache names and attributes, in seconds (decimals allowed).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_timeout)]
    cache_timeout: f64,

    /// Unix socket of the shared-memory ring this daemon serves beside the mount [default:
    /// /run/btfuse/ESCAPED.sock for root, $XDG_RUNTIME_DIR/btfuse/ESCAPED.sock otherwise,
    /// ESCAPED being the mount point as `systemd-escape --path` writes it].
    #[arg(long, value_name = "PATH", conflicts_with = "no_shm")]
    shm_socket: Option<PathBuf>,

    /// Do not serve the shared-memory ring.
    #[arg(long)]
    no_shm: bool,

    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks
    /// a free one and logs it) [default: off].
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,

    /// Run this eBPF program (an object file from `clang -O2 -target bpf`, see
    /// examples/bpf/btfuse_bpf.h) before every operation of the mount and the ring;
    /// repeatable, run in order. SIGHUP reloads them.
    #[arg(long = "bpf", value_name = "PROGRAM.o")]
    bpf: Vec<PathBuf>,

    /// As a mount helper, stay in the foreground.
    #[arg(short = 'f', long)]
    foreground: bool,

    /// Filesystem type, as mount(8) tells its helpers (ignored).
    #[arg(short = 't', value_name = "TYPE", hide = true)]
    fstype: Option<String>,

    /// mount(8)'s helper flags: no mtab, sloppy options, verbose (ignored).
    #[arg(short = 'n', hide = true)]
    no_mtab: bool,
    /// See `no_mtab`.
    #[arg(short = 's', hide = true)]
    sloppy: bool,
    /// See `no_mtab`.
    #[arg(short = 'v', hide = true)]
    verbose: bool,
}

fn parse_timeout(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && (0.0..=86_400.0).contains(t))
        .ok_or_else(|| format!("invalid timeout {text:?}: expected 0 to 86400 seconds"))
}

fn settings(cli: &Cli) -> Result<Settings, String> {
    let mut s = Settings::defaults();
    let mut inodes_given = false;
    for list in &cli.options {
        s.apply_options(list)?;
        inodes_given |= list
            .split(',')
            .any(|o| o.starts_with("nr_inodes=") || o.starts_with("inodes="));
    }
    if let Some(size) = cli.size {
        s.size = size;
    }
    match cli.inodes {
        Some(n) => s.inodes = n,
        None if !inodes_given => s.inodes = Sizing::with_defaults(Some(s.size), None).inodes,
        None => {}
    }
    s.threads = cli.threads.unwrap_or(s.threads);
    s.allow_other |= cli.allow_other;
    s.uid = cli.uid.unwrap_or(s.uid);
    s.gid = cli.gid.unwrap_or(s.gid);
    s.mode = cli.mode.unwrap_or(s.mode);
    s.validate()?;
    Ok(s)
}

/// Refuses mount points that cannot work, with a message that says why.
fn check_mountpoint(dir: &std::path::Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("mount point {} does not exist", dir.display()))
        }
        Err(e) => Err(format!("cannot use mount point {}: {e}", dir.display())),
        Ok(m) if !m.is_dir() => Err(format!("mount point {} is not a directory", dir.display())),
        Ok(_) if options::is_btfuse_mount(dir) => {
            Err(format!("{} is already a btfuse mount", dir.display()))
        }
        Ok(_) => {
            if !std::path::Path::new("/dev/fuse").exists() {
                return Err("/dev/fuse is absent: load the fuse module (modprobe fuse)".into());
            }
            Ok(())
        }
    }
}

/// What the daemon serves besides the mount.
struct Extras {
    metrics: Option<SocketAddr>,
    /// The ring's socket, or `None` for `--no-shm`.
    ring: Option<PathBuf>,
    /// Most ring connections of one user.
    max_connections_per_user: usize,
    /// The `--bpf` programs, loaded; `None` without any.
    hooks: Option<Arc<Hooks>>,
}

/// Mounts and serves until a stop signal or an outside unmount. `ready` is told the outcome
/// of mounting (daemon mode).
fn serve(
    mountpoint: PathBuf,
    s: Settings,
    cache: CachePolicy,
    extras: Extras,
    mut ready: Option<std::fs::File>,
) -> Result<(), String> {
    let fs_config = Config {
        max_inodes: s.inodes,
        root_perm: s.mode,
        root_uid: s.uid,
        root_gid: s.gid,
        ..Config::default()
    };
    // A pool that can also show files in clients' own mappings (`MapFile`).
    let store = Arc::new(MappedStore::new(s.size, DEFAULT_SHOWN_FILES));
    let fs = Arc::new(MemFs::new(Arc::clone(&store), fs_config, SystemClock));
    // Resolved before mounting: afterwards the walk would wait on this daemon's own answers.
    let canonical = std::fs::canonicalize(&mountpoint)
        .map_err(|e| format!("cannot resolve {}: {e}", mountpoint.display()))?;
    let mut config = fuser::Config::default();
    config.acl = if s.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(s.threads);
    // One /dev/fuse descriptor per thread: requests do not queue on one shared file.
    config.clone_fd = true;
    block_stop_signals().map_err(|e| format!("cannot block signals: {e}"))?;
    raise_descriptor_limit();
    // Bound before mounting, so that a taken address fails the start and leaves no mount;
    // served until this function returns.
    let ring_counters = metrics::RingSlot::default();
    let _exporter = extras
        .metrics
        .map(|addr| {
            metrics::serve_engine(addr, Arc::clone(&fs), s.inodes, Arc::clone(&ring_counters))
        })
        .transpose()
        .map_err(|e| format!("--metrics: {e}"))?;
    // Mounted here rather than by fuser so that the type reads `fuse.btfuse-fuse`.
    let fd = sys::mount_fuse(&sys::FuseMount {
        target: &mountpoint,
        source: "btfuse",
        fstype: FS_TYPE,
        flags: s.flags,
        // The kernel checks permissions on its cached path walk too: without this, a cached
        // entry would skip the engine's search-permission check on the directories above it.
        extra_data: if s.allow_other {
            "default_permissions,allow_other"
        } else {
            "default_permissions"
        },
        root_mode: s.mode,
    })
    .map_err(|e| mount_error(&mountpoint, e))?;
    let acl = config.acl;
    let session = match fuser::Session::from_fd(
        FuseFs::new(
            Metered::new(
                Arc::new(Programmed::new(
                    Arc::clone(&fs),
                    extras.hooks.clone(),
                    Frontend::Fuse,
                )),
                Frontend::Fuse,
            ),
            cache,
        ),
        fd,
        acl,
        config,
    ) {
        Ok(session) => session,
        Err(e) => {
            let _ = sys::unmount(&mountpoint);
            return Err(format!("FUSE handshake failed: {e}"));
        }
    };
    // The ring serves the same engine; what it changes, the kernel is told to forget.
    let ring = match &extras.ring {
        Some(socket) => {
            let programmed = Programmed::new(Arc::clone(&fs), extras.hooks.clone(), Frontend::Shm);
            let engine = Arc::new(Coherent::new(Arc::new(programmed), session.notifier()));
            let opener = Arc::new(handoff::MountOpener::new(&canonical));
            let limits = (s.threads, extras.max_connections_per_user);
            let shower = store as Arc<dyn FileShower>;
            match start_ring(engine, socket, limits, s.allow_other, opener, shower) {
                Ok(server) => {
                    let _ = ring_counters.set(server.counters());
                    fast_path_hint(socket, &mountpoint);
                    Some(server)
                }
                Err(e) => {
                    let _ = sys::unmount(&mountpoint);
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let background = match session.spawn() {
        Ok(background) => background,
        Err(e) => {
            let _ = sys::unmount(&mountpoint);
            return Err(format!("cannot start serving: {e}"));
        }
    };
    log::info!(
        "mounted {} ({} bytes, {} inodes, {} threads)",
        mountpoint.display(),
        s.size,
        s.inodes,
        s.threads
    );
    if let Some(pipe) = ready.as_mut() {
        let _ = pipe.write_all(&[0]);
    }
    drop(ready);
    let unmounted_from_outside = loop {
        match wait_for_signal(Duration::from_millis(200)) {
            Some(Signal::Stop(sig)) => {
                log::info!("signal {sig}: unmounting {}", mountpoint.display());
                break false;
            }
            Some(Signal::Reload) => match &extras.hooks {
                Some(hooks) => hooks.reload_logged(),
                None => log::info!("SIGHUP: no --bpf programs to reload"),
            },
            None => {}
        }
        if background.guard.is_finished() {
            log::info!("{} was unmounted", mountpoint.display());
            break true;
        }
    };
    // Ring clients are disconnected first, the socket removed: their calls fail from here on,
    // and a program that starts now finds no socket and goes to the kernel. After an unmount
    // from outside this is the only thing left to do: the filesystem they would reach is no
    // longer anywhere in the tree.
    if let Some(ring) = ring {
        ring.shutdown();
    }
    if unmounted_from_outside {
        return background
            .join()
            .map_err(|e| format!("serving failed: {e}"));
    }
    sys::unmount(&mountpoint)
        .map_err(|e| format!("unmounting {} failed: {e}", mountpoint.display()))?;
    background
        .join()
        .map_err(|e| format!("serving failed: {e}"))
}

fn mount_error(dir: &std::path::Path, e: std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            "permission denied mounting {}: mounting needs root (or a fusermount3 helper)",
            dir.display()
        ),
        Some(libc::ENOENT) | Some(libc::ENODEV) => {
            format!(
                "cannot mount {}: {e} (is /dev/fuse there and the fuse module loaded?)",
                dir.display()
            )
        }
        _ => format!("cannot mount {}: {e}", dir.display()),
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let helper = cli.paths.len() == 2;
    let mountpoint = cli.paths.last().cloned().expect("clap requires one path");
    let s = settings(&cli)?;
    let ttl = Duration::from_secs_f64(cli.cache_timeout);
    let cache = CachePolicy {
        entry_ttl: ttl,
        attr_ttl: ttl,
    };
    check_mountpoint(&mountpoint)?;
    let extras = Extras {
        metrics: cli.metrics,
        ring: ring_socket(&cli, &mountpoint)?,
        max_connections_per_user: cli.max_connections_per_user as usize,
        // Loaded before mounting: a program that is refused fails the start and leaves no
        // mount.
        hooks: Hooks::for_command_line(cli.bpf.clone()).map_err(|e| e.to_string())?,
    };
    if helper && !cli.foreground {
        match sys::daemonize().map_err(|e| format!("cannot detach: {e}"))? {
            sys::Forked::Parent(read) => {
                // The daemon writes one byte once mounted, or closes the pipe on failure.
                let mut status = [1u8];
                let mut pipe = std::fs::File::from(read);
                return match pipe.read(&mut status) {
                    Ok(1) if status[0] == 0 => Ok(()),
                    _ => Err("the daemon failed to mount (see its messages above)".into()),
                };
            }
            sys::Forked::Daemon(write) => {
                let ready = Some(std::fs::File::from(write));
                return serve(mountpoint, s, cache, extras, ready);
            }
        }
    }
    serve(mountpoint, s, cache, extras, None)
}

/// Where the ring's socket goes: `--shm-socket`, or the rule of `btfuse_ring_client::discovery`.
fn ring_socket(cli: &Cli, mountpoint: &std::path::Path) -> Result<Option<PathBuf>, String> {
    if cli.no_shm {
        return Ok(None);
    }
    if let Some(path) = &cli.shm_socket {
        return Ok(Some(path.clone()));
    }
    let canonical = std::fs::canonicalize(mountpoint)
        .map_err(|e| format!("cannot resolve {}: {e}", mountpoint.display()))?;
    let uid = sys::effective_uid();
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    Ok(Some(btfuse_ring_client::discovery::socket_for_mount(
        &canonical,
        uid,
        runtime.as_deref(),
    )))
}

/// Binds the ring's socket (making its directory if needed) and starts serving `engine`.
fn start_ring<F: btfuse_core::Filesystem + 'static>(
    engine: Arc<F>,
    socket: &std::path::Path,
    (threads, max_connections_per_user): (usize, usize),
    allow_other: bool,
    opener: Arc<handoff::MountOpener>,
    shower: Arc<dyn FileShower>,
) -> Result<Server<F>, String> {
    if let Some(dir) = socket.parent()
        && !dir.exists()
    {
        use std::os::unix::fs::DirBuilderExt;
        // Readable by all, so that other users of an allow_other mount can reach a socket
        // inside; the socket's own mode decides who may connect.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let config = ServerConfig {
        socket: socket.to_path_buf(),
        threads,
        socket_mode: if allow_other { 0o666 } else { 0o600 },
        max_connections_per_user,
    };
    let server = Server::start_with(engine, &config, Some(opener), Some(shower))
        .map_err(|e| format!("--shm-socket {}: {e}", socket.display()))?;
    log::info!(
        "fast path: ring socket {} (btfuse_ring_client::Client::connect; --no-shm turns it off)",
        socket.display()
    );
    Ok(server)
}

/// How to run a program on the fast path of this mount, told at start.
fn fast_path_hint(socket: &std::path::Path, mountpoint: &std::path::Path) {
    let preload = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("libbtfuse_preload.so")))
        .filter(|p| p.exists())
        .map_or_else(
            || "libbtfuse_preload.so (cargo build --release -p btfuse-preload)".to_owned(),
            |p| p.display().to_string(),
        );
    let mountpoint = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_owned());
    log::info!(
        "run a program on the fast path: LD_PRELOAD={preload} BTFUSE_SOCKET={} \
         BTFUSE_PREFIX={} PROGRAM",
        socket.display(),
        mountpoint.display()
    );
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("btfuse-fuse: error: {message}");
            ExitCode::FAILURE
        }
    }
}
