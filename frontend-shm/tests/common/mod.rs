//! Shared harness of the metrics tests (`dashboard.rs`, `prometheus.rs`).
//!
//! - [`Process`] runs a program with its output in a file (a pipe nobody drains would block a
//!   chatty daemon), stops it by its pid on drop (`SIGTERM`, then `SIGKILL` after a timeout)
//!   and prints that output when a test panics.
//! - [`ShmDaemon`] is a `btfuse-shm serve --metrics 127.0.0.1:0` on a fresh socket, with the
//!   metrics address it logged.
//! - [`http_get`] is the little HTTP/1.1 client the tests need: one `GET` over a `TcpStream`,
//!   `Content-Length` or chunked bodies.
//! - [`Exposition`] parses the OpenMetrics text of `/metrics` and rejects what Prometheus
//!   would reject.
//! - [`dashboard_queries`] lists the PromQL of `dashboards/btfuse.json`: every panel query and
//!   every query template variable.
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a process may take to start (to log its metrics address), and to exit after
/// `SIGTERM`.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read and write timeout of one HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What a daemon started with `--metrics ADDR` logs once it listens (then the address and
/// `/metrics`).
const METRICS_LOG_PREFIX: &str = "metrics on http://";

/// A child process whose stdout and stderr go to a file in its own temporary directory.
pub(crate) struct Process {
    name: String,
    child: Option<Child>,
    status: Option<Option<ExitStatus>>,
    log_path: PathBuf,
    dir: tempfile::TempDir,
}

impl Process {
    /// Starts `program ARGS`; `name` labels it in messages.
    pub(crate) fn spawn<S: AsRef<OsStr>>(name: &str, program: &Path, args: &[S]) -> Process {
        let dir = tempfile::Builder::new()
            .prefix("btfuse-metrics-")
            .tempdir()
            .expect("create a temporary directory");
        let log_path = dir.path().join("output");
        let log = File::create(&log_path).expect("create the output file");
        let log_for_stdout = log.try_clone().expect("duplicate the output file");
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_for_stdout))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({}): {e}", program.display()));
        Process {
            name: name.to_owned(),
            child: Some(child),
            status: None,
            log_path,
            dir,
        }
    }

    /// A temporary directory of this process's own, removed after it has stopped.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the process has printed so far.
    pub(crate) fn output(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("(output unreadable: {e})"))
    }

    /// Waits until `found` picks something out of the output; panics with the output if the
    /// process exits first or `timeout` passes.
    pub(crate) fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut found: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = found(&self.output()) {
                return value;
            }
            let child = self.child.as_mut().expect("the process runs");
            if let Some(status) = child.try_wait().expect("poll the process") {
                panic!(
                    "{} exited with {status} before {what}; its output:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not show {what} within {timeout:?}; its output:\n{}",
                self.name,
                self.output()
            );
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits for the `metrics on http://ADDR/metrics` line and returns `ADDR`.
    pub(crate) fn wait_for_metrics_address(&mut self) -> SocketAddr {
        self.wait_for("its metrics address", START_TIMEOUT, |output| {
            let line = output.lines().find(|l| l.contains(METRICS_LOG_PREFIX))?;
            let (_, rest) = line.split_once(METRICS_LOG_PREFIX)?;
            let addr = rest.split('/').next()?;
            Some(
                addr.parse().unwrap_or_else(|e| {
                    panic!("unparsable metrics address {addr:?} in {line:?}: {e}")
                }),
            )
        })
    }

    /// Sends `signal` to the process, which must still run (not yet waited for).
    pub(crate) fn signal(&mut self, signal: libc::c_int) {
        assert!(self.is_running(), "{} is not running", self.name);
        let child = self
            .child
            .as_ref()
            .expect("a running process has its child");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits in pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our child, not yet
        // waited for, so it still names that process.
        unsafe { libc::kill(pid, signal) };
    }

    /// Whether the process still runs.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Sends `SIGTERM` to the process's pid, waits for it to exit and returns its status;
    /// kills it with `SIGKILL` (`None`) if it is still there after [`STOP_TIMEOUT`].
    pub(crate) fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.status {
            return status;
        }
        let mut child = self.child.take().expect("a running process has its child");
        let status = match child.try_wait() {
            Ok(Some(status)) => Some(status),
            _ => {
                let pid = libc::pid_t::try_from(child.id()).expect("a pid fits in pid_t");
                // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our child, not
                // yet waited for, so it still names that process.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                let deadline = Instant::now() + STOP_TIMEOUT;
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => break Some(status),
                        Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
                        _ => {
                            // Child::kill sends SIGKILL to this child's pid.
                            let _ = child.kill();
                            let _ = child.wait();
                            break None;
                        }
                    }
                }
            }
        };
        self.status = Some(status);
        status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let status = self.stop();
        if thread::panicking() {
            eprintln!(
                "{} ended with {status:?}; its output:\n{}",
                self.name,
                self.output()
            );
        }
    }
}

/// A `btfuse-shm serve --metrics 127.0.0.1:0` on a socket in a temporary directory.
pub(crate) struct ShmDaemon {
    // Fields drop in order: the daemon stops before its socket's directory goes.
    pub(crate) process: Process,
    socket: PathBuf,
    metrics: SocketAddr,
    _socket_dir: tempfile::TempDir,
}

impl ShmDaemon {
    /// Starts the daemon with `--size SIZE` and waits until it serves both its socket and its
    /// metrics.
    pub(crate) fn start(size: &str) -> ShmDaemon {
        ShmDaemon::start_with(size, &[])
    }

    /// [`ShmDaemon::start`] with more arguments after `serve`'s own.
    pub(crate) fn start_with(size: &str, extra: &[&OsStr]) -> ShmDaemon {
        let socket_dir = tempfile::Builder::new()
            .prefix("btfuse-ring-")
            .tempdir()
            .expect("create a temporary directory");
        let socket = socket_dir.path().join("ring.sock");
        let mut args = vec![
            OsStr::new("serve"),
            OsStr::new("--threads"),
            OsStr::new("2"),
            OsStr::new("--size"),
            OsStr::new(size),
            OsStr::new("--metrics"),
            OsStr::new("127.0.0.1:0"),
            OsStr::new("--socket"),
            socket.as_os_str(),
        ];
        args.extend_from_slice(extra);
        let mut process = Process::spawn(
            "btfuse-shm",
            Path::new(env!("CARGO_BIN_EXE_btfuse-shm")),
            &args,
        );
        let metrics = process.wait_for_metrics_address();
        process.wait_for("its socket", START_TIMEOUT, |_| {
            socket.exists().then_some(())
        });
        ShmDaemon {
            process,
            socket,
            metrics,
            _socket_dir: socket_dir,
        }
    }

    /// The ring's Unix socket.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// Where `/metrics` is served.
    pub(crate) fn metrics_address(&self) -> SocketAddr {
        self.metrics
    }
}

/// An HTTP response, body decoded.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The `Accept` header Prometheus sends when it scrapes: OpenMetrics first.
pub(crate) const SCRAPE_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// `GET target` (a path with an optional query) from `addr` over HTTP/1.1 with
/// `Connection: close`, reading until the server closes.
pub(crate) fn http_get(addr: SocketAddr, target: &str, accept: &str) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_http_response(&raw)
}

fn parse_http_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of the response head"))?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| bad("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut response = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    let rest = &raw[head_end + 4..];
    let body = if response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        decode_chunked(rest).ok_or_else(|| bad("malformed chunked body"))?
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().map_err(|_| bad("bad Content-Length"))?;
        rest.get(..length)
            .ok_or_else(|| bad("body shorter than its Content-Length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    response.body = String::from_utf8(body).map_err(|_| bad("body is not UTF-8"))?;
    Ok(response)
}

/// The body of a `Transfer-Encoding: chunked` response (`SIZE-IN-HEX\r\nDATA\r\n`... `0\r\n`).
fn decode_chunked(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size_hex = size_field.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

/// One sample line of an exposition: `name{label="value",...} value`.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// A parsed OpenMetrics exposition: its metric families (from `# TYPE`) and samples.
#[derive(Debug)]
pub(crate) struct Exposition {
    /// Family name to its type (`counter`, `gauge`, `histogram`, `info`, ...).
    pub(crate) families: BTreeMap<String, String>,
    pub(crate) samples: Vec<Sample>,
}

/// The sample-name suffixes OpenMetrics allows for each family type.
fn sample_suffixes(family_type: &str) -> &'static [&'static str] {
    match family_type {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "summary" => &["", "_sum", "_count", "_created"],
        "info" => &["_info"],
        "gaugehistogram" => &["_bucket", "_gsum", "_gcount"],
        _ => &[""],
    }
}

impl Exposition {
    /// Parses `text`, panicking with the offending line at anything malformed: a sample of no
    /// declared family or with a suffix its type does not allow, a family declared twice, a
    /// missing or misplaced `# EOF`.
    pub(crate) fn parse(text: &str) -> Exposition {
        let body = text
            .strip_suffix("# EOF\n")
            .or_else(|| text.strip_suffix("# EOF"))
            .unwrap_or_else(|| panic!("the exposition does not end with `# EOF`:\n{text}"));
        let mut exposition = Exposition {
            families: BTreeMap::new(),
            samples: Vec::new(),
        };
        for line in body.lines() {
            assert!(
                !line.is_empty(),
                "OpenMetrics allows no empty line:\n{text}"
            );
            if let Some(comment) = line.strip_prefix("# ") {
                assert!(comment != "EOF", "`# EOF` before the end:\n{text}");
                if let Some(declaration) = comment.strip_prefix("TYPE ") {
                    let (family, family_type) = declaration
                        .split_once(' ')
                        .unwrap_or_else(|| panic!("malformed TYPE line {line:?}"));
                    let previous = exposition
                        .families
                        .insert(family.to_owned(), family_type.to_owned());
                    assert!(previous.is_none(), "family {family} declared twice");
                }
                continue;
            }
            let sample = parse_sample(line);
            exposition.family_of(&sample.name).unwrap_or_else(|| {
                panic!("sample {line:?} belongs to no declared family (with its type's suffixes)")
            });
            exposition.samples.push(sample);
        }
        exposition
    }

    /// The family (name and type) a sample name belongs to.
    pub(crate) fn family_of(&self, sample_name: &str) -> Option<(&str, &str)> {
        self.families
            .iter()
            .find(|(family, family_type)| {
                sample_suffixes(family_type)
                    .iter()
                    .any(|suffix| sample_name.strip_suffix(suffix) == Some(family.as_str()))
            })
            .map(|(family, family_type)| (family.as_str(), family_type.as_str()))
    }

    /// Whether some sample is named `name`.
    pub(crate) fn has_sample(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// The samples named `name` whose labels include `labels`.
    pub(crate) fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one sample named `name` with `labels` (panics if there is not exactly
    /// one).
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self.find(name, labels).collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one sample {name}{labels:?}, found {found:?}"
        );
        found[0].value
    }
}

/// Parses `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| malformed(line));
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        malformed(line);
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = after_brace;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after_eq) = rest.split_once("=\"").unwrap_or_else(|| malformed(line));
            let mut value = String::new();
            let mut chars = after_eq.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('"' | '\\'))) => value.push(c),
                        _ => malformed(line),
                    },
                    Some((_, c)) => value.push(c),
                    None => malformed(line),
                }
            };
            labels.insert(label.to_owned(), value);
            rest = &after_eq[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let mut fields = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| malformed(line))
        .split(' ');
    let value = match fields.next().unwrap_or_else(|| malformed(line)) {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().unwrap_or_else(|_| malformed(line)),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

fn malformed(line: &str) -> ! {
    panic!("malformed sample line {line:?}")
}

/// The Grafana dashboard the metrics tests check.
pub(crate) const DASHBOARD: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/btfuse.json");

/// A PromQL expression of the dashboard and where it is.
pub(crate) struct Query {
    pub(crate) place: String,
    pub(crate) expr: String,
}

/// `dashboards/btfuse.json`, parsed.
pub(crate) fn dashboard() -> Value {
    let text = fs::read_to_string(DASHBOARD).expect("read dashboards/btfuse.json");
    serde_json::from_str(&text).expect("the dashboard is valid JSON")
}

/// The panels, those inside collapsed rows included.
pub(crate) fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut panels = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels").iter() {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    panels
}

/// The `expr` of every panel query and the query of every `query` template variable.
pub(crate) fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    let mut queries = Vec::new();
    for panel in all_panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("a query of panel {title:?} has no expr"));
            queries.push(Query {
                place: format!("panel {title:?} query {}", target["refId"]),
                expr: expr.to_owned(),
            });
        }
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        let name = &variable["name"];
        // Grafana stores a Prometheus variable's query as a string or as an object.
        let query = &variable["query"];
        let expr = query
            .as_str()
            .or_else(|| query["query"].as_str())
            .unwrap_or_else(|| panic!("variable {name} has no query"));
        queries.push(Query {
            place: format!("variable {name}"),
            expr: expr.to_owned(),
        });
        if let Some(definition) = variable["definition"].as_str() {
            queries.push(Query {
                place: format!("variable {name} (definition)"),
                expr: definition.to_owned(),
            });
        }
    }
    queries
}

/// The directory cargo put this test's executable's profile in (`target/release`): the
/// executable is `target/<profile>/deps/<test>-<hash>`.
pub(crate) fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable sits in target/<profile>/deps")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n";
        let response = parse_http_response(raw).unwrap();
        assert_eq!((response.status, response.body.as_str()), (200, "abcdefg"));
    }

    #[test]
    fn samples_and_families_are_parsed() {
        let text = "# TYPE a counter\n# HELP a A.\na_total{x=\"1\",y=\"q\\\"\"} 3\n\
                    # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n# EOF\n";
        let e = Exposition::parse(text);
        assert_eq!(e.value("a_total", &[("y", "q\"")]), 3.0);
        assert_eq!(e.family_of("h_bucket"), Some(("h", "histogram")));
        assert_eq!(e.value("h_bucket", &[("le", "+Inf")]), 2.0);
    }
}
