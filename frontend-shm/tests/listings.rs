//! A process under the preload keeps the directory listings it read whole: listing an
//! unchanged directory again sends the server no `Getdents`, and any change to the directory,
//! by this process or another, makes the next listing fetch it again. Counted by the server's
//! own metrics (`btfuse_operations_total{operation="getdents"}`), so the test sees the round
//! trips themselves, not only the names.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use btfuse_ring_client::Client;
use common::{Exposition, ShmDaemon, http_get, profile_dir};

/// `Getdents` requests the daemon has served.
fn getdents_served(daemon: &ShmDaemon) -> f64 {
    let response = http_get(daemon.metrics_address(), "/metrics", "text/plain").unwrap();
    Exposition::parse(&response.body)
        .find(
            "btfuse_operations_total",
            &[("frontend", "shm"), ("operation", "getdents")],
        )
        .map(|sample| sample.value)
        .sum()
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
    let mut python = Command::new("python3")
        .args(["-c", SCRIPT])
        .env("LD_PRELOAD", preload())
        .env("BTFUSE_SOCKET", daemon.socket())
        .env("BTFUSE_PREFIX", "/btfuse")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdout = std::io::BufReader::new(python.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut line = || {
        let mut text = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut text).unwrap();
        text.trim_end().to_owned()
    };
    for _ in 0..6 {
        lines.push(line());
    }
    // Five listings of an unchanged directory, then one after a change: each listing that
    // fetches takes two `Getdents` (the entries, then the empty batch that ends them). A
    // worker counts a request just after answering it: wait for the count to get there.
    let deadline = Instant::now() + Duration::from_secs(5);
    while getdents_served(&daemon) - before < 4.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(getdents_served(&daemon) - before, 4.0, "{lines:?}");
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
