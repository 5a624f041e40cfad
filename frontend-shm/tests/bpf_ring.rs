//! `btfuse-shm serve --bpf` with clients of the ring alone (no kernel mount anywhere):
//!
//! - `error_inject` fails exactly the opens of `inject*` names with `EIO`; every other call
//!   answers as it does on a daemon without the program, step for step;
//! - `audit`'s counters of unlinks and renames reach `/metrics`;
//! - a program that reads out of bounds fails only its opens, counted as faults, and the
//!   daemon keeps serving; a refused program stops the start with its name and the reason;
//! - `SIGHUP` swaps the programs while a connected client stays connected;
//! - two `--bpf` programs both run, in order, and the helpers log (with the clock's answer)
//!   and count.

mod common;

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::Command;

use btfuse_ring_client::Client;
use btfuse_testkit::bpf::{compile, example, test_program};
use common::{Exposition, START_TIMEOUT, ShmDaemon, http_get};

fn daemon(programs: &[&Path]) -> ShmDaemon {
    let mut extra = Vec::new();
    for program in programs {
        extra.push(OsStr::new("--bpf"));
        extra.push(program.as_os_str());
    }
    ShmDaemon::start_with("64M", &extra)
}

fn metrics(daemon: &ShmDaemon) -> Exposition {
    let response = http_get(daemon.metrics_address(), "/metrics", "text/plain").unwrap();
    Exposition::parse(&response.body)
}

fn outcome<T: std::fmt::Debug>(result: io::Result<T>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(e) => format!("errno {:?}", e.raw_os_error()),
    }
}

/// Calls of one client, each answer written down.
fn steps(client: &Client) -> Vec<String> {
    vec![
        outcome(client.create_dir("/d")),
        outcome(client.write("/plain", b"a")),
        outcome(client.write("/inject_x", b"b")),
        outcome(client.write("/d/inject.log", b"c")),
        outcome(client.write("/d/xinject", b"d")),
        outcome(client.read("/plain")),
        outcome(client.rename("/plain", "/d/inject_y")),
        outcome(client.metadata("/d/inject_y").map(|m| m.len())),
        outcome(client.read("/d/inject_y")),
        outcome(client.rename("/d/inject_y", "/plain2")),
        outcome(client.read("/plain2")),
        outcome(client.symlink("plain2", "/inject_link")),
        outcome(client.read_link("/inject_link")),
        outcome(client.create_dir("/inject_dir")),
        outcome(client.remove_file("/inject_link")),
        outcome(client.read_dir("/").map(|entries| {
            let mut names: Vec<_> = entries.into_iter().map(|e| e.name).collect();
            names.sort();
            names
        })),
    ]
}

#[test]
fn error_inject_fails_exactly_the_inject_opens_over_the_ring() {
    let plain = daemon(&[]);
    let reference = steps(&Client::connect(plain.socket()).unwrap());
    let inject = compile(&example("error_inject"), &[]);
    let injected = daemon(&[&inject]);
    let got = steps(&Client::connect(injected.socket()).unwrap());
    let eio = format!("errno Some({})", libc::EIO);
    // Steps 2, 3 (creates of inject names) and 8 (the open of a file renamed to one) fail;
    // the listing lacks inject_x; nothing else differs.
    let mut expected = reference.clone();
    expected[2] = eio.clone();
    expected[3] = eio.clone();
    expected[8] = eio;
    expected[15] = expected[15].replace("\"inject_x\", ", "");
    assert_ne!(expected[15], reference[15]);
    assert_eq!(got, expected);
    let m = metrics(&injected);
    assert_eq!(
        m.value(
            "btfuse_bpf_refused_total",
            &[("program", program_name(&inject))]
        ),
        3.0
    );
}

fn program_name(object: &Path) -> &str {
    object.file_stem().unwrap().to_str().unwrap()
}

#[test]
fn audit_counters_reach_the_metrics() {
    let object = compile(&example("audit"), &[]);
    let audit = object.with_file_name("audit.o");
    std::fs::copy(&object, &audit).unwrap();
    let daemon = daemon(&[&audit]);
    let client = Client::connect(daemon.socket()).unwrap();
    for i in 0..4 {
        client.write(format!("/f{i}"), b"x").unwrap();
    }
    client.remove_file("/f0").unwrap();
    client.remove_file("/f1").unwrap();
    client.rename("/f2", "/g2").unwrap();
    assert!(client.remove_file("/missing").is_err());
    let m = metrics(&daemon);
    let uid = own_uid();
    let value = |counter| {
        m.value(
            "btfuse_bpf_counter_total",
            &[("program", "audit"), ("counter", counter), ("key", &uid)],
        )
    };
    assert_eq!(value("unlinks"), 3.0);
    assert_eq!(value("renames"), 1.0);
    assert!(
        m.find("btfuse_bpf_counter_total", &[("counter", "rmdirs")])
            .next()
            .is_none()
    );
}

/// The uid this test runs as, from `/proc/self/status`.
fn own_uid() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().to_owned()
}

#[test]
fn an_out_of_bounds_program_fails_only_its_opens_and_a_refused_one_stops_the_start() {
    let object = compile(&test_program("out_of_bounds"), &[]);
    let daemon = daemon(&[&object]);
    let client = Client::connect(daemon.socket()).unwrap();
    for _ in 0..5 {
        assert_eq!(
            client.read("/").map(drop).unwrap_err().raw_os_error(),
            Some(libc::EIO)
        );
    }
    client.create_dir("/d").unwrap();
    assert!(client.metadata("/d").unwrap().is_dir());
    let m = metrics(&daemon);
    assert_eq!(
        m.value(
            "btfuse_bpf_faults_total",
            &[("program", program_name(&object))]
        ),
        5.0
    );
    assert!(daemon.process.output().contains("answered EIO"));
    let looping = compile(&test_program("loop"), &[]);
    let output = Command::new(env!("CARGO_BIN_EXE_btfuse-shm"))
        .args(["serve", "--socket", "/nonexistent/never.sock", "--bpf"])
        .arg(&looping)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "btfuse-shm: bpf program {}: refused: insn #",
        looping.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn sighup_reloads_while_a_client_stays_connected() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.o");
    std::fs::copy(compile(&example("error_inject"), &[]), &live).unwrap();
    let mut daemon = daemon(&[&live]);
    let client = Client::connect(daemon.socket()).unwrap();
    assert_eq!(
        client.write("/inject_1", b"x").unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
    std::fs::copy(compile(&test_program("trivial"), &[]), &live).unwrap();
    daemon.process.signal(libc::SIGHUP);
    daemon.process.wait_for("the reload", START_TIMEOUT, |out| {
        out.contains("SIGHUP: 1 bpf programs reloaded")
            .then_some(())
    });
    client.write("/inject_1", b"now").unwrap();
    assert_eq!(client.read("/inject_1").unwrap(), b"now");
    assert!(daemon.process.is_running());
}

#[test]
fn programs_given_twice_run_in_order_and_their_helpers_log_and_count() {
    let log_mkdir = compile(&test_program("log_mkdir"), &[]);
    let inject = compile(&example("error_inject"), &[]);
    let daemon = daemon(&[&log_mkdir, &inject]);
    let client = Client::connect(daemon.socket()).unwrap();
    client.create_dir_mode("/d", 0o750).unwrap();
    client.create_dir_mode("/e", 0o750).unwrap();
    client.create_dir_mode("/f", 0o700).unwrap();
    // The second program still refuses what it selects.
    assert_eq!(
        client.write("/inject_z", b"x").unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
    let name = program_name(&log_mkdir);
    // btfuse_log: the program's name, the tag, the uid, and 1 from the clock helper.
    let line = format!("bpf {name}: mkdir {} 1", own_uid());
    let output = daemon.process.output();
    assert_eq!(output.matches(&line).count(), 3, "{output}");
    let m = metrics(&daemon);
    let mkdirs = |mode: &str| {
        m.value(
            "btfuse_bpf_counter_total",
            &[("program", name), ("counter", "mkdirs"), ("key", mode)],
        )
    };
    assert_eq!(mkdirs("488"), 2.0, "mode 0750");
    assert_eq!(mkdirs("448"), 1.0, "mode 0700");
    assert_eq!(
        m.value("btfuse_bpf_refused_total", &[("program", name)]),
        0.0
    );
    assert_eq!(
        m.value(
            "btfuse_bpf_refused_total",
            &[("program", program_name(&inject))]
        ),
        1.0
    );
}
