//! A process under the preload keeps the directory listings it read whole and the answers to
//! `stat` of paths: listing an unchanged directory again sends the server no `Getdents`, a
//! `stat` of an unchanged path no `StatStamped`, and any change to what they were made from,
//! by this process or another, makes the next one ask again. Counted by the server's own
//! metrics (`btfuse_operations_total{operation=...}`), so the tests see the round trips
//! themselves, not only the answers.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use btfuse_ring_client::Client;
use common::{Exposition, ShmDaemon, http_get, profile_dir};

/// Requests of kind `operation` (the ring's name, in lower case) the daemon has served.
fn served(daemon: &ShmDaemon, operation: &str) -> f64 {
    let response = http_get(daemon.metrics_address(), "/metrics", "text/plain").unwrap();
    Exposition::parse(&response.body)
        .find(
            "btfuse_operations_total",
            &[("frontend", "shm"), ("operation", operation)],
        )
        .map(|sample| sample.value)
        .sum()
}

/// `Getdents` requests the daemon has served.
fn getdents_served(daemon: &ShmDaemon) -> f64 {
    served(daemon, "getdents")
}

/// Waits until `count` reaches `want` (a worker counts a request just after answering it),
/// for at most five seconds; returns the count then.
fn settled(count: impl Fn() -> f64, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    while count() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    count()
}

/// Runs preloaded Python `script` on the ring alone (`/btfuse`), its stdin piped.
fn python(daemon: &ShmDaemon, script: &str) -> std::process::Child {
    Command::new("python3")
        .args(["-c", script])
        .env("LD_PRELOAD", preload())
        .env("BTFUSE_SOCKET", daemon.socket())
        .env("BTFUSE_PREFIX", "/btfuse")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3")
}

/// Reads the next line `child` prints, without its newline.
fn next_line(stdout: &mut impl std::io::BufRead) -> String {
    let mut text = String::new();
    stdout.read_line(&mut text).unwrap();
    text.trim_end().to_owned()
}

fn preload() -> PathBuf {
    let library = profile_dir().join("libbtfuse_preload.so");
    assert!(
        library.is_file(),
        "{} is missing: cargo does not build it for btfuse-shm's tests; build it first with \
         `cargo build -p btfuse-preload` (with the same profile as the tests)",
        library.display()
    );
    library
}

/// Lists `/btfuse/d` as a preloaded Python does: five times, then once more after each of a
/// file made by this process, one made by another client, and one removed, printing each
/// listing (sorted) on a line.
const SCRIPT: &str = r#"
import os, sys
d = "/btfuse/d"
def show():
    print(" ".join(sorted(os.listdir(d))), flush=True)
for _ in range(5):
    show()
open(d + "/mine", "w").close()
show()
sys.stdin.readline()  # another client makes /d/theirs
show()
os.unlink(d + "/one")
show()
show()
"#;

#[test]
fn an_unchanged_directory_is_listed_again_without_a_round_trip() {
    let daemon = ShmDaemon::start("64M");
    let setup = Client::connect(daemon.socket()).unwrap();
    setup.create_dir("/d").unwrap();
    setup.write("/d/one", b"1").unwrap();
    setup.write("/d/two", b"2").unwrap();
    let before = getdents_served(&daemon);
    let mut python = python(&daemon, SCRIPT);
    let mut stdout = std::io::BufReader::new(python.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut line = || next_line(&mut stdout);
    for _ in 0..6 {
        lines.push(line());
    }
    // Five listings of an unchanged directory, then one after a change: each listing that
    // fetches takes two `Getdents` (the entries, then the empty batch that ends them).
    let fetched = settled(|| getdents_served(&daemon) - before, 4.0);
    assert_eq!(fetched, 4.0, "{lines:?}");
    setup.write("/d/theirs", b"3").unwrap();
    {
        use std::io::Write;
        let mut stdin = python.stdin.take().unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    for _ in 0..3 {
        lines.push(line());
    }
    let status = python.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        lines,
        [
            "one two",
            "one two",
            "one two",
            "one two",
            "one two",
            "mine one two",
            "mine one theirs two",
            "mine theirs two",
            "mine theirs two",
        ]
    );
    // One fetch for the other client's file, one after the unlink; the last listing is kept.
    assert_eq!(getdents_served(&daemon) - before, 8.0);
}

/// Stats `/btfuse/d/e/f` and `/btfuse/d/e/new` as a preloaded Python does: five times, then
/// again after each change (by this process, then by another client after a line on stdin),
/// printing each answer on a line.
const STATS: &str = r#"
import os, sys
f, new = "/btfuse/d/e/f", "/btfuse/d/e/new"
def show(path):
    try:
        st = os.stat(path)
        print(oct(st.st_mode), st.st_nlink, st.st_size, flush=True)
    except OSError as e:
        print(e.strerror, flush=True)
for _ in range(5):
    show(f)
for _ in range(3):
    show(new)
os.chmod(f, 0o600)
show(f)
show(f)
sys.stdin.readline()  # another client: chmod of /d/e, write to f, /d/e/new made
show(f)
show(new)
show(new)
"#;

#[test]
fn an_unchanged_path_is_stated_again_without_a_round_trip() {
    let daemon = ShmDaemon::start("64M");
    let setup = Client::connect(daemon.socket()).unwrap();
    setup.create_dir_all("/d/e").unwrap();
    setup.write("/d/e/f", b"1").unwrap();
    // Questions the server answered: one path (`StatStamped`) or a directory's names
    // (`StatDir`, asked at the second question about a directory).
    let asked = || served(&daemon, "statstamped") + served(&daemon, "statdir");
    let before = asked();
    let mut python = python(&daemon, STATS);
    let mut stdout = std::io::BufReader::new(python.stdout.take().unwrap());
    let mut lines: Vec<String> = (0..10).map(|_| next_line(&mut stdout)).collect();
    // One for f; the listing of /d/e for the missing name (the second question there), which
    // answers it twice more; one for f after this process's chmod (its entry is stale).
    assert_eq!(settled(|| asked() - before, 3.0), 3.0, "{lines:?}");
    setup.set_permissions("/d/e", 0o700).unwrap();
    setup.write("/d/e/f", b"longer").unwrap();
    setup.write("/d/e/new", b"").unwrap();
    {
        use std::io::Write;
        python.stdin.take().unwrap().write_all(b"\n").unwrap();
    }
    lines.extend((0..3).map(|_| next_line(&mut stdout)));
    assert!(python.wait().unwrap().success());
    assert_eq!(
        lines,
        [
            "0o100666 1 1",
            "0o100666 1 1",
            "0o100666 1 1",
            "0o100666 1 1",
            "0o100666 1 1",
            "No such file or directory",
            "No such file or directory",
            "No such file or directory",
            "0o100600 1 1",
            "0o100600 1 1",
            "0o100600 1 6",
            "0o100666 1 0",
            "0o100666 1 0",
        ]
    );
    // The other client's changes move /d/e's stamp: its listing asked again (the second
    // question there since the last), which answers f and the new name.
    assert_eq!(asked() - before, 4.0);
}
