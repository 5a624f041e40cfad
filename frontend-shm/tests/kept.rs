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

/// Opens, reads and closes `/btfuse/d/f` as a preloaded Python does, as an unprivileged user:
/// ten times, then three or two times after each change another client makes (each after a
/// line on stdin): new bytes written, another file renamed over it, its mode taken away from
/// others. Prints what each read got, or the error.
const OPENS: &str = r#"
import os, sys
os.setgroups([])
os.setgid(4001)
os.setuid(4001)
def show():
    try:
        fd = os.open("/btfuse/d/f", os.O_RDONLY)
    except OSError as e:
        print(e.strerror, flush=True)
        return
    data = os.read(fd, 100)
    os.close(fd)
    print(data.decode(), flush=True)
sys.stdin.readline()
for _ in range(10):
    show()
sys.stdin.readline()  # another client writes f
for _ in range(3):
    show()
sys.stdin.readline()  # another client renames g over f
for _ in range(3):
    show()
sys.stdin.readline()  # another client makes f 0600
for _ in range(2):
    show()
"#;

#[test]
fn an_unchanged_file_is_opened_again_without_a_round_trip() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let daemon = ShmDaemon::start("64M");
    // Reachable by the unprivileged process: whatever it is refused is the server's refusal.
    for (path, mode) in [
        (daemon.socket(), 0o666),
        (daemon.socket().parent().unwrap(), 0o755),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let setup = Client::connect(daemon.socket()).unwrap();
    setup.create_dir("/d").unwrap();
    setup.write("/d/f", b"first").unwrap();
    setup.set_permissions("/d/f", 0o644).unwrap();
    // The opens the server served, and the questions about paths (one path's attributes, or
    // a directory's names) it answered.
    let counts = || {
        (
            served(&daemon, "open"),
            served(&daemon, "statstamped") + served(&daemon, "statdir"),
        )
    };
    let mut python = python(&daemon, OPENS);
    let mut stdin = python.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(python.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut served_by_phase = Vec::new();
    let mut phase = |change: &dyn Fn(), shows: usize| {
        change();
        // Reads from a later clock tick than the change: one in the same tick as a write
        // would move the access time again (relatime: not later than the change time).
        std::thread::sleep(Duration::from_millis(50));
        let before = counts();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        lines.extend((0..shows).map(|_| next_line(&mut stdout)));
        // A worker counts a request just after answering it.
        std::thread::sleep(Duration::from_millis(50));
        let after = counts();
        served_by_phase.push((after.0 - before.0, after.1 - before.1));
    };
    phase(&|| (), 10);
    phase(&|| setup.write("/d/f", b"second").unwrap(), 3);
    phase(
        &|| {
            setup.write("/d/g", b"third").unwrap();
            setup.set_permissions("/d/g", 0o644).unwrap();
            setup.rename("/d/g", "/d/f").unwrap();
        },
        3,
    );
    phase(&|| setup.set_permissions("/d/f", 0o600).unwrap(), 2);
    drop(stdin);
    let status = python.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut want = vec!["first"; 10];
    want.extend(["second"; 3]);
    want.extend(["third"; 3]);
    want.extend(["Permission denied"; 2]);
    assert_eq!(lines, want);
    // Ten opens: the first, then one asked after a question (the path's description was
    // parked with no answer to vouch for it); the other eight take the parked description.
    // After new bytes and after a rename over the file: a question and an open whose read
    // moves the access time (the file changed since it was last read), so another of each;
    // the third open takes the description parked. After the mode change, both opens are
    // asked and refused: the second finds an answer that stands (the first's question), but
    // one kept after the parked description was opened, which vouches for nothing that open
    // checked, so it asks again.
    assert_eq!(
        served_by_phase,
        [(2.0, 1.0), (2.0, 2.0), (2.0, 2.0), (2.0, 2.0)]
    );
}
