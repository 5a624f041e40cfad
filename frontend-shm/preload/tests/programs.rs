//! Unmodified programs under `libbtfuse_preload.so`, served by a `btfuse-shm` server with no
//! FUSE mount anywhere: `/btfuse` does not exist for the kernel, so every success proves the
//! call was intercepted. Each script runs twice, once under the preload with its directory
//! at `/btfuse/...` and once on a tmpfs directory without it, and the transcripts (standard
//! output and error with the directory's name replaced, and the exit status) must match.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// Where cargo put this workspace's binaries (`target/<profile>`).
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn artifact(name: &str) -> PathBuf {
    let path = artifacts().join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --release -p btfuse-shm -p btfuse-preload)",
        path.display()
    );
    path
}

struct Server {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ring.sock");
        let child = Command::new(artifact("btfuse-shm"))
            .args(["serve", "--size", "64M", "--threads", "1", "--socket"])
            .arg(&socket)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while btfuse_shm::Client::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Server {
            child,
            socket,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `script` with `sh -c` (or `interpreter`), `$D` naming a fresh directory.
fn run(interpreter: &[&str], script: &str, dir: &str, server: Option<&Server>) -> String {
    let mut cmd = Command::new(interpreter[0]);
    cmd.args(&interpreter[1..])
        .arg(script)
        .env("D", dir)
        .env("LC_ALL", "C");
    cmd.env_remove("LD_PRELOAD");
    if let Some(server) = server {
        cmd.env("LD_PRELOAD", artifact("libbtfuse_preload.so"))
            .env(btfuse_preload::SOCKET_VAR, &server.socket)
            .env(btfuse_preload::PREFIX_VAR, "/btfuse");
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    let text = format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        status.code(),
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    text.replace(dir, "$D")
}

/// The script under the preload and on tmpfs must give the same transcript.
fn same_as_tmpfs(interpreter: &[&str], name: &str, script: &str) {
    let server = Server::start();
    let fast_dir = format!("/btfuse/{name}");
    let setup = btfuse_shm::Client::connect(&server.socket).unwrap();
    setup.create_dir(format!("/{name}")).unwrap();
    let fast = run(interpreter, script, &fast_dir, Some(&server));
    let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
    let kernel = run(interpreter, script, tmp.path().to_str().unwrap(), None);
    assert_eq!(fast, kernel, "script {name}:\n{script}");
    assert!(
        !Path::new("/btfuse").exists(),
        "nothing may exist at the prefix for the kernel"
    );
}

const SH: &[&str] = &["sh", "-c"];
const BASH: &[&str] = &["bash", "-c"];

#[test]
fn shell_redirections() {
    same_as_tmpfs(
        SH,
        "redirections",
        r#"
        echo hi > $D/f; cat $D/f
        printf 'b\na\nc\n' > $D/A
        cat $D/A > $D/B; cat $D/B
        sort < $D/A > $D/S; cat $D/S
        echo one >> $D/S; printf 'two\n' >> $D/S; cat $D/S
        while read l; do echo "[$l]"; done < $D/S
        exec 3> $D/three; echo via3 >&3; printf 'more\n' >&3; exec 3>&-; cat $D/three
        { read first; cat; } < $D/S
        (echo a; echo b) > $D/sub; cat $D/sub
        wc -l < $D/S; wc -c $D/S | sed "s#$D#D#"
        "#,
    );
}

#[test]
fn coreutils_on_files_and_directories() {
    same_as_tmpfs(
        SH,
        "coreutils",
        r#"
        mkdir $D/d $D/d/e; echo x > $D/d/f; cp $D/d/f $D/d/g; mv $D/d/g $D/d/h
        ls $D/d; ls -1 $D/d | wc -l; cmp $D/d/f $D/d/h && echo same
        stat -c '%s %F %a' $D/d/f $D/d/e
        head -c 1 $D/d/f; tail -n 1 $D/d/h
        rm $D/d/h; ls $D/d
        rmdir $D/d; echo "rmdir non-empty: $?"
        rm -r $D/d; ls $D; echo gone
        cat $D/missing; echo "cat missing: $?"
        mkdir $D; echo "mkdir existing: $?"
        ln -s target $D/link; readlink $D/link
        touch $D/t; chmod 600 $D/t; stat -c %a $D/t
        truncate -s 5 $D/t; stat -c %s $D/t
        "#,
    );
}

#[test]
fn bash_builtins_and_substitutions() {
    same_as_tmpfs(
        BASH,
        "bash",
        r#"
        echo hi > $D/f; echo there >> $D/f; x=$(cat $D/f); echo "[$x]"
        printf '%s\n' 1 2 3 > $D/n; mapfile -t lines < $D/n; echo "${#lines[@]} ${lines[2]}"
        exec {fd}> $D/dyn; echo dynamic >&$fd; exec {fd}>&-; cat $D/dyn
        [ -f $D/f ] && echo exists; [ -d $D ] && echo dir; [ -e $D/nope ] || echo absent
        "#,
    );
}

#[test]
fn python_file_api() {
    same_as_tmpfs(
        &["python3", "-c"],
        "python",
        r#"
import os, sys
d = os.environ["D"]
with open(f"{d}/a", "w") as f:
    f.write("hello\nworld\n")
print(open(f"{d}/a").read().split())
os.mkdir(f"{d}/sub")
os.rename(f"{d}/a", f"{d}/sub/b")
print(sorted(os.listdir(d)), sorted(os.listdir(f"{d}/sub")))
print(os.stat(f"{d}/sub/b").st_size, os.path.isdir(f"{d}/sub"))
with open(f"{d}/sub/b", "a") as f:
    f.write("more\n")
with open(f"{d}/sub/b", "rb") as f:
    f.seek(6); print(f.read())
try:
    open(f"{d}/missing")
except FileNotFoundError as e:
    print("missing:", e.errno)
os.remove(f"{d}/sub/b"); os.rmdir(f"{d}/sub"); print(os.listdir(d))
"#,
    );
}

#[test]
fn a_file_written_by_a_program_is_the_servers() {
    let server = Server::start();
    let out = run(
        SH,
        "printf 'from sh' > $D",
        "/btfuse/written",
        Some(&server),
    );
    assert!(out.starts_with("status Some(0)"), "{out}");
    let client = btfuse_shm::Client::connect(&server.socket).unwrap();
    assert_eq!(client.read("/written").unwrap(), b"from sh");
}
