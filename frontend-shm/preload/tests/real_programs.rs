//! Real programs and the calls they make, under `libbtfuse_preload.so` with the ring alone
//! (a `btfuse-shm` server, no mount: every success proves interception), against the same
//! steps on tmpfs (the scripts and the program are `btfuse_testkit::programs`): `make -j2` of
//! a generated C project, `sed -i`, `perl -pi`, `patch`, `sort -o`; `tar` with every file
//! type the ring holds, long and non-ASCII names and a sparse file, `cp -a`, `rsync -a` in
//! and out, `python3 -m venv` and an import from it; a C program driving the fortified and
//! old entry points, `dprintf`, `fallocate`, the advice and copy calls, unique names and the
//! `utimes` family; `fsx` with every operation but memory maps. What the ring alone cannot
//! serve (a kernel object: fifo, socket, a program to execute) fails with the errno the
//! README documents.

mod common;

use std::process::Command;

use btfuse_testkit::programs::{
    ARCHIVES_AND_COPIES, BUILD_AND_EDIT, CALLS_C, FSX_CONFIG, fsx, fsx_operations,
};
use common::{BASH, Server, compile_c, run_with, same_as_tmpfs};

/// The script under the preload at `/btfuse/NAME` and on tmpfs, with `vars` set and `$OUT`
/// naming a fresh kernel directory for each run; the transcripts must match.
fn same_as_tmpfs_with(name: &str, script: &str, vars: &[(&str, &str)]) {
    let server = Server::start();
    btfuse_ring_client::Client::connect(&server.socket)
        .unwrap()
        .create_dir_mode(format!("/{name}"), 0o755)
        .unwrap();
    let fast_dir = format!("/btfuse/{name}");
    let fast_out = tempfile::tempdir_in("/dev/shm").unwrap();
    let mut fast_vars = vec![
        ("D", fast_dir.as_str()),
        ("OUT", fast_out.path().to_str().unwrap()),
    ];
    fast_vars.extend_from_slice(vars);
    let fast = run_with(BASH, script, &fast_vars, Some((&server, "/btfuse")));

    let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
    let tmp_out = tempfile::tempdir_in("/dev/shm").unwrap();
    let mut tmp_vars = vec![
        ("D", tmp.path().to_str().unwrap()),
        ("OUT", tmp_out.path().to_str().unwrap()),
    ];
    tmp_vars.extend_from_slice(vars);
    let kernel = run_with(BASH, script, &tmp_vars, None);
    assert_eq!(
        fast, kernel,
        "script {name} under the preload (left) and on tmpfs (right)"
    );
}

#[test]
fn make_and_the_editors_as_on_tmpfs() {
    // A program built in the prefix cannot be executed by the kernel: not run here (see
    // `what_the_ring_alone_cannot_serve`).
    same_as_tmpfs_with("build", BUILD_AND_EDIT, &[("RUN_PROGRAMS", "0")]);
}

#[test]
fn archives_copies_and_a_venv_as_on_tmpfs() {
    same_as_tmpfs_with("archives", ARCHIVES_AND_COPIES, &[]);
}

#[test]
fn the_calls_glibc_makes_inside_itself_as_on_tmpfs() {
    let (_build, binary) = compile_c(CALLS_C, &["-O2", "-D_FORTIFY_SOURCE=2", "-w"]);
    same_as_tmpfs(&[binary.to_str().unwrap()], "calls", "");
}

/// Each step's outcome as the README lists it for the ring alone.
const CANNOT_SERVE: &str = r#"
import ctypes, os, socket
d = os.environ["D"]
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(step):
    try:
        step()
        return "ok"
    except OSError as e:
        return os.strerror(e.errno)
def c_errno(rc):
    return "ok" if rc >= 0 else os.strerror(ctypes.get_errno())
print("mkfifo", errno_of(lambda: os.mkfifo(f"{d}/fifo")))
print("mkfifo existing", errno_of(lambda: os.mkfifo(f"{d}/file")))
print("mkfifo in a missing directory", errno_of(lambda: os.mkfifo(f"{d}/none/fifo")))
print("mknod socket", errno_of(lambda: os.mknod(f"{d}/sock", 0o600 | 0o140000)))
s = socket.socket(socket.AF_UNIX)
print("bind", errno_of(lambda: s.bind(f"{d}/sock")))
print("bind existing", errno_of(lambda: s.bind(f"{d}/file")))
print("connect to a file", errno_of(lambda: s.connect(f"{d}/file")))
print("connect to nothing", errno_of(lambda: s.connect(f"{d}/none")))
print("execute", errno_of(lambda: os.execv(f"{d}/prog", ["prog"])))
print("execute missing", errno_of(lambda: os.execv(f"{d}/none", ["none"])))
print("posix_spawn", errno_of(lambda: os.posix_spawn(f"{d}/prog", ["prog"], os.environ)))
fd = libc.inotify_init1(0)
print("inotify_add_watch", c_errno(libc.inotify_add_watch(fd, f"{d}/file".encode(), 2)))
handle = ctypes.create_string_buffer(128)
ctypes.c_uint.from_buffer(handle).value = 120
mount_id = ctypes.c_int()
rc = libc.name_to_handle_at(-100, f"{d}/file".encode(), handle, ctypes.byref(mount_id), 0)
print("name_to_handle_at", c_errno(rc))
print(sorted(os.listdir(d)))
"#;

#[test]
fn what_the_ring_alone_cannot_serve() {
    let server = Server::start();
    let client = btfuse_ring_client::Client::connect(&server.socket).unwrap();
    client.create_dir_mode("/k", 0o755).unwrap();
    std::io::Write::write_all(&mut client.create("/k/file").unwrap(), b"data").unwrap();
    let mut prog = client.create("/k/prog").unwrap();
    std::io::Write::write_all(&mut prog, b"#!/bin/sh\necho ran\n").unwrap();
    client.set_permissions("/k/prog", 0o755).unwrap();
    let got = run_with(
        &["python3", "-c"],
        CANNOT_SERVE,
        &[("D", "/btfuse/k")],
        Some((&server, "/btfuse")),
    );
    let expected = "status Some(0)
--- stdout
mkfifo Operation not permitted
mkfifo existing File exists
mkfifo in a missing directory No such file or directory
mknod socket Operation not permitted
bind Operation not permitted
bind existing Address already in use
connect to a file Connection refused
connect to nothing No such file or directory
execute Permission denied
execute missing No such file or directory
posix_spawn Permission denied
inotify_add_watch Operation not supported
name_to_handle_at Operation not supported
['file', 'prog']
--- stderr
";
    assert_eq!(got, expected);
}

#[test]
fn fsx_on_the_ring_alone() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("fsx.toml");
    std::fs::write(&config, FSX_CONFIG).unwrap();
    let output = Command::new(fsx())
        .arg("-f")
        .arg(&config)
        .args(["-N", &fsx_operations(), "-S", "1", "-P"])
        .arg(work.path())
        .arg("/btfuse/fsx-file")
        .env("LD_PRELOAD", common::artifact("libbtfuse_preload.so"))
        .env(btfuse_preload::SOCKET_VAR, &server.socket)
        .env(btfuse_preload::PREFIX_VAR, "/btfuse")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.contains("All operations completed A-OK!"),
        "fsx under the preload: {text}"
    );
}

/// A static program (no library can be preloaded into it): creates `there` in its working
/// directory and says how that went.
const CREATE_THERE: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    int fd = open("there", O_CREAT | O_WRONLY, 0644);
    puts(fd < 0 ? strerror(errno) : "created");
    return 0;
}
"#;

/// With the ring alone the kernel has no directory for a btfuse working directory: what
/// reaches the kernel with a relative name from there (a static program, which no library is
/// preloaded into) fails with `ENOENT` and leaves nothing in the directory the program came
/// from; once the program is back in a kernel directory, the kernel's names work again.
#[test]
fn relative_names_the_kernel_meets_lead_nowhere() {
    let (_build, program) = compile_c(CREATE_THERE, &["-O1", "-static"]);
    let server = Server::start();
    btfuse_ring_client::Client::connect(&server.socket)
        .unwrap()
        .create_dir_mode("/w", 0o755)
        .unwrap();
    let before = tempfile::tempdir_in("/dev/shm").unwrap();
    let script = r#"
        cd "$OUT" && cd /btfuse/w && pwd
        echo served > here; cat here
        "$PROGRAM"
        ls; ls "$OUT" | wc -l
        cd "$OUT" && pwd && "$PROGRAM" && ls
    "#;
    let got = run_with(
        BASH,
        script,
        &[
            ("OUT", before.path().to_str().unwrap()),
            ("PROGRAM", program.to_str().unwrap()),
        ],
        Some((&server, "/btfuse")),
    );
    let expected = "status Some(0)
--- stdout
/btfuse/w
served
No such file or directory
here
0
$OUT
created
there
--- stderr
";
    assert_eq!(got, expected);
}
