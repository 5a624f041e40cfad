//! Hostile clients against a real `btfuse-shm`, each attack as an unprivileged user where the
//! identity matters (the test binary re-runs itself as a child that switches to uid 4001
//! before it connects, so the kernel reports that identity to the server):
//!
//! - opens with access mode 3, with nothing at all, and `O_PATH`, then reads and listings
//!   through them, of root's `0600` files and `0700`/`0711` directories;
//! - a client that sends its own socket to the server (`SCM_RIGHTS`) and exits, again and
//!   again: the server's descriptors come back;
//! - more connections than the per-user cap: refused with `EMFILE` and a log line;
//! - `Fork` without `Attach` in a loop: `EAGAIN` at the per-session bound, and what the forks
//!   held is released once the client is gone;
//! - extended attributes and hard links in a loop: `ENOSPC` at the filesystem's size and inode
//!   budget, with the server's memory bounded and nothing stored harmed.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use btfuse_core::ring::{OpenOptions, Request, Response, Target};
use btfuse_ring_client::Client;
use btfuse_ring_client::handshake::{FileIds, Hello};

/// The uid and gid the unprivileged children switch to.
const USER: u32 = 4001;

/// A `btfuse-shm serve` process whose socket every user may reach; its log goes to a file.
struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ring.sock");
        let log = dir.path().join("log");
        let size: &[&str] = if extra.contains(&"--size") {
            &[]
        } else {
            &["--size", "64M"]
        };
        let child = Command::new(env!("CARGO_BIN_EXE_btfuse-shm"))
            .args(["serve", "--threads", "2", "--socket"])
            .arg(&socket)
            .args(size)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start btfuse-shm");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "server did not start listening");
            std::thread::sleep(Duration::from_millis(10));
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        mode(dir.path(), 0o755);
        mode(&socket, 0o666);
        Daemon {
            child,
            socket,
            log,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect")
    }

    /// Descriptors the server process has open now.
    fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// Runs this test binary as a child doing `role` as uid [`USER`]; its exit status.
    fn run_as_user(&self, role: &str) -> std::process::ExitStatus {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "hostile_role", "--nocapture", "--test-threads=1"])
            .env("BTFUSE_TEST_ROLE", role)
            .env("BTFUSE_TEST_SOCKET", &self.socket)
            .status()
            .unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn errno<T>(response: Response<'_>) -> Result<T, i32> {
    match response {
        Response::Err(e) => Err(e.code()),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Sends `request`; the answer as the description number opened or the errno.
fn open(c: &Client, path: &[u8], flags: OpenOptions) -> Result<u32, i32> {
    let request = Request::Open {
        at: None,
        path,
        flags,
        mode: 0,
        prefetch: 0,
        known_ino: 0,
        known_version: 0,
    };
    c.request(&request, |r| {
        Ok(match r {
            Response::Opened { fd, .. } => Ok(fd),
            other => errno(other),
        })
    })
    .unwrap()
}

/// Sends `request`; `Ok` for any answer but an error.
fn outcome(c: &Client, request: &Request<'_>) -> Result<(), i32> {
    c.request(request, |r| {
        Ok(match r {
            Response::Err(e) => Err(e.code()),
            _ => Ok(()),
        })
    })
    .unwrap()
}

fn mode3() -> OpenOptions {
    OpenOptions {
        check_read_write: true,
        ..OpenOptions::default()
    }
}

fn o_path(directory: bool) -> OpenOptions {
    OpenOptions {
        path_only: true,
        directory,
        ..OpenOptions::default()
    }
}

/// Not a test on its own: the body of the unprivileged children the other tests start.
#[test]
fn hostile_role() {
    let (Ok(role), Ok(socket)) = (
        std::env::var("BTFUSE_TEST_ROLE"),
        std::env::var("BTFUSE_TEST_SOCKET"),
    ) else {
        return;
    };
    // SAFETY: plain identity changes in this single-purpose child process.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(USER), 0);
        assert_eq!(libc::setuid(USER), 0);
    }
    match role.as_str() {
        "no-access" => no_access(&socket),
        "connections" => connections(&socket),
        other => panic!("unknown role {other}"),
    }
}

fn no_access(socket: &str) {
    let c = Client::connect(socket).unwrap();
    let read = |fd| Request::Read { fd, len: 64 };
    let list = |fd| Request::Getdents { fd, max: 4096 };
    // Access mode 3 wants read and write permission, as Linux does.
    assert_eq!(open(&c, b"/secret", mode3()), Err(libc::EACCES));
    assert_eq!(open(&c, b"/readable", mode3()), Err(libc::EACCES));
    let shared = open(&c, b"/shared", mode3()).unwrap();
    assert_eq!(outcome(&c, &read(shared)), Err(libc::EBADF));
    assert_eq!(
        outcome(
            &c,
            &Request::Write {
                fd: shared,
                data: b"x"
            }
        ),
        Err(libc::EBADF)
    );
    // No mount behind this server: nothing to hand to the kernel, readable or not.
    assert_eq!(
        outcome(&c, &Request::Handoff { fd: shared }),
        Err(libc::EOPNOTSUPP)
    );
    for dir in [&b"/p700"[..], b"/p711"] {
        let directory = OpenOptions {
            directory: true,
            ..mode3()
        };
        assert_eq!(open(&c, dir, directory), Err(libc::EISDIR));
        let readable = OpenOptions {
            read: true,
            directory: true,
            ..OpenOptions::default()
        };
        assert_eq!(open(&c, dir, readable), Err(libc::EACCES));
        // A client asking for nothing, or for O_PATH, gets a description that lists nothing.
        let nothing = OpenOptions {
            directory: true,
            ..OpenOptions::default()
        };
        let fd = open(&c, dir, nothing).unwrap();
        assert_eq!(outcome(&c, &list(fd)), Err(libc::EBADF));
        let fd = open(&c, dir, o_path(true)).unwrap();
        assert_eq!(outcome(&c, &list(fd)), Err(libc::EBADF));
    }
    let secret = open(&c, b"/secret", o_path(false)).unwrap();
    assert_eq!(outcome(&c, &read(secret)), Err(libc::EBADF));
    assert_eq!(
        outcome(
            &c,
            &Request::Chmod {
                target: Target::Fd(secret),
                mode: 0o666
            }
        ),
        Err(libc::EBADF)
    );
    // `chown(f, -1, -1)` by a non-owner would clear root's set-user-ID bit: refused.
    let chown = Request::Chown {
        target: Target::Path {
            at: None,
            path: b"/suid",
            follow: true,
        },
        uid: None,
        gid: None,
    };
    assert_eq!(outcome(&c, &chown), Err(libc::EPERM));
    println!("no-access: every check passed");
}

fn connections(socket: &str) {
    let cap: usize = 8;
    let mut held = Vec::new();
    for _ in 0..cap {
        let (stream, status) = hello(socket);
        assert_eq!(status, 0, "a connection within the cap was refused");
        held.push(stream);
    }
    let (_refused, status) = hello(socket);
    assert_eq!(i32::from(status), libc::EMFILE);
    // A connection given back makes room.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (stream, status) = hello(socket);
        if status == 0 {
            held.push(stream);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room after a connection closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("connections: every check passed");
}

/// A hand-made client: connects, says hello for a new session and reads the welcome's
/// status (the region and table descriptors that come with it are closed).
fn hello(socket: &str) -> (UnixStream, u16) {
    let mut stream = UnixStream::connect(socket).unwrap();
    let hello = Hello::NewSession.encode(FileIds::Effective);
    // A refused connection may be answered and closed before the hello is written.
    let _ = stream.write_all(&hello);
    let mut welcome = [0u8; 32];
    stream.read_exact(&mut welcome).unwrap();
    (stream, u16::from_le_bytes([welcome[6], welcome[7]]))
}

/// Sends `fd` over `sock` with one byte (`SCM_RIGHTS`).
fn send_descriptor(sock: &UnixStream, fd: i32) {
    let byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    let mut space = [0u64; 4];
    // SAFETY: a msghdr over live buffers; CMSG_* stay inside `space`, which is large enough
    // for one descriptor.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd);
        assert_eq!(libc::sendmsg(sock.as_raw_fd(), &msg, 0), 1);
    }
}

fn root_tree(root: &Client) {
    for (path, mode) in [("/secret", 0o600), ("/readable", 0o644), ("/shared", 0o666)] {
        root.write(path, b"root's bytes").unwrap();
        root.set_permissions(path, mode).unwrap();
    }
    root.write("/suid", b"#!/bin/sh\n").unwrap();
    root.set_permissions("/suid", 0o4755).unwrap();
    root.create_dir_mode("/p700", 0o700).unwrap();
    root.write("/p700/inner", b"a").unwrap();
    root.create_dir_mode("/p711", 0o711).unwrap();
    root.write("/p711/inner", b"b").unwrap();
}

#[test]
fn an_unprivileged_client_gets_nothing_through_opens_that_grant_nothing() {
    let daemon = Daemon::start(&[]);
    let root = daemon.client();
    root_tree(&root);
    let status = daemon.run_as_user("no-access");
    assert!(status.success(), "the unprivileged client's checks failed");
    // Nothing of root's changed.
    assert_eq!(root.read("/shared").unwrap(), b"root's bytes");
    assert_eq!(root.metadata("/suid").unwrap().attr.perm, 0o4755);
}

/// The server's descriptor count once it has stopped changing for 500 ms (connections that
/// just ended are still being torn down before that, and the regions made ahead refilled:
/// with the other tests running on both CPUs a refill has come 200 ms after the last change).
fn settled_descriptors(daemon: &Daemon) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = daemon.open_descriptors();
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(500) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = daemon.open_descriptors();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

#[test]
fn descriptors_sent_to_the_server_are_closed_and_the_channel_dropped() {
    let daemon = Daemon::start(&[]);
    // One channel, so that the server's own descriptors are all there before counting.
    let observer = daemon.client();
    observer.write("/f", b"x").unwrap();
    // The same number of honest clients first, so that what the server keeps between
    // connections (regions made ahead, idle workers) is all there before counting.
    for _ in 0..64 {
        let (stream, status) = hello(daemon.socket.to_str().unwrap());
        assert_eq!(status, 0);
        drop(stream);
    }
    let before = settled_descriptors(&daemon);
    for _ in 0..64 {
        let (stream, status) = hello(daemon.socket.to_str().unwrap());
        assert_eq!(status, 0);
        // The client's own end goes to the server, then the client is gone.
        send_descriptor(&stream, stream.as_raw_fd());
        drop(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = daemon.open_descriptors();
        if now <= before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server holds {now} descriptors, {before} before 64 pinning clients"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        daemon
            .log()
            .contains("wrote on its channel after the hello")
    );
    // The server goes on serving.
    assert_eq!(observer.read("/f").unwrap(), b"x");
    assert!(daemon.client().metadata("/f").is_ok());
}

#[test]
fn a_user_over_the_connection_cap_is_refused_with_a_log_line() {
    let daemon = Daemon::start(&["--max-connections-per-user", "8"]);
    let status = daemon.run_as_user("connections");
    assert!(status.success(), "the capped client's checks failed");
    assert!(
        daemon.log().contains(&format!("uid {USER}")) && daemon.log().contains("refusing more"),
        "no log line for the cap:\n{}",
        daemon.log()
    );
    // Another user (root here) is not held up by that user's connections.
    let root = daemon.client();
    root.write("/ok", b"y").unwrap();
}

#[test]
fn forks_no_child_attaches_are_bounded_and_released_when_the_client_goes() {
    let daemon = Daemon::start(&[]);
    let observer = daemon.client();
    let before = observer.statfs().unwrap().blocks_free;
    let attacker = daemon.client();
    // 1 MiB that only the attacker's descriptions hold.
    let mut file = attacker.create("/held").unwrap();
    file.write_all(&vec![7u8; 1 << 20]).unwrap();
    attacker.remove_file("/held").unwrap();
    let mut made = 0;
    let refused = loop {
        match attacker.prepare_fork() {
            Ok(_) => made += 1,
            Err(e) => break e,
        }
        assert!(made <= 10_000, "forks are not bounded");
    };
    assert_eq!(refused.raw_os_error(), Some(libc::EAGAIN));
    assert_eq!(made, 256);
    // The forks share the file's description: its blocks stay taken while they wait.
    drop(file);
    drop(attacker);
    std::thread::sleep(Duration::from_millis(500));
    assert!(observer.statfs().unwrap().blocks_free < before);
    // Once the client is gone, a short grace (for an exec'd program or a child that has not
    // attached yet) and the sweeper's next pass release them all.
    let deadline = Instant::now() + Duration::from_secs(15);
    while observer.statfs().unwrap().blocks_free != before {
        assert!(
            Instant::now() < deadline,
            "the forks' descriptions were not released"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Resident memory of the server process, in bytes.
fn resident_bytes(daemon: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn xattr_and_link_floods_end_at_the_size_and_inode_budget() {
    // 1 MiB and 64 inodes: a flood without limits grew a daemon like this by hundreds of MB.
    let daemon = Daemon::start(&["--size", "1M", "--inodes", "64"]);
    let c = daemon.client();
    c.write("/keep", b"nothing stored is harmed").unwrap();
    let before = resident_bytes(&daemon);
    let statfs = c.statfs().unwrap();
    let value = vec![b'v'; 60 << 10];
    let set = |path: &str, name: &str| {
        let request = Request::SetXattr {
            target: Target::Path {
                at: None,
                path: path.as_bytes(),
                follow: true,
            },
            name: name.as_bytes(),
            value: &value,
            mode: btfuse_core::XattrMode::Set,
        };
        outcome(&c, &request)
    };
    // Values of 60 KiB on file after file: the filesystem's blocks run out, not the memory.
    let mut stored = Vec::new();
    let mut refused = 0;
    for i in 0..2000 {
        let path = format!("/x{}", i % 40);
        if i < 40 {
            c.write(&path, b"").unwrap();
        }
        let name = format!("user.a{}", i / 40);
        match set(&path, &name) {
            Ok(()) => stored.push((path, name)),
            Err(e) => {
                assert_eq!(e, libc::ENOSPC);
                refused += 1;
            }
        }
    }
    assert!(refused > 1900, "only {refused} refused");
    assert!(
        stored.len() <= 17,
        "{} values of 60 KiB in a 1 MiB filesystem",
        stored.len()
    );
    let full = c.statfs().unwrap();
    assert!(full.blocks_free < statfs.blocks_free / 8, "{full:?}");
    // What is stored is intact, and a write finds no room left either.
    assert_eq!(c.read("/keep").unwrap(), b"nothing stored is harmed");
    assert_eq!(
        c.write("/big", vec![1u8; 256 << 10])
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOSPC)
    );
    // Removing the attributes gives the room back.
    for (path, name) in &stored {
        let remove = Request::RemoveXattr {
            target: Target::Path {
                at: None,
                path: path.as_bytes(),
                follow: true,
            },
            name: name.as_bytes(),
        };
        outcome(&c, &remove).unwrap();
    }
    assert!(c.statfs().unwrap().blocks_free >= full.blocks_free + 15 * stored.len() as u64 - 1);
    c.write("/big", vec![1u8; 256 << 10]).unwrap();

    // Hard links take units of the inode budget.
    c.write("/target", b"t").unwrap();
    let mut links = 0;
    let err = loop {
        match c.hard_link("/target", format!("/l{links}")) {
            Ok(()) => links += 1,
            Err(e) => break e,
        }
        assert!(links <= 64, "links are not bounded by the inode budget");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(c.statfs().unwrap().files_free, 0);
    c.remove_file("/l0").unwrap();
    c.hard_link("/target", "/again").unwrap();
    // Thousands more attempts cost nothing that stays.
    for i in 0..5000 {
        assert!(c.hard_link("/target", format!("/m{i}")).is_err());
    }
    let grown = resident_bytes(&daemon).saturating_sub(before);
    assert!(grown < 32 << 20, "the server grew by {grown} bytes");
    assert_eq!(c.read("/keep").unwrap(), b"nothing stored is harmed");
}
