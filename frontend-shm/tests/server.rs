//! The ring server as a real process: every client operation against the results a kernel
//! filesystem gives, many clients and threads at once, a client killed mid-request, and the
//! server killed under a waiting client.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use btfuse_core::{AccessMask, FileType, RenameMode, TimeSet, Timestamp};
use btfuse_ring_client::{Client, OpenOptions};

/// A `btfuse-shm serve` process on a socket in a temporary directory, killed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(size: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ring.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_btfuse-shm"))
            .args(["serve", "--threads", "2", "--size", size, "--socket"])
            .arg(&socket)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start btfuse-shm");
        // The socket file appears at bind, a moment before the server listens: until then a
        // connection is refused.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "server did not start listening");
            std::thread::sleep(Duration::from_millis(10));
        }
        Daemon {
            child,
            socket,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect")
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill on the pid of a child this test started and has not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn errno_of<T: std::fmt::Debug>(result: std::io::Result<T>) -> i32 {
    result
        .expect_err("expected an error")
        .raw_os_error()
        .expect("an errno")
}

#[test]
fn every_client_operation_behaves_like_a_kernel_filesystem() {
    let daemon = Daemon::start("64M");
    let c = daemon.client();

    // Directories.
    c.create_dir("/d").unwrap();
    assert_eq!(errno_of(c.create_dir("/d")), libc::EEXIST);
    c.create_dir_all("/d/e/f").unwrap();
    assert!(c.metadata("/d/e/f").unwrap().is_dir());
    assert_eq!(errno_of(c.create_dir("/missing/x")), libc::ENOENT);

    // Files: create, write, read back, seek, positional I/O.
    let mut f = c.create("/d/file").unwrap();
    f.write_all(b"hello, ring").unwrap();
    assert_eq!(f.stream_position().unwrap(), 11);
    assert_eq!(f.write_at(b"RING", 7).unwrap(), 4);
    drop(f);
    assert_eq!(c.read("/d/file").unwrap(), b"hello, RING");
    let mut f = c.open("/d/file").unwrap();
    let mut buf = [0u8; 5];
    f.seek(SeekFrom::Start(7)).unwrap();
    f.read_exact(&mut buf[..4]).unwrap();
    assert_eq!(&buf[..4], b"RING");
    assert_eq!(f.read(&mut buf).unwrap(), 0, "end of file");
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), 5);
    assert_eq!(&buf, b"hello");
    assert_eq!(
        errno_of((&f).write(b"x")),
        libc::EBADF,
        "read-only description"
    );
    let meta = f.metadata().unwrap();
    assert_eq!((meta.len(), meta.file_type()), (11, FileType::RegularFile));
    drop(f);

    // Large data crosses the channel in pieces of at most 1 MiB.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    c.write("/big", &big).unwrap();
    assert_eq!(c.read("/big").unwrap(), big);
    assert_eq!(c.metadata("/big").unwrap().len(), big.len() as u64);

    // Append descriptions write at the end, whatever the offset.
    let mut a = OpenOptions::new().append(true).open(&c, "/d/file").unwrap();
    a.seek(SeekFrom::Start(0)).unwrap();
    a.write_all(b"!").unwrap();
    drop(a);
    assert_eq!(c.read("/d/file").unwrap(), b"hello, RING!");

    // Exclusive creation, truncation, O_DIRECTORY, O_NOFOLLOW.
    let excl = OpenOptions::new().write(true).create_new(true).clone();
    assert_eq!(errno_of(excl.open(&c, "/d/file")), libc::EEXIST);
    c.truncate("/d/file", 5).unwrap();
    assert_eq!(c.read("/d/file").unwrap(), b"hello");
    let dir_only = OpenOptions::new().read(true).directory(true).clone();
    assert_eq!(errno_of(dir_only.open(&c, "/d/file")), libc::ENOTDIR);
    assert_eq!(errno_of(c.create("/d")), libc::EISDIR);

    // Symbolic and hard links.
    c.symlink("file", "/d/link").unwrap();
    assert_eq!(c.read_link("/d/link").unwrap(), Path::new("file"));
    assert!(c.symlink_metadata("/d/link").unwrap().is_symlink());
    assert_eq!(c.read("/d/link").unwrap(), b"hello");
    let nofollow = OpenOptions::new().read(true).nofollow(true).clone();
    assert_eq!(errno_of(nofollow.open(&c, "/d/link")), libc::ELOOP);
    assert_eq!(errno_of(c.read_link("/d/file")), libc::EINVAL);
    c.hard_link("/d/file", "/d/hard").unwrap();
    assert_eq!(c.metadata("/d/file").unwrap().attr.nlink, 2);

    // Renames, with renameat2 flags.
    c.rename("/d/hard", "/d/moved").unwrap();
    assert_eq!(errno_of(c.metadata("/d/hard")), libc::ENOENT);
    c.write("/d/other", b"other").unwrap();
    assert_eq!(
        errno_of(c.rename_with("/d/moved", "/d/other", RenameMode::NoReplace)),
        libc::EEXIST
    );
    c.rename_with("/d/moved", "/d/other", RenameMode::Exchange)
        .unwrap();
    assert_eq!(c.read("/d/other").unwrap(), b"hello");
    assert_eq!(c.read("/d/moved").unwrap(), b"other");

    // Attributes.
    c.set_permissions("/d/other", 0o640).unwrap();
    assert_eq!(c.metadata("/d/other").unwrap().mode() & 0o7777, 0o640);
    c.chown("/d/other", Some(1234), None).unwrap();
    assert_eq!(c.metadata("/d/other").unwrap().attr.uid, 1234);
    let t = Timestamp {
        secs: 1_000_000_000,
        nanos: 5,
    };
    c.set_times("/d/other", TimeSet::At(t), TimeSet::Omit)
        .unwrap();
    assert_eq!(c.metadata("/d/other").unwrap().attr.atime, t);
    c.access("/d/other", AccessMask::READ).unwrap();

    // Listing.
    let mut names: Vec<_> = c
        .read_dir("/d")
        .unwrap()
        .into_iter()
        .map(|e| e.name.into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["e", "file", "link", "moved", "other"]);

    // Removal.
    assert_eq!(errno_of(c.remove_dir("/d")), libc::ENOTEMPTY);
    assert_eq!(errno_of(c.remove_file("/d/e")), libc::EISDIR);
    assert_eq!(errno_of(c.remove_dir("/d/file")), libc::ENOTDIR);
    c.remove_file("/d/link").unwrap();
    c.remove_dir("/d/e/f").unwrap();
    assert_eq!(errno_of(c.metadata("/d/link")), libc::ENOENT);

    // dup shares the offset.
    let mut f = c.open("/d/other").unwrap();
    let mut g = f.try_clone().unwrap();
    let mut two = [0u8; 2];
    f.read_exact(&mut two).unwrap();
    g.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"ll");

    // Bad paths fail like the kernel's.
    assert_eq!(errno_of(c.metadata("")), libc::ENOENT);
    let long = format!("/{}", "n".repeat(300));
    assert_eq!(errno_of(c.metadata(&long)), libc::ENAMETOOLONG);
    let stats = c.statfs().unwrap();
    assert!(stats.blocks > 0);
}

/// The place a path leads to when its walk leaves the tree, from the client's error.
fn left_tree<T: std::fmt::Debug>(result: std::io::Result<T>) -> (PathBuf, u32) {
    let error = result.expect_err("expected an error");
    let left = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<btfuse_ring_client::LeftTree>())
        .unwrap_or_else(|| panic!("not a walk out of the tree: {error}"));
    (left.path.clone(), left.links)
}

#[test]
fn paths_that_leave_the_tree_are_a_clear_error_and_change_nothing() {
    let daemon = Daemon::start("16M");
    let c = daemon.client();
    c.create_dir("/d").unwrap();
    c.symlink("/etc/hostname", "/host").unwrap();
    c.symlink("../../elsewhere", "/d/up").unwrap();
    let out = |p: &str, links| (PathBuf::from(p), links);
    assert_eq!(left_tree(c.read("/host")), out("/etc/hostname", 1));
    assert_eq!(left_tree(c.metadata("/d/up/x")), out("../elsewhere/x", 1));
    assert_eq!(left_tree(c.metadata("/..")), out("..", 0));
    assert_eq!(
        left_tree(c.write("/host/../new", b"x")),
        out("/etc/hostname/../new", 1)
    );
    assert_eq!(
        left_tree(c.rename("/d", "/d/up/d")),
        out("../elsewhere/d", 1)
    );
    assert!(c.symlink_metadata("/host").unwrap().is_symlink());
    assert!(c.metadata("/d").unwrap().is_dir());
    let message = c.read("/host").unwrap_err().to_string();
    assert!(message.contains("/etc/hostname"), "{message}");
}

#[test]
fn the_socket_is_private_and_a_second_server_is_refused() {
    let daemon = Daemon::start("16M");
    let meta = std::fs::symlink_metadata(&daemon.socket).unwrap();
    assert!(meta.file_type().is_socket());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let out = Command::new(env!("CARGO_BIN_EXE_btfuse-shm"))
        .args(["serve", "--size", "16M", "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use"), "{stderr}");
    // The first server still answers.
    daemon.client().statfs().unwrap();
}

#[test]
fn a_stale_socket_is_replaced_and_sigterm_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let mut child = Command::new(env!("CARGO_BIN_EXE_btfuse-shm"))
        .args(["serve", "--size", "16M", "--socket"])
        .arg(&socket)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let client = loop {
        if let Ok(c) = Client::connect(&socket) {
            break c;
        }
        assert!(Instant::now() < deadline, "server never answered");
        std::thread::sleep(Duration::from_millis(20));
    };
    client.write("/x", b"1").unwrap();
    // SAFETY: kill on the pid of a child this test started and has not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "socket removed at shutdown");
    assert_eq!(errno_of(client.read("/x")), libc::ENOTCONN);
}

#[test]
fn many_clients_and_threads_at_once() {
    let daemon = Daemon::start("256M");
    let shared_client = daemon.client();
    shared_client
        .write("/shared", vec![0u8; 64 * 1024])
        .unwrap();
    let mut threads = Vec::new();
    for t in 0..8u8 {
        // Half the threads share one client (one session, several channels); half have their own.
        let c = if t % 2 == 0 {
            shared_client.clone()
        } else {
            daemon.client()
        };
        threads.push(std::thread::spawn(move || {
            let own = format!("/own{t}");
            for round in 0..200u32 {
                let data = vec![t.wrapping_add(round as u8); 4096];
                c.write(&own, &data).unwrap();
                assert_eq!(c.read(&own).unwrap(), data);
                // Each thread owns one 4 KiB slice of the shared file.
                let f = OpenOptions::new().write(true).open(&c, "/shared").unwrap();
                f.write_at(&data, u64::from(t) * 4096).unwrap();
            }
            t
        }));
    }
    for thread in threads {
        thread.join().unwrap();
    }
    let shared = shared_client.read("/shared").unwrap();
    for t in 0..8u8 {
        let slice = &shared[usize::from(t) * 4096..usize::from(t + 1) * 4096];
        assert!(slice.iter().all(|&b| b == t.wrapping_add(199)), "slice {t}");
    }
}

#[test]
fn more_threads_than_channels_share_them_without_losing_any() {
    // 40 threads on one client: at most MAX_CHANNELS channels, so threads wait for channels
    // given back by others, through the pool and its fast slot alike.
    let daemon = Daemon::start("64M");
    let client = daemon.client();
    client.write("/f", b"data").unwrap();
    let threads: Vec<_> = (0..40u32)
        .map(|t| {
            let c = client.clone();
            std::thread::spawn(move || {
                for round in 0..300u32 {
                    assert_eq!(
                        c.metadata("/f").unwrap().len(),
                        4,
                        "thread {t} round {round}"
                    );
                    let f = c.open("/f").unwrap();
                    let mut buf = [0u8; 8];
                    assert_eq!(f.read_at(&mut buf, 0).unwrap(), 4);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for thread in threads {
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "a thread waits for a channel forever"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().unwrap();
    }
    assert!(client.private_fds().len() <= btfuse_ring_client::MAX_CHANNELS);
}

/// Re-runs this test binary as a client process doing `role`.
fn spawn_client(daemon: &Daemon, role: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "client_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BTFUSE_TEST_ROLE", role)
        .env("BTFUSE_TEST_SOCKET", &daemon.socket)
        .spawn()
        .unwrap()
}

/// Not a test on its own: the body of the client processes the other tests start.
#[test]
fn client_process() {
    let (Ok(role), Ok(socket)) = (
        std::env::var("BTFUSE_TEST_ROLE"),
        std::env::var("BTFUSE_TEST_SOCKET"),
    ) else {
        return;
    };
    if role == "nobody" {
        // SAFETY: plain identity changes in this single-purpose child process.
        unsafe {
            assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
            assert_eq!(libc::setgid(65534), 0);
            assert_eq!(libc::setuid(65534), 0);
        }
    }
    let c = Client::connect(&socket).unwrap();
    match role.as_str() {
        "hold-unlinked" => {
            // Holds 16 MiB in a file that has no name, then writes forever.
            let mut f = c.create("/held").unwrap();
            c.remove_file("/held").unwrap();
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..16 {
                f.write_all(&chunk).unwrap();
            }
            c.write("/ready", b"").unwrap();
            loop {
                f.write_at(&chunk, 0).unwrap();
            }
        }
        "nobody" => {
            // Runs as nobody: switched before connecting, so that the kernel reports that
            // identity to the server (`SO_PEERCRED`), whatever the client might claim.
            c.create_dir("/pub/mine").unwrap();
            let meta = c.metadata("/pub/mine").unwrap();
            assert_eq!((meta.attr.uid, meta.attr.gid), (65534, 65534));
            assert_eq!(errno_of(c.metadata("/private/secret")), libc::EACCES);
            assert_eq!(errno_of(c.create_dir("/private/x")), libc::EACCES);
            assert_eq!(errno_of(c.write("/pub/rootfile", b"x")), libc::EACCES);
            assert_eq!(errno_of(c.chown("/pub/mine", Some(0), None)), libc::EPERM);
            println!("nobody: every check passed");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_client_killed_mid_request_releases_what_it_held() {
    let daemon = Daemon::start("64M");
    let observer = daemon.client();
    let before = observer.statfs().unwrap();
    let mut child = spawn_client(&daemon, "hold-unlinked");
    let deadline = Instant::now() + Duration::from_secs(20);
    while observer.metadata("/ready").is_err() {
        assert!(Instant::now() < deadline, "client never got ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    let held = observer.statfs().unwrap();
    assert!(
        before.blocks_free - held.blocks_free >= 4096,
        "16 MiB in use: {held:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The server notices the hang-up and frees the unlinked file's blocks.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if observer.statfs().unwrap().blocks_free == before.blocks_free {
            break;
        }
        assert!(Instant::now() < deadline, "blocks were not released");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Others go on.
    observer.write("/after", b"still here").unwrap();
    assert_eq!(observer.read("/after").unwrap(), b"still here");
}

#[test]
fn a_killed_server_fails_calls_within_a_bounded_time() {
    let daemon = Daemon::start("16M");
    let c = daemon.client();
    c.write("/f", b"x").unwrap();
    daemon.signal(libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    assert_eq!(errno_of(c.read("/f")), libc::ENOTCONN);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert!(Client::connect(&daemon.socket).is_err());
}

#[test]
fn permissions_follow_the_identity_the_kernel_reports() {
    let daemon = Daemon::start("16M");
    let root = daemon.client();
    root.create_dir_mode("/private", 0o700).unwrap();
    root.write("/private/secret", b"s").unwrap();
    root.create_dir_mode("/pub", 0o777).unwrap();
    root.set_permissions("/pub", 0o1777).unwrap();
    root.write("/pub/rootfile", b"r").unwrap();
    root.set_permissions("/pub/rootfile", 0o644).unwrap();
    // Only for this test: let another user reach the socket (it is created 0600).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(
        daemon.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let status = spawn_client(&daemon, "nobody").wait().unwrap();
    assert!(
        status.success(),
        "the unprivileged client's checks failed: {status:?}"
    );
    assert_eq!(root.metadata("/pub/mine").unwrap().attr.uid, 65534);
}

/// A closed file's answer is not waited for (`Client::post`), yet what the close does is
/// done before the same thread's next call: the space of an unlinked file comes back at once,
/// and a close posted to a dead server surfaces as ENOTCONN on the next call, not as a hang.
#[test]
fn a_posted_close_is_done_before_the_next_call() {
    let daemon = Daemon::start("16M");
    let c = daemon.client();
    let before = c.statfs().unwrap().blocks_free;
    for round in 0..200 {
        let mut f = c.create("/gone").unwrap();
        f.write_all(&[7u8; 64 * 1024]).unwrap();
        c.remove_file("/gone").unwrap();
        assert!(
            c.statfs().unwrap().blocks_free < before,
            "round {round}: still held"
        );
        drop(f);
        assert_eq!(c.statfs().unwrap().blocks_free, before, "round {round}");
    }
    // Many closes in a row, each collected by the next.
    let files: Vec<_> = (0..100)
        .map(|i| c.create(format!("/f{i}")).unwrap())
        .collect();
    drop(files);
    assert_eq!(c.read_dir("/").unwrap().len(), 100);
    let last = c.create("/last").unwrap();
    daemon.signal(libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    drop(last);
    assert_eq!(errno_of(c.metadata("/f1")), libc::ENOTCONN);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}
