//! `btfuse-bench`: the same workloads on tmpfs, the btfuse FUSE mount, that mount with the
//! preload, and the ring's Rust client, side by side in one run, with a table, JSON, a
//! Markdown report and SVG charts.

mod chart;
mod fs;
mod lab;
mod load;
mod process;
mod report;
mod workload;

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::lab::{Artifacts, Lab, Target};
use crate::report::{Machine, Meta, Results, WorkloadResult};
use crate::workload::Workload;

/// Benchmarks btfuse against tmpfs: the FUSE mount, the mount with libbtfuse_preload.so, and
/// the ring's Rust client, each workload on each target in one run.
///
/// `run` mounts a fresh tmpfs and starts `btfuse-fuse` on a temporary directory (so it runs as
/// root), runs every workload on every target in separate processes, and stops and unmounts
/// everything at the end, on an error, or on SIGINT/SIGTERM. It builds nothing: btfuse-fuse and
/// libbtfuse_preload.so are taken from the directory of this program (or --bin-dir).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the workloads and write results.json, report.md, time.svg and speedup.svg.
    Run(RunArgs),
    /// Show what changed between two runs' results.json.
    Compare {
        /// The earlier run.
        a: PathBuf,
        /// The later run.
        b: PathBuf,
    },
    /// Run one workload once and print the measurement as JSON (used by `run`).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Small sizes and 3 rounds: a smoke test of a minute or so, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Targets, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tmpfs,fuse,fast,client"
    )]
    targets: Vec<Target>,
    /// Workloads, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// Rounds per workload and target [default: 5, or 3 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: Option<u32>,
    /// Where the results go (created if missing).
    #[arg(long, default_value = "btfuse-bench-results")]
    out: PathBuf,
    /// Where btfuse-fuse and libbtfuse_preload.so are [default: this program's directory].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// An eBPF program for the daemon to run before every operation (btfuse-fuse --bpf);
    /// repeatable. Measures what programs cost the fuse, fast and client targets.
    #[arg(long = "bpf", value_name = "PROGRAM.o")]
    bpf: Vec<PathBuf>,
    /// Also run every measurement with N CPU hogs (threads at normal priority, hog i bound to
    /// the i-th CPU, round robin) keeping the cores busy; idle and loaded figures are reported
    /// side by side.
    #[arg(long, default_value_t = 0, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    load: u32,
}

#[derive(Debug, clap::Args)]
struct WorkerArgs {
    #[arg(long, value_enum)]
    workload: Workload,
    #[arg(long)]
    size: u64,
    /// The directory to work in: a kernel path, or with --socket one in the ring's namespace.
    #[arg(long)]
    dir: PathBuf,
    /// Go through the ring's Rust client on this socket instead of libc.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// For the workloads that run programs: preload them with this library.
    #[arg(long)]
    preload: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::Compare { a, b } => compare(&a, &b),
        Cmd::Worker(args) => worker(args),
    };
    lab::exit_if_interrupted();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("btfuse-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn worker(args: WorkerArgs) -> io::Result<()> {
    let measured = match &args.socket {
        _ if args.workload.runs_processes() => {
            process::run(args.workload, args.size, &args.dir, args.preload.as_deref())?
        }
        Some(socket) => {
            let client = btfuse_ring_client::Client::connect(socket)?;
            workload::run(&fs::Ring(client), args.workload, args.size, &args.dir)?
        }
        None => workload::run(&fs::Posix, args.workload, args.size, &args.dir)?,
    };
    println!("{}", serde_json::to_string(&measured)?);
    Ok(())
}

fn compare(a: &Path, b: &Path) -> io::Result<()> {
    let load = |path: &Path| -> io::Result<Results> {
        let text = std::fs::read(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        serde_json::from_slice(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a btfuse-bench results file: {e}", path.display()),
            )
        })
    };
    print!("{}", report::compare(&load(a)?, &load(b)?));
    Ok(())
}

/// Round trips of the floor measurement at the start of each round (about 0.1 s at most).
const FLOOR_ROUNDS: u32 = 200_000;

fn run(args: RunArgs) -> io::Result<()> {
    let mut targets = Vec::new();
    for t in Target::ALL {
        if args.targets.contains(&t) {
            targets.push(t);
        }
    }
    let workloads: Vec<Workload> = if args.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        Workload::ALL
            .into_iter()
            .filter(|w| args.workloads.contains(w))
            .collect()
    };
    let rounds = args
        .rounds
        .map_or(if args.quick { 3 } else { 5 }, |r| r as usize);
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| io::Error::other("this program's directory is unknown"))?,
    };
    let mut artifacts = Artifacts::find(&bin_dir, &targets)?;
    artifacts.bpf = args.bpf.clone();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "btfuse-bench mounts tmpfs and FUSE filesystems: run it as root",
        ));
    }
    std::fs::create_dir_all(&args.out)?;
    let meta = Meta {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        date: utc_now(),
        commit: git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned()),
        dirty: git(&["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty()),
        quick: args.quick,
        rounds,
        targets: targets.clone(),
        daemon_args: lab::DAEMON_ARGS.iter().map(|s| (*s).to_owned()).collect(),
        machine: machine(),
        load: args.load as usize,
    };
    let load = args.load as usize;

    lab::clean_up_on_signals()?;
    let lab = Lab::start(artifacts, &targets)?;
    let passes = if load > 0 { 2 } else { 1 };
    let runs = workloads
        .iter()
        .map(|w| targets.iter().filter(|&&t| w.runs_on(t)).count())
        .sum::<usize>();
    let progress = ProgressBar::new((runs * rounds * passes) as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
            .map_err(io::Error::other)?,
    );
    let mut results = Vec::new();
    for &w in &workloads {
        let size = w.size(args.quick);
        let mut idle = Measurements::new(targets.len(), rounds);
        let mut loaded = Measurements::new(targets.len(), rounds);
        let mut ops = None;
        let mut floor = Vec::with_capacity(rounds);
        let mut hog_share = Vec::new();
        for round in 0..rounds {
            floor.push(btfuse_ring_client::channel::cache_line_round_trip(
                FLOOR_ROUNDS,
            ));
            for pass in 0..passes {
                // The loaded pass follows the idle one in every round, so both see the same
                // state of the machine, give or take a few seconds.
                let (hogs, times) = if pass == 0 {
                    (None, &mut idle)
                } else {
                    (Some(load::Hogs::start(load)?), &mut loaded)
                };
                // The order rotates so that no target always runs first (or right after
                // another).
                for k in 0..targets.len() {
                    let i = (k + round) % targets.len();
                    let target = targets[i];
                    if !w.runs_on(target) {
                        continue;
                    }
                    progress.set_message(format!(
                        "{} on {}{}, round {}/{rounds}",
                        w.name(),
                        target.name(),
                        if pass == 0 { "" } else { " (loaded)" },
                        round + 1
                    ));
                    let measured = lab.measure(target, w, size)?;
                    if *ops.get_or_insert(measured.ops) != measured.ops {
                        return Err(io::Error::other(format!(
                            "{} did {} operations on {} but {} elsewhere",
                            w.name(),
                            measured.ops,
                            target.name(),
                            ops.unwrap_or(0)
                        )));
                    }
                    times.0[i].push(measured.nanos as f64 / measured.ops.max(1) as f64);
                    progress.inc(1);
                }
                hog_share.extend(hogs.and_then(load::Hogs::stop));
            }
        }
        lab.remove_fixtures(w)?;
        let ran = |times: Vec<Vec<f64>>| -> (Vec<Target>, Vec<Vec<f64>>) {
            targets
                .iter()
                .zip(times)
                .filter(|(t, _)| w.runs_on(**t))
                .map(|(t, times)| (*t, times))
                .unzip()
        };
        let (idle_targets, idle_times) = ran(idle.0);
        let mut result =
            WorkloadResult::new(w, size, ops.unwrap_or(0), &idle_targets, &idle_times, floor);
        if load > 0 {
            let (loaded_targets, loaded_times) = ran(loaded.0);
            result.loaded = Some(report::Loaded {
                targets: report::summarise(&loaded_targets, &loaded_times),
                hog_share,
            });
        }
        let line = |which: &[report::TargetResult]| {
            which
                .iter()
                .map(|r| format!("{} {}", r.target.name(), report::duration(r.time.median)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        progress.println(match &result.loaded {
            Some(l) => format!(
                "{}: idle {}; loaded {}",
                w.name(),
                line(&result.targets),
                line(&l.targets)
            ),
            None => format!("{}: {}", w.name(), line(&result.targets)),
        });
        results.push(result);
    }
    progress.finish_and_clear();
    drop(lab);

    let results = Results {
        meta,
        workloads: results,
    };
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(args.out.join("results.json"), json + "\n")?;
    std::fs::write(args.out.join("report.md"), results.markdown())?;
    chart::draw(&results, &args.out)?;
    print!("{}", results.table());
    println!(
        "wrote results.json, report.md, time.svg and speedup.svg to {}",
        args.out.display()
    );
    Ok(())
}

/// Per target, nanoseconds per operation of each round.
struct Measurements(Vec<Vec<f64>>);

impl Measurements {
    fn new(targets: usize, rounds: usize) -> Measurements {
        Measurements(vec![Vec::with_capacity(rounds); targets])
    }
}

/// The output of `git ARGS` in the current directory, trimmed; `None` outside a repository.
fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown CPU".to_owned(), |(_, v)| v.trim().to_owned());
    Machine {
        cpu,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        memory_bytes: btfuse_daemon::memory_total().unwrap_or(0),
        kernel: kernel(),
    }
}

/// `uname -sr`.
fn kernel() -> String {
    let mut uts = std::mem::MaybeUninit::<libc::utsname>::uninit();
    // SAFETY: `uts` is valid for a `struct utsname`.
    if unsafe { libc::uname(uts.as_mut_ptr()) } != 0 {
        return "unknown kernel".to_owned();
    }
    // SAFETY: uname succeeded and filled it.
    let uts = unsafe { uts.assume_init() };
    let field = |f: &[libc::c_char]| {
        // SAFETY: uname's fields are NUL-terminated strings.
        unsafe { std::ffi::CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    format!("{} {}", field(&uts.sysname), field(&uts.release))
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The Gregorian date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_783), (2026, 11, 26));
    }
}
