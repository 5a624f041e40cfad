//! Guards a `btfuse-fuse` mount under concurrent processes: data written by one process is
//! never torn, lost or mixed with another's, whether the processes write different files, the
//! same file at different offsets, or append to one shared file, while another process reads;
//! and concurrent creates, renames, unlinks, mkdirs and rmdirs in one directory leave exactly
//! the expected entries, with no listing that shows a name twice.
//!
//! The workers are forked children running Rust code (see `common::Forked`), so run the tests
//! with `--test-threads=1`. A watchdog kills the daemon if a run hangs, which makes every
//! pending request fail instead of blocking the test forever.
#![deny(unsafe_code)]

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Forked, Mount};

const WRITERS: usize = 4;
const ITERATIONS: usize = 200;
/// One appended record: `w<writer> i<iteration> ` padded with a per-writer byte, then `\n`.
const RECORD_LEN: usize = 64;
const PRIVATE_LEN: usize = 16 * 1024;
/// Each writer owns one slot of this size in the shared `slots` file.
const SLOT_LEN: usize = 4096;
/// How long a whole run may take before the watchdog kills the daemon.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Kills the daemon (`SIGKILL`) unless dropped within `timeout`, so a hung run fails.
struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<bool>>,
}

impl Watchdog {
    /// Starts only after every worker is forked: a fork copies the forking thread alone.
    fn arm(daemon_pid: libc::pid_t, timeout: Duration) -> Watchdog {
        let (disarm, disarmed) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            if disarmed.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
                eprintln!("watchdog: no progress within {timeout:?}, killing the daemon");
                let _ = common::send_signal(daemon_pid, libc::SIGKILL);
                return true;
            }
            false
        });
        Watchdog {
            disarm: Some(disarm),
            thread: Some(thread),
        }
    }

    /// Stops the watchdog; returns whether it fired.
    fn disarm(mut self) -> bool {
        self.stop()
    }

    fn stop(&mut self) -> bool {
        if let Some(disarm) = self.disarm.take() {
            let _ = disarm.send(());
        }
        self.thread
            .take()
            .is_some_and(|thread| thread.join().unwrap_or(true))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn record(writer: usize, iteration: usize) -> [u8; RECORD_LEN] {
    let mut bytes = [b'a' + writer as u8; RECORD_LEN];
    let head = format!("w{writer} i{iteration:04} ");
    bytes[..head.len()].copy_from_slice(head.as_bytes());
    bytes[RECORD_LEN - 1] = b'\n';
    bytes
}

/// The writer and iteration of a whole, well-formed record.
fn parse_record(bytes: &[u8]) -> Option<(usize, usize)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (writer, rest) = text.strip_prefix('w')?.split_once(" i")?;
    let (iteration, _) = rest.split_once(' ')?;
    let (writer, iteration) = (writer.parse().ok()?, iteration.parse().ok()?);
    (writer < WRITERS && record(writer, iteration) == bytes).then_some((writer, iteration))
}

/// What private file `writer` holds after `iteration`: differs per writer and iteration.
fn private_pattern(writer: usize, iteration: usize) -> Vec<u8> {
    (0..PRIVATE_LEN)
        .map(|k| (k * 31 + writer * 7 + iteration * 13) as u8)
        .collect()
}

fn slot_pattern(writer: usize, iteration: usize) -> Vec<u8> {
    (0..SLOT_LEN)
        .map(|k| (k * 17 + writer * 101 + iteration * 3) as u8)
        .collect()
}

/// Checks a snapshot of the shared log: whole records only, each writer's in order from 0.
/// Returns the number of records per writer.
fn check_log(log: &[u8]) -> Result<[usize; WRITERS], String> {
    if !log.len().is_multiple_of(RECORD_LEN) {
        return Err(format!(
            "log length {} is not a multiple of {RECORD_LEN}",
            log.len()
        ));
    }
    let mut next = [0usize; WRITERS];
    for (index, chunk) in log.chunks(RECORD_LEN).enumerate() {
        let Some((writer, iteration)) = parse_record(chunk) else {
            return Err(format!(
                "record {index} is torn: {:?}",
                chunk.escape_ascii().to_string()
            ));
        };
        if iteration != next[writer] {
            return Err(format!(
                "record {index}: writer {writer} iteration {iteration}, expected {}",
                next[writer]
            ));
        }
        next[writer] += 1;
    }
    Ok(next)
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// One writer: its private file, its slot of `slots`, and records appended to `log`.
fn write_worker(dir: &Path, writer: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let private = dir.join(format!("private-{writer}"));
    let opened = (
        OpenOptions::new().append(true).open(dir.join("log")),
        open_rw(&dir.join("slots")),
    );
    let (Ok(mut log), Ok(slots)) = opened else {
        return vec![format!("writer {writer}: open failed: {opened:?}")];
    };
    for iteration in 0..ITERATIONS {
        let pattern = private_pattern(writer, iteration);
        // Alternate a rewrite from scratch with an overwrite in place.
        let written = if iteration % 2 == 0 {
            fs::write(&private, &pattern)
        } else {
            open_rw(&private).and_then(|file| file.write_all_at(&pattern, 0))
        };
        match written.and_then(|()| fs::read(&private)) {
            Ok(read) if read == pattern => {}
            Ok(read) => problems.push(format!(
                "writer {writer} iteration {iteration}: private file reads back {} bytes that \
                 differ from what was written",
                read.len()
            )),
            Err(err) => problems.push(format!("writer {writer} iteration {iteration}: {err}")),
        }
        match log.write(&record(writer, iteration)) {
            Ok(RECORD_LEN) => {}
            Ok(short) => problems.push(format!("writer {writer}: short append of {short} bytes")),
            Err(err) => problems.push(format!("writer {writer}: append: {err}")),
        }
        let slot = slot_pattern(writer, iteration);
        let offset = (writer * SLOT_LEN) as u64;
        let mut read_back = vec![0; SLOT_LEN];
        let slot_io = slots
            .write_all_at(&slot, offset)
            .and_then(|()| slots.read_exact_at(&mut read_back, offset));
        match slot_io {
            Ok(()) if read_back == slot => {}
            Ok(()) => problems.push(format!(
                "writer {writer} iteration {iteration}: slot reads back other bytes"
            )),
            Err(err) => problems.push(format!("writer {writer}: slot: {err}")),
        }
        if problems.len() > 10 {
            problems.push(format!("writer {writer}: giving up"));
            break;
        }
    }
    problems
}

/// Re-reads the shared log until `done` appears, checking every snapshot.
fn read_worker(dir: &Path) -> Vec<String> {
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut problems = Vec::new();
    let mut passes = 0usize;
    loop {
        // Look for `done` before reading, so the last pass sees every record.
        let done = dir.join("done").exists();
        let mut log = Vec::new();
        let read = File::open(dir.join("log")).and_then(|mut file| file.read_to_end(&mut log));
        match read
            .map_err(|err| err.to_string())
            .and_then(|_| check_log(&log))
        {
            Ok(_) => {}
            Err(problem) => problems.push(format!("reader pass {passes}: {problem}")),
        }
        passes += 1;
        if done || problems.len() > 10 || Instant::now() > deadline {
            break;
        }
    }
    if passes < 2 {
        problems.push(format!("reader made only {passes} passes"));
    }
    problems
}

/// Runs the writers and the reader on a fresh mount with `args` and checks the end state.
fn run_shared_io(args: &[&str]) {
    let mut mount = Mount::start(args);
    let dir = mount.path().join("io");
    fs::create_dir(&dir).expect("mkdir io");
    fs::write(dir.join("log"), b"").expect("create log");
    fs::write(dir.join("slots"), vec![0; WRITERS * SLOT_LEN]).expect("create slots");

    let reader = Forked::spawn(None, || read_worker(&dir));
    let writers: Vec<Forked> = (0..WRITERS)
        .map(|writer| Forked::spawn(None, || write_worker(&dir, writer)))
        .collect();
    let watchdog = Watchdog::arm(daemon_pid(&mount), RUN_TIMEOUT);
    let mut problems: Vec<String> = writers.into_iter().flat_map(Forked::join).collect();
    fs::write(dir.join("done"), b"").expect("create done");
    problems.extend(reader.join());
    let fired = watchdog.disarm();
    assert!(
        !fired,
        "the run hung; the watchdog killed the daemon\n{}",
        problems.join("\n")
    );
    assert!(
        problems.is_empty(),
        "workers reported:\n{}",
        problems.join("\n")
    );

    let log = fs::read(dir.join("log")).expect("read log");
    let counts = check_log(&log).unwrap_or_else(|problem| panic!("final log: {problem}"));
    assert_eq!(
        counts, [ITERATIONS; WRITERS],
        "records per writer in the final log"
    );
    assert_eq!(log.len(), WRITERS * ITERATIONS * RECORD_LEN);
    // How interleaved the appends were: a run whose processes never overlapped would show
    // WRITERS - 1 switches. Printed, not asserted, as it depends on scheduling.
    let switches = log
        .chunks(RECORD_LEN)
        .zip(log.chunks(RECORD_LEN).skip(1))
        .filter(|(a, b)| a[1] != b[1])
        .count();
    eprintln!("{args:?}: writer switches in the log: {switches}");
    for writer in 0..WRITERS {
        let private = fs::read(dir.join(format!("private-{writer}"))).expect("read private");
        assert!(
            private == private_pattern(writer, ITERATIONS - 1),
            "private file of writer {writer} does not hold its last pattern"
        );
    }
    let slots = fs::read(dir.join("slots")).expect("read slots");
    for (writer, slot) in slots.chunks(SLOT_LEN).enumerate() {
        assert!(
            slot == slot_pattern(writer, ITERATIONS - 1),
            "slot {writer} does not hold its writer's last pattern"
        );
    }
    let stopped = mount.stop();
    assert!(
        stopped.unmounted && stopped.status.is_some_and(|status| status.success()),
        "btfuse-fuse did not exit 0 and unmount: {stopped:?}"
    );
}

fn daemon_pid(mount: &Mount) -> libc::pid_t {
    mount.daemon_pid().expect("the daemon runs")
}

#[test]
fn writers_and_a_reader_on_one_daemon_thread() {
    run_shared_io(&["--threads", "1", "--size", "64M"]);
}

#[test]
fn writers_and_a_reader_on_four_daemon_threads() {
    run_shared_io(&["--threads", "4", "--size", "64M"]);
}

/// One churner: creates `c<w>-<i>.tmp`, fills it, renames it to `c<w>-<i>`, unlinks its
/// previous file on odd iterations, and replaces its directory `d<w>-<i>` every iteration.
fn churn_worker(dir: &Path, worker: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |what: String, result: io::Result<()>| {
        if let Err(err) = result {
            problems.push(format!("churner {worker}: {what}: {err}"));
        }
    };
    for iteration in 0..ITERATIONS {
        let name = format!("c{worker}-{iteration:03}");
        let tmp = dir.join(format!("{name}.tmp"));
        check(
            format!("write {name}.tmp"),
            fs::write(&tmp, name.as_bytes()),
        );
        check(
            format!("rename {name}.tmp"),
            fs::rename(&tmp, dir.join(&name)),
        );
        if iteration % 2 == 1 {
            let previous = format!("c{worker}-{:03}", iteration - 1);
            check(
                format!("unlink {previous}"),
                fs::remove_file(dir.join(previous)),
            );
        }
        check(
            format!("mkdir d{worker}-{iteration:03}"),
            fs::create_dir(dir.join(format!("d{worker}-{iteration:03}"))),
        );
        if iteration > 0 {
            let previous = format!("d{worker}-{:03}", iteration - 1);
            check(
                format!("rmdir {previous}"),
                fs::remove_dir(dir.join(previous)),
            );
        }
    }
    problems
}

/// Lists the directory until `done` appears: no listing may hold a name twice or a name no
/// churner makes.
fn list_worker(dir: &Path, done: &Path) -> Vec<String> {
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut problems = Vec::new();
    let mut passes = 0usize;
    while !done.exists() && Instant::now() < deadline && problems.len() < 10 {
        passes += 1;
        let listed = common::read_dir_raw(dir, |_| {});
        let entries = match listed {
            Ok(entries) => entries,
            Err(err) => {
                problems.push(format!("listing {passes}: {err}"));
                continue;
            }
        };
        let mut seen = BTreeMap::new();
        for entry in &entries {
            *seen.entry(entry.name.clone()).or_insert(0usize) += 1;
        }
        for (name, count) in seen {
            let text = String::from_utf8_lossy(&name).into_owned();
            let known =
                text == "." || text == ".." || text.starts_with('c') || text.starts_with('d');
            if count > 1 || !known {
                problems.push(format!("listing {passes}: {text:?} appears {count} times"));
            }
        }
    }
    if passes < 2 {
        problems.push(format!("lister made only {passes} passes"));
    }
    problems
}

#[test]
fn concurrent_entry_churn_in_one_directory() {
    let mut mount = Mount::start(&["--threads", "4"]);
    let dir = mount.path().join("churn");
    let done = mount.path().join("done");
    fs::create_dir(&dir).expect("mkdir churn");

    let lister = Forked::spawn(None, || list_worker(&dir, &done));
    let churners: Vec<Forked> = (0..WRITERS)
        .map(|worker| Forked::spawn(None, || churn_worker(&dir, worker)))
        .collect();
    let watchdog = Watchdog::arm(daemon_pid(&mount), RUN_TIMEOUT);
    let mut problems: Vec<String> = churners.into_iter().flat_map(Forked::join).collect();
    fs::write(&done, b"").expect("create done");
    problems.extend(lister.join());
    let fired = watchdog.disarm();
    assert!(
        !fired,
        "the run hung; the watchdog killed the daemon\n{}",
        problems.join("\n")
    );
    assert!(
        problems.is_empty(),
        "workers reported:\n{}",
        problems.join("\n")
    );

    let mut expected: Vec<String> = (0..WRITERS)
        .flat_map(|worker| {
            let files = (1..ITERATIONS)
                .step_by(2)
                .map(move |i| format!("c{worker}-{i:03}"));
            files.chain([format!("d{worker}-{:03}", ITERATIONS - 1)])
        })
        .collect();
    expected.sort();
    let mut listed: Vec<String> = fs::read_dir(&dir)
        .expect("list churn")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    listed.sort();
    assert_eq!(listed, expected, "entries left in the directory");
    for name in listed.iter().filter(|name| name.starts_with('c')) {
        let contents = fs::read(dir.join(name)).expect("read survivor");
        assert_eq!(contents, name.as_bytes(), "contents of {name}");
    }
    let meta = fs::metadata(&dir).expect("stat churn");
    assert_eq!(meta.nlink(), 2 + WRITERS as u64, "nlink of the directory");
    assert_eq!(
        meta.size(),
        (expected.len() as u64 + 2) * 20,
        "size of the directory"
    );
    let stopped = mount.stop();
    assert!(
        stopped.unmounted && stopped.status.is_some_and(|status| status.success()),
        "btfuse-fuse did not exit 0 and unmount: {stopped:?}"
    );
}
