//! `btfuse-shm`: serves a fresh in-memory filesystem over the shared-memory ring.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use btfuse_core::{Config, MemFs};
use btfuse_daemon::bpf::{Hooks, Programmed};
use btfuse_daemon::metrics::{self, Frontend};
use btfuse_daemon::{
    Signal, Sizing, SystemClock, block_stop_signals, parse_size, raise_descriptor_limit,
    wait_for_signal,
};
use btfuse_ring_server::mapped::{DEFAULT_SHOWN_FILES, FileShower, MappedStore};
use btfuse_ring_server::{Server, ServerConfig};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "btfuse-shm",
    version,
    about = "Serve a btfuse in-memory filesystem over the shared-memory ring",
    long_about = "Serve a btfuse in-memory filesystem over the shared-memory ring.\n\n\
                  Clients (the btfuse-shm Rust client, or programs run with \
                  libbtfuse_preload.so) connect to a Unix socket, receive a private shared \
                  region, and send their file calls through it without entering the kernel."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a fresh filesystem in the foreground until SIGINT or SIGTERM.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Unix socket to listen on (created mode 0600; a stale socket file is replaced).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Capacity for file data: bytes with an optional k/M/G/T suffix, or N% of memory
    /// [default: half of memory, like tmpfs].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    size: Option<u64>,
    /// Most inodes [default: one per 4 KiB of --size].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    inodes: Option<u64>,
    /// Worker threads serving clients [default: number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: Option<u32>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks
    /// a free one and logs it) [default: off].
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Most connections one user may have at once; more are refused (EMFILE) with a log line.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..),
          default_value_t = btfuse_ring_server::DEFAULT_MAX_CONNECTIONS_PER_USER as u32)]
    max_connections_per_user: u32,
    /// Run this eBPF program (an object file from `clang -O2 -target bpf`, see
    /// examples/bpf/btfuse_bpf.h) before every operation; repeatable, run in order. SIGHUP
    /// reloads them.
    #[arg(long = "bpf", value_name = "PROGRAM.o")]
    bpf: Vec<PathBuf>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let Command::Serve(args) = Cli::parse().command;
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("btfuse-shm: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let Sizing { size, inodes } = Sizing::with_defaults(args.size, args.inodes);
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n as usize,
    );
    let config = Config {
        max_inodes: inodes,
        ..Config::default()
    };
    // A pool that can also show files in clients' own mappings (`MapFile`).
    let store = Arc::new(MappedStore::new(size, DEFAULT_SHOWN_FILES));
    let fs = Arc::new(MemFs::new(Arc::clone(&store), config, SystemClock));
    let hooks = Hooks::for_command_line(args.bpf).map_err(|e| e.to_string())?;
    block_stop_signals().map_err(|e| format!("cannot block signals: {e}"))?;
    raise_descriptor_limit();
    // Bound before anything else starts, so that a taken address fails the start.
    let ring_counters = metrics::RingSlot::default();
    let exporter = args
        .metrics
        .map(|addr| {
            metrics::serve_engine(addr, Arc::clone(&fs), inodes, Arc::clone(&ring_counters))
        })
        .transpose()
        .map_err(|e| format!("--metrics: {e}"))?;
    let engine = Arc::new(Programmed::new(fs, hooks.clone(), Frontend::Shm));
    let server = Server::start_with(
        engine,
        &ServerConfig {
            socket: args.socket.clone(),
            threads,
            socket_mode: 0o600,
            max_connections_per_user: args.max_connections_per_user as usize,
        },
        None,
        Some(store as Arc<dyn FileShower>),
    )
    .map_err(|e| format!("cannot listen on {}: {e}", args.socket.display()))?;
    let _ = ring_counters.set(server.counters());
    log::info!(
        "serving on {} ({size} bytes, {inodes} inodes, {threads} threads)",
        args.socket.display()
    );
    let signal = loop {
        match wait_for_signal(Duration::from_secs(1)) {
            Some(Signal::Stop(sig)) => break sig,
            Some(Signal::Reload) => match &hooks {
                Some(hooks) => hooks.reload_logged(),
                None => log::info!("SIGHUP: no --bpf programs to reload"),
            },
            None => {}
        }
    };
    log::info!("signal {signal}: stopping");
    server.shutdown();
    drop(exporter);
    Ok(())
}
