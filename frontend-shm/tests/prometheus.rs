//! Both daemons' metrics through a real Prometheus server.
//!
//! Guards that Prometheus accepts what `--metrics` serves (its OpenMetrics parser is stricter
//! than ours), that the series it stores carry the load the test sent, and that every query of
//! `dashboards/btfuse.json` is valid PromQL that finds data. It starts `btfuse-shm serve
//! --metrics 127.0.0.1:0` and, when running as root with `/dev/fuse`, `btfuse-fuse DIR
//! --metrics 127.0.0.1:0`; then `prometheus` (Debian's package; the test fails when it is
//! missing) scraping both every second. It sends load through the ring (500 stats, 50 of a
//! missing file, a file written and read) and the mount (files written and synced, 200 stats),
//! and polls `/api/v1/query` until every expected value has arrived.
//!
//! The test lives in this crate because only this crate's `Cargo.toml` could take the
//! `serde_json` dev-dependency; `btfuse-fuse` is therefore not built for it: it is looked up
//! beside this test's executable (`target/<profile>/btfuse-fuse`), and the test fails if it is
//! missing. `scripts/test-all` builds it first; by hand, run `cargo build --release -p
//! btfuse-fuse` before this test after changing the FUSE frontend.
//!
//! Everything is bounded in time, every process is stopped by its pid (`SIGTERM`, `SIGKILL`
//! after a timeout), and the mount must be gone from `/proc/mounts` at the end.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use btfuse_ring_client::Client;
use common::{Process, START_TIMEOUT, ShmDaemon, dashboard_queries, http_get};
use serde_json::Value;

/// How long Prometheus may take to be ready, and then to show every expected value.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
const QUERY_INTERVAL: Duration = Duration::from_millis(500);

/// Ring load: successful stats, stats of a missing file, bytes written to a file and read.
const RING_STATS: u32 = 500;
const RING_FAILED_STATS: u32 = 50;
const RING_FILE_BYTES: usize = 100_000;
/// Mount load: files written and synced, of this size each, then stats spread over them.
const FUSE_FILES: usize = 10;
const FUSE_FILE_BYTES: usize = 64 * 1024;
const FUSE_STATS: usize = 200;
/// Capacity given to both daemons, checked back through `btfuse_blocks_total`.
const SIZE: &str = "64M";
const SIZE_BYTES: f64 = 64.0 * 1024.0 * 1024.0;

const SHM_JOB: &str = "btfuse-shm";
const FUSE_JOB: &str = "btfuse-fuse";
const FUSE_FSTYPE: &str = "fuse.btfuse-fuse";

#[test]
fn prometheus_scrapes_both_daemons_and_answers_with_the_load_sent() {
    let prometheus_binary = find_prometheus();
    // With the audit example, so that the dashboard's eBPF panels have series to show.
    let audit = btfuse_testkit::bpf::compile(&btfuse_testkit::bpf::example("audit"), &[]);
    let shm = ShmDaemon::start_with(SIZE, &[OsStr::new("--bpf"), audit.as_os_str()]);
    let fuse = if fuse_available() {
        Some(FuseDaemon::start(&btfuse_fuse_binary()))
    } else {
        eprintln!("not root or no /dev/fuse: checking btfuse-shm only");
        None
    };
    let mut targets = vec![(SHM_JOB, shm.metrics_address())];
    if let Some(fuse) = &fuse {
        targets.push((FUSE_JOB, fuse.metrics));
    }
    let prometheus = Prometheus::start(&prometheus_binary, &targets);

    // A first stat of each kind, scraped before the rest: rate() over the histogram needs a
    // sample from before the bulk of the load, and the series only appear once counted.
    let client = Client::connect(shm.socket()).expect("connect to the ring");
    client.metadata("/").expect("stat /");
    client
        .metadata("/missing")
        .expect_err("stat of a missing file");
    prometheus.wait_for_series(&format!(
        "btfuse_operation_errors_total{{job=\"{SHM_JOB}\",operation=\"stat\"}}"
    ));

    for _ in 1..RING_STATS {
        client.metadata("/").expect("stat /");
    }
    for _ in 1..RING_FAILED_STATS {
        let err = client
            .metadata("/missing")
            .expect_err("stat of a missing file");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
    let data: Vec<u8> = (0..RING_FILE_BYTES).map(|i| (i % 251) as u8).collect();
    client.write("/file", &data).expect("write /file");
    assert_eq!(client.read("/file").expect("read /file"), data);
    // What the audit program counts: a rename and an unlink.
    client.write("/scratch", b"x").expect("write /scratch");
    client
        .rename("/scratch", "/scratch2")
        .expect("rename /scratch");
    client.remove_file("/scratch2").expect("unlink /scratch2");
    if let Some(fuse) = &fuse {
        fuse_load(&fuse.mount_point);
    }

    // The client stays connected until the checks pass: btfuse_ring_clients counts it.
    let mut checks = ring_checks();
    if fuse.is_some() {
        checks.extend(fuse_checks());
    }
    checks.extend(dashboard_checks());
    prometheus.wait_for_checks(&checks);
    drop(client);

    if let Some(mut fuse) = fuse {
        let status = fuse.process.stop();
        assert!(
            status.is_some_and(|s| s.success()),
            "btfuse-fuse did not exit cleanly on SIGTERM: {status:?}"
        );
        assert!(
            !is_mounted(&fuse.mount_point),
            "{} is still in /proc/mounts after btfuse-fuse exited",
            fuse.mount_point.display()
        );
    }
}

/// What a query must return: one series whose value passes.
enum Expect {
    AtLeast(f64),
    Equals(f64),
    Positive,
    /// Any number of series, at least one (the dashboard's queries).
    SomeSeries,
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::AtLeast(min) => write!(f, "one series >= {min}"),
            Expect::Equals(value) => write!(f, "one series == {value}"),
            Expect::Positive => write!(f, "one series, finite and > 0"),
            Expect::SomeSeries => write!(f, "at least one series"),
        }
    }
}

struct Check {
    query: String,
    expect: Expect,
}

impl Check {
    fn new(query: impl Into<String>, expect: Expect) -> Check {
        Check {
            query: query.into(),
            expect,
        }
    }

    fn passes(&self, values: &[f64]) -> bool {
        match (&self.expect, values) {
            (Expect::SomeSeries, values) => !values.is_empty(),
            (Expect::AtLeast(min), [value]) => value >= min,
            (Expect::Equals(expected), [value]) => value == expected,
            (Expect::Positive, [value]) => value.is_finite() && *value > 0.0,
            _ => false,
        }
    }
}

fn ring_checks() -> Vec<Check> {
    let shm = format!("job=\"{SHM_JOB}\",frontend=\"shm\"");
    let all_stats = f64::from(RING_STATS + RING_FAILED_STATS);
    vec![
        Check::new(format!("up{{job=\"{SHM_JOB}\"}}"), Expect::Equals(1.0)),
        Check::new(
            format!("btfuse_operations_total{{{shm},operation=\"stat\"}}"),
            Expect::AtLeast(all_stats),
        ),
        Check::new(
            format!("btfuse_operation_errors_total{{{shm},operation=\"stat\",errno=\"ENOENT\"}}"),
            Expect::AtLeast(f64::from(RING_FAILED_STATS)),
        ),
        Check::new(
            format!("btfuse_operation_duration_seconds_count{{{shm},operation=\"stat\"}}"),
            Expect::AtLeast(all_stats),
        ),
        Check::new(
            format!(
                "histogram_quantile(0.9, sum by (le) \
                 (rate(btfuse_operation_duration_seconds_bucket{{{shm},operation=\"stat\"}}[1m])))"
            ),
            Expect::Positive,
        ),
        Check::new(
            format!("btfuse_written_bytes_total{{{shm}}}"),
            Expect::AtLeast(RING_FILE_BYTES as f64),
        ),
        Check::new(
            format!("btfuse_read_bytes_total{{{shm}}}"),
            Expect::AtLeast(RING_FILE_BYTES as f64),
        ),
        Check::new(
            format!("btfuse_ring_clients{{job=\"{SHM_JOB}\"}}"),
            Expect::AtLeast(1.0),
        ),
        Check::new(
            format!(
                "btfuse_blocks_total{{job=\"{SHM_JOB}\"}} * btfuse_block_size_bytes{{job=\"{SHM_JOB}\"}}"
            ),
            Expect::Equals(SIZE_BYTES),
        ),
        Check::new(
            format!("btfuse_build_info{{job=\"{SHM_JOB}\"}}"),
            Expect::Equals(1.0),
        ),
    ]
}

fn fuse_checks() -> Vec<Check> {
    let fuse = format!("job=\"{FUSE_JOB}\",frontend=\"fuse\"");
    vec![
        Check::new(format!("up{{job=\"{FUSE_JOB}\"}}"), Expect::Equals(1.0)),
        Check::new(
            format!("btfuse_operations_total{{{fuse},operation=\"lookup\"}}"),
            Expect::Positive,
        ),
        Check::new(
            format!("btfuse_operations_total{{{fuse},operation=\"getattr\"}}"),
            Expect::Positive,
        ),
        Check::new(
            format!("sum(btfuse_operation_errors_total{{{fuse},errno=\"ENOENT\"}})"),
            Expect::Positive,
        ),
        Check::new(
            format!("btfuse_written_bytes_total{{{fuse}}}"),
            Expect::AtLeast((FUSE_FILES * FUSE_FILE_BYTES) as f64),
        ),
        Check::new(
            format!("btfuse_inodes_used{{job=\"{FUSE_JOB}\"}}"),
            Expect::AtLeast((FUSE_FILES + 1) as f64),
        ),
        Check::new(
            format!(
                "btfuse_blocks_total{{job=\"{FUSE_JOB}\"}} * btfuse_block_size_bytes{{job=\"{FUSE_JOB}\"}}"
            ),
            Expect::Equals(SIZE_BYTES),
        ),
        Check::new(
            format!("btfuse_build_info{{job=\"{FUSE_JOB}\"}}"),
            Expect::Equals(1.0),
        ),
    ]
}

/// Every query of the dashboard, its template variables set to "All", must evaluate and find
/// at least one series.
fn dashboard_checks() -> Vec<Check> {
    let dashboard = common::dashboard();
    let variables: Vec<String> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    dashboard_queries(&dashboard)
        .into_iter()
        .filter(|query| !query.expr.starts_with("label_values("))
        .map(|query| {
            let mut expr = query.expr;
            for variable in &variables {
                expr = expr
                    .replace(&format!("${{{variable}}}"), ".*")
                    .replace(&format!("${variable}"), ".*");
            }
            Check::new(expr, Expect::SomeSeries)
        })
        .collect()
}

/// Writes and syncs files (with writeback caching the data reaches the daemon on fsync), then
/// stats them and a missing name.
fn fuse_load(mount_point: &Path) {
    let data = vec![0x5a_u8; FUSE_FILE_BYTES];
    for i in 0..FUSE_FILES {
        let path = mount_point.join(format!("file{i}"));
        let mut file = fs::File::create(&path).expect("create a file on the mount");
        file.write_all(&data).expect("write a file on the mount");
        file.sync_all().expect("fsync a file on the mount");
    }
    for i in 0..FUSE_STATS {
        let path = mount_point.join(format!("file{}", i % FUSE_FILES));
        assert_eq!(
            fs::metadata(&path).expect("stat a file on the mount").len(),
            FUSE_FILE_BYTES as u64
        );
    }
    let missing = fs::metadata(mount_point.join("missing")).expect_err("stat a missing name");
    assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
}

/// `prometheus` on `PATH` or in `/usr/bin`; the test fails, not skips, without it.
fn find_prometheus() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "prometheus is not installed: this test runs a real Prometheus server against \
                 the daemons; install it with `apt-get install prometheus` (.ci/run does)"
            )
        })
}

/// Whether this process may mount FUSE: root, and `/dev/fuse` exists.
fn fuse_available() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory of ours.
    let euid = unsafe { libc::geteuid() };
    euid == 0 && Path::new("/dev/fuse").exists()
}

/// `btfuse-fuse` of the same profile as this test.
fn btfuse_fuse_binary() -> PathBuf {
    let dir = common::profile_dir();
    let binary = dir.join("btfuse-fuse");
    if !binary.is_file() {
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("release");
        let flag = match profile {
            "debug" => String::new(),
            "release" => " --release".to_owned(),
            other => format!(" --profile {other}"),
        };
        panic!(
            "{} is missing: this test mounts the real btfuse-fuse, which cargo does not build \
             for btfuse-shm's tests; build it first with `cargo build{flag} -p btfuse-fuse`",
            binary.display()
        );
    }
    binary
}

/// A `btfuse-fuse MOUNT_POINT --metrics 127.0.0.1:0` mounted on a fresh directory. Dropping
/// it stops the daemon with `SIGTERM` (which unmounts) and detaches a mount a killed daemon
/// left behind.
struct FuseDaemon {
    // Fields drop in order: the daemon has stopped before its mount point is removed.
    process: Process,
    metrics: SocketAddr,
    /// The mount point, canonical (as /proc/mounts shows it).
    mount_point: PathBuf,
    _mount_dir: tempfile::TempDir,
}

impl FuseDaemon {
    fn start(binary: &Path) -> FuseDaemon {
        let mount_dir = tempfile::Builder::new()
            .prefix("btfuse-mnt-")
            .tempdir()
            .expect("create a mount point");
        let mount_point = fs::canonicalize(mount_dir.path()).expect("canonicalize the mount point");
        let mut process = Process::spawn(
            "btfuse-fuse",
            binary,
            &[
                OsStr::new("--size"),
                OsStr::new(SIZE),
                OsStr::new("--metrics"),
                OsStr::new("127.0.0.1:0"),
                mount_point.as_os_str(),
            ],
        );
        let metrics = process.wait_for_metrics_address();
        process.wait_for("the mount in /proc/mounts", START_TIMEOUT, |_| {
            is_mounted(&mount_point).then_some(())
        });
        FuseDaemon {
            process,
            metrics,
            mount_point,
            _mount_dir: mount_dir,
        }
    }
}

impl Drop for FuseDaemon {
    fn drop(&mut self) {
        self.process.stop();
        if is_mounted(&self.mount_point) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.mount_point)
                .status();
        }
    }
}

/// Whether `/proc/mounts` lists a btfuse mount on `dir` (a canonical path).
fn is_mounted(dir: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    mounts.lines().any(|line| {
        let mut fields = line.split(' ');
        let (_source, mount_point, fstype) = (fields.next(), fields.next(), fields.next());
        mount_point == dir.to_str() && fstype == Some(FUSE_FSTYPE)
    })
}

/// One series of a query's answer.
#[derive(Debug)]
struct Series {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A Prometheus server with a fresh database, scraping `targets` every second.
struct Prometheus {
    // Fields drop in order: the server has stopped before its database is removed.
    _process: Process,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, targets: &[(&str, SocketAddr)]) -> Prometheus {
        let addr = free_local_address();
        let dir = tempfile::Builder::new()
            .prefix("btfuse-prometheus-")
            .tempdir()
            .expect("create Prometheus's directory");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n",
        );
        for (job, target) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, &config).expect("write prometheus.yml");
        let mut process = Process::spawn(
            "prometheus",
            binary,
            &[
                format!("--config.file={}", config_path.display()),
                format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                format!("--web.listen-address={addr}"),
            ],
        );
        process.wait_for("/-/ready answering 200", READY_TIMEOUT, |_| {
            let response = http_get(addr, "/-/ready", "*/*").ok()?;
            (response.status == 200).then_some(())
        });
        Prometheus {
            _process: process,
            addr,
            _dir: dir,
        }
    }

    /// The result of an instant query. `Err` for what may change with time (no answer yet); a
    /// query Prometheus rejects fails the test at once.
    fn query(&self, promql: &str) -> Result<Vec<Series>, String> {
        let target = format!("/api/v1/query?query={}", percent_encode(promql));
        let response = http_get(self.addr, &target, "application/json")
            .map_err(|e| format!("GET {target}: {e}"))?;
        let json: Value = serde_json::from_str(&response.body)
            .map_err(|e| format!("{e} in {:?}", response.body))?;
        if json["status"] != "success" {
            panic!(
                "Prometheus rejected the query {promql:?} (HTTP {}): {} {}",
                response.status, json["errorType"], json["error"]
            );
        }
        let data = &json["data"];
        let results = match data["resultType"].as_str() {
            Some("vector") => data["result"].as_array().cloned().unwrap_or_default(),
            Some("scalar") => vec![serde_json::json!({ "metric": {}, "value": data["result"] })],
            other => return Err(format!("unexpected result type {other:?}")),
        };
        Ok(results
            .iter()
            .map(|series| {
                let labels = series["metric"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                // Values come as strings: "1.5", "NaN", "+Inf".
                let value = series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(f64::NAN);
                Series { labels, value }
            })
            .collect())
    }

    /// Waits until `promql` finds a series.
    fn wait_for_series(&self, promql: &str) {
        let deadline = Instant::now() + QUERY_TIMEOUT;
        loop {
            if self.query(promql).is_ok_and(|series| !series.is_empty()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus showed no series for {promql} within {QUERY_TIMEOUT:?}; targets:\n{}",
                self.targets()
            );
            thread::sleep(QUERY_INTERVAL);
        }
    }

    /// Polls until every check passes; fails listing the ones that do not, with what they
    /// returned, and the targets' scrape state.
    fn wait_for_checks(&self, checks: &[Check]) {
        let deadline = Instant::now() + QUERY_TIMEOUT;
        loop {
            let mut passing = Vec::new();
            let mut failing = Vec::new();
            for check in checks {
                let answer = self.query(&check.query);
                let values: Option<Vec<f64>> = answer
                    .as_ref()
                    .ok()
                    .map(|series| series.iter().map(|s| s.value).collect());
                match values {
                    Some(values) if check.passes(&values) => {
                        passing.push(format!("{} = {values:?}", check.query));
                    }
                    _ => failing.push(format!(
                        "{}\n    expected {}, got {}",
                        check.query,
                        check.expect,
                        describe(&answer)
                    )),
                }
            }
            if failing.is_empty() {
                // Shown with --nocapture.
                eprintln!("every query passed:\n  {}", passing.join("\n  "));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {QUERY_TIMEOUT:?}, {} of {} queries still fail:\n  {}\ntargets:\n{}",
                failing.len(),
                checks.len(),
                failing.join("\n  "),
                self.targets()
            );
            thread::sleep(QUERY_INTERVAL);
        }
    }

    /// Each scrape target's health and last error, from `/api/v1/targets`.
    fn targets(&self) -> String {
        let Ok(response) = http_get(self.addr, "/api/v1/targets", "application/json") else {
            return "(no answer from /api/v1/targets)".to_owned();
        };
        let Ok(json) = serde_json::from_str::<Value>(&response.body) else {
            return response.body;
        };
        json["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "  {} {}: {} {}",
                    t["scrapePool"], t["scrapeUrl"], t["health"], t["lastError"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A query's answer as `{label="value",...} value` lines, or why there is none.
fn describe(answer: &Result<Vec<Series>, String>) -> String {
    match answer {
        Err(e) => format!("no answer: {e}"),
        Ok(series) if series.is_empty() => "no series".to_owned(),
        Ok(series) => series
            .iter()
            .map(|s| {
                let labels: Vec<String> =
                    s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                format!("{{{}}} {}", labels.join(","), s.value)
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// A local address no one listened on a moment ago.
fn free_local_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("the bound address")
}

/// `text` with everything but RFC 3986's unreserved characters percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn queries_are_percent_encoded() {
    assert_eq!(
        percent_encode("up{job=\"a b\"}"),
        "up%7Bjob%3D%22a%20b%22%7D"
    );
}
