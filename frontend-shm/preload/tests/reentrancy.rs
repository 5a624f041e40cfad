//! Guards the interposer against re-entry: programs whose allocator calls intercepted
//! functions while it initialises (jemalloc reads `/etc/malloc.conf` from inside its first
//! `malloc`) must start and run under the preload as without it, and a call that is not
//! btfuse's must reach libc without the library allocating on the way.
//!
//! Every program runs with a deadline: a deadlock fails the test instead of hanging it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, artifact, compile_c};

/// The allocators Debian ships as shared libraries (`scripts/install-test-deps` installs
/// them), each loaded with `LD_PRELOAD` beside the interposer.
const ALLOCATORS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
];

/// Runs `cmd` to its end or for at most a minute; its status and output as text.
fn run_bounded(mut cmd: Command) -> String {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{cmd:?} did not finish within a minute: deadlocked");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `program` with `args`, under the preload (with `before` loaded ahead of it, if given) on
/// `server`'s ring at `/btfuse`, or with no preload at all.
fn command(program: &str, args: &[&str], preload: Option<(&Server, Option<&str>)>) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).env("LC_ALL", "C").env_remove("LD_PRELOAD");
    cmd.env_remove(btfuse_preload::SOCKET_VAR)
        .env_remove(btfuse_preload::PREFIX_VAR);
    if let Some((server, before)) = preload {
        let library = artifact("libbtfuse_preload.so");
        let list = match before {
            Some(first) => format!("{first}:{}", library.display()),
            None => library.display().to_string(),
        };
        cmd.env("LD_PRELOAD", list)
            .env(btfuse_preload::SOCKET_VAR, &server.socket)
            .env(btfuse_preload::PREFIX_VAR, "/btfuse");
    }
    cmd
}

fn require(library: &str) {
    assert!(
        Path::new(library).exists(),
        "{library} is missing: run scripts/install-test-deps"
    );
}

#[test]
fn rustc_with_jemalloc_starts_under_the_preload() {
    let server = Server::start();
    let plain = run_bounded(command("rustc", &["-vV"], None));
    assert!(plain.starts_with("status Some(0)"), "{plain}");
    let preloaded = run_bounded(command("rustc", &["-vV"], Some((&server, None))));
    assert_eq!(preloaded, plain);
}

#[test]
fn programs_on_other_allocators_run_under_the_preload() {
    let server = Server::start();
    let setup = btfuse_ring_client::Client::connect(&server.socket).unwrap();
    setup.write("/f", b"btfuse file\n").unwrap();
    let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
    std::fs::write(tmp.path().join("f"), b"btfuse file\n").unwrap();
    let script = "cat $D/f; ls $D; sort -r $D/f > $D/g; cat $D/g; \
                  python3 -c 'import sys; print(open(sys.argv[1]).read().upper())' $D/f";
    let kernel = {
        let mut cmd = command("sh", &["-c", script], None);
        cmd.env("D", tmp.path());
        run_bounded(cmd).replace(tmp.path().to_str().unwrap(), "$D")
    };
    assert!(kernel.contains("BTFUSE FILE"), "{kernel}");
    for allocator in ALLOCATORS {
        require(allocator);
        for before in [Some(*allocator), None] {
            let mut cmd = command("sh", &["-c", script], Some((&server, before)));
            if before.is_none() {
                // The allocator second: the interposer's constructor runs before its.
                let list = format!("{}:{allocator}", artifact("libbtfuse_preload.so").display());
                cmd.env("LD_PRELOAD", list);
            }
            cmd.env("D", "/btfuse");
            let fast = run_bounded(cmd).replace("/btfuse", "$D");
            assert_eq!(fast, kernel, "{allocator}, first: {before:?}");
            setup.remove_file("/g").unwrap();
        }
    }
}

/// A program that counts the allocations made while a flag is set (its own `malloc` family,
/// forwarding to glibc's), and with the flag set makes calls that are not btfuse's: the
/// interposer must decide they are not and pass them on without allocating. The flag
/// cleared, it reads a btfuse file, which proves the interposer was there all along.
const COUNTING: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static volatile int counting;
static volatile int counted;

void *malloc(size_t n) { if (counting) counted++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { if (counting) counted++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { if (counting) counted++; return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { if (counting) counted++; return __libc_memalign(a, n); }
int posix_memalign(void **p, size_t a, size_t n) {
    if (counting) counted++;
    *p = __libc_memalign(a, n);
    return *p ? 0 : 12;
}
void *aligned_alloc(size_t a, size_t n) { if (counting) counted++; return __libc_memalign(a, n); }
void free(void *p) { if (counting) counted++; __libc_free(p); }

int main(int argc, char **argv) {
    char buf[256];
    struct stat st;
    counting = 1;
    ssize_t n = readlink("/etc/malloc.conf", buf, sizeof buf);
    int fd = open("/etc/hostname", O_RDONLY);
    int got = fd >= 0 ? (int)read(fd, buf, sizeof buf) : -1;
    close(fd);
    int s = stat("/etc", &st);
    int a = access("relative-name-that-is-not-there", F_OK);
    int fd2 = openat(AT_FDCWD, "also-not-there", O_RDONLY);
    counting = 0;
    printf("allocations %d; readlink %zd; read %d; stat %d; access %d; openat %d\n",
           counted, n, got > 0, s, a, fd2);
    int b = open(argv[1], O_RDONLY);
    ssize_t len = read(b, buf, sizeof buf - 1);
    buf[len > 0 ? len : 0] = 0;
    printf("btfuse: %s", buf);
    return 0;
}
"#;

#[test]
fn calls_that_are_not_btfuse_pass_through_without_allocating() {
    let (_build, binary) = compile_c(COUNTING, &["-O1"]);
    let server = Server::start();
    let setup = btfuse_ring_client::Client::connect(&server.socket).unwrap();
    setup.write("/f", b"served\n").unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = command(
        binary.to_str().unwrap(),
        &["/btfuse/f"],
        Some((&server, None)),
    );
    cmd.current_dir(cwd.path());
    let out = run_bounded(cmd);
    assert_eq!(
        out,
        "status Some(0)\n--- stdout\nallocations 0; readlink -1; read 1; stat 0; access -1; \
         openat -1\nbtfuse: served\n--- stderr\n"
    );
}
