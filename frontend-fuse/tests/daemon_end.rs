//! How programs on the ring fare when `btfuse-fuse` ends, each way it can end: killed with
//! `SIGKILL`, unmounted from outside with `umount`, or stopped with `SIGTERM`.
//!
//! In every case a preloaded shell loop reading a file of the mount (found with no `BTFUSE_*`
//! variable) must end with an error within a bound, never hang, and a ring client that was
//! connected must get `ENOTCONN`. A daemon that is stopped or unmounted must in addition
//! remove its socket and exit with status 0; a killed one leaves a dead mount, on which the
//! kernel answers `ENOTCONN`, and which the test unmounts.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Mount, Stopped, connect_ring, mounted_fstype, preloaded, ring_operations, wait_bounded,
};

/// How long a program may take to notice that the daemon is gone.
const NOTICE_BOUND: Duration = Duration::from_secs(10);

/// The status the loop exits with once a read has failed.
const LOOP_ENDED: i32 = 3;

/// A preloaded shell reading `dir/f` over and over until a read fails; killed (by pid) and
/// reaped on drop if it is still running.
struct ReadLoop {
    child: Child,
}

impl ReadLoop {
    fn start(dir: &Path) -> ReadLoop {
        let child = preloaded(&mut Command::new("sh"))
            .arg("-c")
            .arg(format!(
                "while cat \"$M/f\" > /dev/null; do :; done; exit {LOOP_ENDED}"
            ))
            .env("M", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the preloaded loop");
        ReadLoop { child }
    }

    fn running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("poll the preloaded loop")
            .is_none()
    }

    /// The loop's exit code, or a panic if it has not ended within [`NOTICE_BOUND`].
    fn ended(&mut self, what: &str) -> Option<i32> {
        let started = Instant::now();
        let status = wait_bounded(&mut self.child, NOTICE_BOUND)
            .unwrap_or_else(|| panic!("a preloaded program hung after the daemon was {what}"));
        eprintln!(
            "the loop ended {:?} after the daemon was {what}",
            started.elapsed()
        );
        status.code()
    }
}

impl Drop for ReadLoop {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A mount serving the ring at its default socket, a file `f` on it, a connected ring client
/// and a preloaded loop reading `f` that the daemon's metrics show is on the ring.
fn busy_mount() -> (Mount, btfuse_ring_client::Client, ReadLoop) {
    let mount = Mount::start(&["--metrics", "127.0.0.1:0"]);
    fs::write(mount.path().join("f"), b"data").expect("write through the mount");
    let ring = connect_ring(&mount.default_socket());
    assert_eq!(ring.read("/f").expect("read over the ring"), b"data");
    let before = ring_operations(&mount.metrics());
    let mut reader = ReadLoop::start(mount.path());
    let deadline = Instant::now() + NOTICE_BOUND;
    while ring_operations(&mount.metrics()) < before + 100 {
        assert!(reader.running(), "the loop runs while the daemon does");
        assert!(
            Instant::now() < deadline,
            "the preloaded loop does not use the ring"
        );
        thread::sleep(Duration::from_millis(20));
    }
    (mount, ring, reader)
}

/// Every call of a client whose daemon has ended fails with `ENOTCONN`: the first, on the
/// channel it had, and the next ones, which find no channel and try to open one.
fn assert_disconnected(ring: &btfuse_ring_client::Client) {
    let started = Instant::now();
    for call in ["first", "second", "third"] {
        let err = ring
            .metadata("/f")
            .expect_err("a ring call after the daemon ended");
        assert_eq!(
            err.raw_os_error(),
            Some(libc::ENOTCONN),
            "{call} call: {err}"
        );
    }
    assert!(started.elapsed() < NOTICE_BOUND);
}

/// A daemon that ended cleanly: exit status 0, mount gone, socket removed, the preloaded loop
/// ended by a failing `cat` (the daemon was `how`), and the ring client disconnected.
fn assert_clean_end(
    mount: &Mount,
    stopped: &Stopped,
    socket: &Path,
    (reader, how): (&mut ReadLoop, &str),
    ring: &btfuse_ring_client::Client,
) {
    assert!(
        stopped.status.is_some_and(|s| s.success()) && stopped.unmounted,
        "{stopped:?}\n{}",
        mount.output()
    );
    assert!(!socket.exists(), "the socket is removed");
    assert_eq!(
        reader.ended(how),
        Some(LOOP_ENDED),
        "cat failed and the loop ended"
    );
    assert_disconnected(ring);
}

#[test]
fn a_killed_daemon_gives_errors_not_hangs_and_leaves_a_dead_mount() {
    let (mut mount, ring, mut reader) = busy_mount();
    let socket = mount.default_socket();
    let stopped = mount.stop_with(libc::SIGKILL);
    assert!(
        stopped.status.is_some_and(|s| !s.success()) && !stopped.unmounted,
        "{stopped:?}"
    );
    assert_eq!(
        reader.ended("killed"),
        Some(LOOP_ENDED),
        "cat failed and the loop ended"
    );
    assert_disconnected(&ring);

    // The kernel side of a dead FUSE daemon.
    let err = fs::metadata(mount.path().join("f")).expect_err("stat on a dead mount");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    // Its socket is still there, answered by no one: a client gets a refusal at once.
    let refused = std::os::unix::net::UnixStream::connect(&socket)
        .expect_err("connect to a dead daemon's socket");
    assert_eq!(
        refused.raw_os_error(),
        Some(libc::ECONNREFUSED),
        "{refused}"
    );

    // A lazy unmount clears it (and the harness would, if this test had failed earlier).
    let status = Command::new("umount")
        .arg("-l")
        .arg(mount.path())
        .status()
        .expect("run umount -l");
    assert!(status.success(), "umount -l: {status}");
    assert_eq!(mounted_fstype(mount.path()), None);
}

#[test]
fn an_unmount_from_outside_ends_the_daemon_and_its_ring() {
    let (mut mount, ring, mut reader) = busy_mount();
    let socket = mount.default_socket();
    let status = Command::new("umount")
        .arg(mount.path())
        .status()
        .expect("run umount");
    assert!(status.success(), "umount: {status}");
    let stopped = mount.wait_for_exit();
    assert_clean_end(&mount, &stopped, &socket, (&mut reader, "unmounted"), &ring);
}

#[test]
fn sigterm_disconnects_ring_clients_removes_the_socket_and_unmounts() {
    let (mut mount, ring, mut reader) = busy_mount();
    let socket = mount.default_socket();
    let stopped = mount.stop();
    assert_clean_end(&mount, &stopped, &socket, (&mut reader, "stopped"), &ring);
}
