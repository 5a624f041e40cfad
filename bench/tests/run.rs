//! `btfuse-bench` as a user runs it (as root, with btfuse-fuse and libbtfuse_preload.so
//! built beside it): a quick run produces every file and leaves nothing mounted or running;
//! an interrupted run cleans up the same way; `compare` reads what `run` wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_btfuse-bench");
const WORKLOADS: [&str; 22] = [
    "cat",
    "find",
    "create",
    "stat",
    "churn",
    "randio",
    "randread",
    "seq",
    "readdir",
    "create-2t",
    "cat-proc",
    "find-proc",
    "untouched",
    "script",
    "stat-1t",
    "stat-2t",
    "stat-4t",
    "stat-8t",
    "cat-1t",
    "cat-2t",
    "cat-4t",
    "cat-8t",
];
const TARGETS: [&str; 4] = ["tmpfs", "fuse", "fast", "client"];

/// The targets a workload has columns for: programs do not run on the Rust client, and a
/// process that touches no btfuse path runs without the preload (tmpfs) and with it (fast).
fn targets_of(workload: &str) -> &'static [&'static str] {
    match workload {
        "cat-proc" | "find-proc" | "script" => &TARGETS[..3],
        "untouched" => &["tmpfs", "fast"],
        _ => &TARGETS,
    }
}

/// Mount points under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| p.starts_with(dir))
        .map(str::to_owned)
        .collect()
}

/// Processes whose command line mentions `dir` (the daemon names its mount point there).
fn processes_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(dir) {
                found.push(cmdline);
            }
        }
    }
    found
}

/// Checks that a run whose temporary files went to `tmp` left nothing: no mount, no
/// process, no file.
fn assert_nothing_left(tmp: &Path) {
    assert_eq!(
        mounts_under(tmp),
        Vec::<String>::new(),
        "mounts left behind"
    );
    assert_eq!(
        processes_under(tmp),
        Vec::<String>::new(),
        "processes left behind"
    );
    let left: Vec<PathBuf> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, Vec::<PathBuf>::new(), "files left behind");
}

fn bench(tmp: &Path) -> Command {
    let mut cmd = Command::new(BENCH);
    // The run's temporary directory (tmpfs and the btfuse mount) goes under `tmp`.
    cmd.env("TMPDIR", tmp).env_remove("LD_PRELOAD");
    cmd
}

#[test]
fn a_quick_run_writes_every_file_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = bench(tmp.path())
        .args(["run", "--quick", "--rounds", "2", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "btfuse-bench run failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_nothing_left(tmp.path());

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(json["meta"]["rounds"], 2);
    assert_eq!(json["meta"]["quick"], true);
    let workloads = json["workloads"].as_array().unwrap();
    let names: Vec<&str> = workloads
        .iter()
        .map(|w| w["workload"].as_str().unwrap())
        .collect();
    assert_eq!(names, WORKLOADS);
    for w in workloads {
        assert!(w["ops"].as_u64().unwrap() > 0, "{w}");
        let floor = w["floor_ns"].as_array().unwrap();
        assert_eq!(floor.len(), 2, "one floor per round: {w}");
        assert!(floor.iter().all(|v| v.as_f64().unwrap() > 0.0), "{w}");
        let targets: Vec<&str> = w["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["target"].as_str().unwrap())
            .collect();
        let name = w["workload"].as_str().unwrap();
        assert_eq!(targets, targets_of(name), "{name}");
        for t in w["targets"].as_array().unwrap() {
            let rounds = t["ns_per_op"].as_array().unwrap();
            assert_eq!(rounds.len(), 2, "{t}");
            assert!(rounds.iter().all(|v| v.as_f64().unwrap() > 0.0), "{t}");
            let ratio = t["ratio_to_tmpfs"]["median"].as_f64().unwrap();
            assert!(ratio.is_finite() && ratio > 0.0, "{t}");
        }
    }

    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    for name in WORKLOADS {
        assert!(
            report.contains(&format!("| {name} |")),
            "{name} missing from the report"
        );
        assert!(
            table.lines().any(|l| l.starts_with(name)),
            "{name} missing from:\n{table}"
        );
    }
    for chart in ["time.svg", "speedup.svg"] {
        let svg = std::fs::read_to_string(out.path().join(chart)).unwrap();
        assert!(svg.starts_with("<svg"), "{chart}");
        for name in WORKLOADS {
            assert!(svg.contains(name), "{name} missing from {chart}");
        }
    }

    // The run compared with itself: the same medians, every range overlapping.
    let json = out.path().join("results.json");
    let compared = bench(tmp.path())
        .arg("compare")
        .arg(&json)
        .arg(&json)
        .output()
        .unwrap();
    assert!(compared.status.success());
    let text = String::from_utf8(compared.stdout).unwrap();
    let rows: Vec<&str> = text.lines().filter(|l| l.ends_with("%  overlap")).collect();
    let cells: usize = WORKLOADS.iter().map(|w| targets_of(w).len()).sum();
    assert_eq!(rows.len(), cells, "{text}");
    assert!(rows.iter().all(|r| r.contains("+0.0%")), "{text}");
}

#[test]
fn a_loaded_run_reports_idle_and_loaded_figures_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = bench(tmp.path())
        .args([
            "run",
            "--quick",
            "--rounds",
            "2",
            "--load",
            "2",
            "--workloads",
            "stat,cat-4t",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "btfuse-bench run --load failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_nothing_left(tmp.path());
    // The hogs were threads of the run: none outlives it.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(json["meta"]["load"], 2);
    for w in json["workloads"].as_array().unwrap() {
        let loaded = &w["loaded"];
        let shares = loaded["hog_share"].as_array().unwrap();
        assert_eq!(shares.len(), 2, "one hog share per round: {w}");
        // Two hogs on a machine that also runs the workload: busy a good part of the time.
        assert!(
            shares
                .iter()
                .all(|s| (0.1..=1.0).contains(&s.as_f64().unwrap())),
            "{w}"
        );
        let targets = loaded["targets"].as_array().unwrap();
        assert_eq!(targets.len(), TARGETS.len(), "{w}");
        for t in targets {
            let rounds = t["ns_per_op"].as_array().unwrap();
            assert_eq!(rounds.len(), 2, "{t}");
            assert!(rounds.iter().all(|v| v.as_f64().unwrap() > 0.0), "{t}");
        }
    }
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("with 2 CPU hogs:"), "{table}");
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(
        report.contains("## Idle and with 2 CPU hogs, side by side"),
        "{report}"
    );
    assert!(report.contains("| cat-4t |"), "{report}");
    let svg = std::fs::read_to_string(out.path().join("time.svg")).unwrap();
    assert!(svg.contains("with 2 CPU hogs"), "time.svg");
}

#[test]
fn an_interrupted_run_stops_the_daemon_and_unmounts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // A full-size run, stopped while it works on the btfuse mount.
    let mut child = bench(tmp.path())
        .args([
            "run",
            "--workloads",
            "readdir",
            "--targets",
            "fuse,tmpfs",
            "--out",
        ])
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while mounts_under(tmp.path()).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the run did not mount tmpfs and btfuse"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: the pid is our child's, not yet waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("btfuse-bench did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    assert_nothing_left(tmp.path());
    // Nothing was written: the run did not finish.
    assert!(!out.path().join("results.json").exists());
}

#[test]
fn bad_input_gets_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let output = bench(tmp.path())
        .arg("compare")
        .arg(&junk)
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("is not a btfuse-bench results file"), "{err}");

    let output = bench(tmp.path())
        .args(["run", "--quick", "--bin-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("btfuse-fuse is missing") && err.contains("cargo build"),
        "{err}"
    );
    assert_eq!(mounts_under(tmp.path()), Vec::<String>::new());

    let output = bench(tmp.path())
        .args(["run", "--quick", "--load", "many"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("--load"), "{err}");
}
