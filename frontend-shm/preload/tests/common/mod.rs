//! What the program tests share: a `btfuse-shm` server, running a script under the preload
//! and on tmpfs, and building a C program.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// Where cargo put this workspace's binaries (`target/<profile>`).
pub(crate) fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

pub(crate) fn artifact(name: &str) -> PathBuf {
    let path = artifacts().join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --release -p btfuse-shm -p btfuse-preload)",
        path.display()
    );
    path
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    pub(crate) fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ring.sock");
        let child = Command::new(artifact("btfuse-shm"))
            .args(["serve", "--size", "64M", "--threads", "1", "--socket"])
            .arg(&socket)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        // Made first, so that a server that never answers is killed when the test fails.
        let server = Server {
            child,
            socket,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while btfuse_ring_client::Client::connect(&server.socket).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `script` with `sh -c` (or `interpreter`), `$D` naming a fresh directory.
pub(crate) fn run(
    interpreter: &[&str],
    script: &str,
    dir: &str,
    server: Option<&Server>,
) -> String {
    run_with(
        interpreter,
        script,
        &[("D", dir)],
        server.map(|s| (s, "/btfuse")),
    )
}

/// Runs `script` with `interpreter` and the variables `vars`, under the preload with
/// `BTFUSE_PREFIX` set to the prefix given with the server, if one is. The transcript has
/// each variable's value replaced by `$NAME` (longest values first).
pub(crate) fn run_with(
    interpreter: &[&str],
    script: &str,
    vars: &[(&str, &str)],
    preload: Option<(&Server, &str)>,
) -> String {
    let mut cmd = Command::new(interpreter[0]);
    cmd.args(&interpreter[1..]).arg(script).env("LC_ALL", "C");
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd.env_remove("LD_PRELOAD");
    if let Some((server, prefix)) = preload {
        cmd.env("LD_PRELOAD", artifact("libbtfuse_preload.so"))
            .env(btfuse_preload::SOCKET_VAR, &server.socket)
            .env(btfuse_preload::PREFIX_VAR, prefix);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    let mut text = format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        status.code(),
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
    for (name, value) in vars {
        text = text.replace(value, &format!("${name}"));
    }
    text
}

/// The script under the preload and on tmpfs must give the same transcript.
pub(crate) fn same_as_tmpfs(interpreter: &[&str], name: &str, script: &str) {
    let server = Server::start();
    let fast_dir = format!("/btfuse/{name}");
    let setup = btfuse_ring_client::Client::connect(&server.socket).unwrap();
    setup.create_dir_mode(format!("/{name}"), 0o755).unwrap();
    let fast = run(interpreter, script, &fast_dir, Some(&server));
    let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let kernel = run(interpreter, script, tmp.path().to_str().unwrap(), None);
    assert_eq!(fast, kernel, "script {name}:\n{script}");
    assert!(
        !Path::new("/btfuse").exists(),
        "nothing may exist at the prefix for the kernel"
    );
}

pub(crate) const SH: &[&str] = &["sh", "-c"];
pub(crate) const BASH: &[&str] = &["bash", "-c"];
pub(crate) const PYTHON: &[&str] = &["python3", "-c"];

/// Compiles `source` with the system's `cc` (`flags` added); the directory holds the binary.
pub(crate) fn compile_c(source: &str, flags: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let build = tempfile::tempdir().unwrap();
    let file = build.path().join("prog.c");
    std::fs::write(&file, source).unwrap();
    let binary = build.path().join("prog");
    let status = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&binary)
        .arg(&file)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "the C program does not compile");
    (build, binary)
}
