//! Unmodified programs under `libbtfuse_preload.so`, served by a `btfuse-shm` server with no
//! FUSE mount anywhere: `/btfuse` does not exist for the kernel, so every success proves the
//! call was intercepted. Each script runs twice, once under the preload with its directory
//! at `/btfuse/...` and once on a tmpfs directory without it, and the transcripts (standard
//! output and error with the directory's name replaced, and the exit status) must match.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BASH, SH, Server, artifact, compile_c, run, same_as_tmpfs};

const VFORK_C: &str = include_str!("../../../testkit/c/vfork.c");

/// `testkit/c/vfork.c`: children made with `vfork` create, read and write files in the
/// directory, take a descriptor of their parent's, execute programs and close their parent's
/// descriptor, as on tmpfs. With no mount, every `vfork` here is served as a `fork` (a
/// child's calls on the prefix need the library), so the parent's table and connection stay
/// its own.
#[test]
fn vfork_children_match_tmpfs() {
    let (_build, binary) = compile_c(VFORK_C, &["-O1", "-Wall", "-Werror"]);
    same_as_tmpfs(SH, "vfork", &format!("'{}' \"$D\"", binary.display()));
}

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
fn trees_walks_and_copies() {
    same_as_tmpfs(
        SH,
        "trees",
        r#"
        mkdir -p $D/a/b/c; touch $D/a/b/c/f $D/a/x; echo hi > $D/a/b/y
        find $D | sort; find $D -type f -name y
        du -a $D/a | sort -k2
        cp -r $D/a $D/z; find $D/z | sort; diff -r $D/a $D/z && echo identical
        ls -la $D/a | awk '{print $1, $NF}'
        dd if=/dev/zero of=$D/dd bs=1k count=3 2>/dev/null; stat -c %s $D/dd
        dd if=$D/a/b/y of=$D/dd2 2>/dev/null; cat $D/dd2
        ln $D/a/x $D/hard; stat -c %h $D/a/x
        cd $D/a; pwd; cat b/y; ls; cd b; ls -1; cd ../..; pwd; ls a
        rm -r $D/z $D/a; ls $D
        "#,
    );
}

#[test]
fn bash_pipes() {
    same_as_tmpfs(
        BASH,
        "pipes",
        r#"
        printf '%s\n' c a b a c c > $D/in
        cat $D/in | sort | uniq -c | sort -rn > $D/out; cat $D/out
        sort $D/in | tee $D/tee | wc -l; cat $D/tee | head -n 2
        for i in 1 2 3; do echo "line $i"; done > $D/loop; cat $D/loop
        { echo first; cat $D/loop; } | grep -c line
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
fn python_walks_copies_and_paths() {
    same_as_tmpfs(
        &["python3", "-c"],
        "pywalk",
        r#"
import os, shutil, pathlib
d = os.environ["D"]
os.makedirs(f"{d}/a/b/c")
for name in ["a/x", "a/b/y", "a/b/c/z"]:
    with open(f"{d}/{name}", "w") as f:
        f.write(name)
print([(r[len(d):], sorted(ds), sorted(fs)) for r, ds, fs in sorted(os.walk(d))])
shutil.copytree(f"{d}/a", f"{d}/copy")
print(sorted(str(p.relative_to(d)) for p in pathlib.Path(d).rglob("*")))
p = pathlib.Path(d) / "pl"
p.mkdir()
(p / "t.txt").write_text("path\n")
print((p / "t.txt").read_text(), [x.name for x in p.iterdir()], (p / "t.txt").stat().st_size)
os.setxattr(p / "t.txt", "user.k", b"v")
print(os.getxattr(p / "t.txt", "user.k"), os.listxattr(p / "t.txt"))
os.chdir(p)
print(os.getcwd()[len(d):], os.listdir("."), open("t.txt").read(), end="")
shutil.rmtree(f"{d}/copy"); print(sorted(os.listdir(d)))
"#,
    );
}

#[test]
fn python_subprocesses_vectors_and_statvfs() {
    same_as_tmpfs(
        &["python3", "-c"],
        "pysub",
        r#"
import os, subprocess
d = os.environ["D"]
with open(f"{d}/a", "w") as f:
    f.write("one\ntwo\n")
with open(f"{d}/b", "w") as out:
    subprocess.run(["sort", "-r", f"{d}/a"], stdout=out, check=True)
print(open(f"{d}/b").read(), end="")
r = subprocess.run(f"cat {d}/a | wc -l", shell=True, capture_output=True, text=True)
print(r.stdout.strip())
fd = os.open(f"{d}/v", os.O_CREAT | os.O_RDWR)
print(os.writev(fd, [b"ab", b"cd", b"ef"]))
print(os.pwritev(fd, [b"XY"], 2))
a, b = bytearray(3), bytearray(3)
os.lseek(fd, 0, 0)
print(os.readv(fd, [a, b]), bytes(a), bytes(b))
os.close(fd)
s = os.statvfs(d)
print(s.f_namemax, s.f_bsize > 0, s.f_blocks >= s.f_bfree)
"#,
    );
}

/// A C program exercising the descriptor calls (compiled with the system's `cc`).
const C_PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <errno.h>
int main(void) {
    const char *d = getenv("D");
    char path[512];
    snprintf(path, sizeof path, "%s/c.txt", d);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0640);
    printf("open %d\n", fd >= 0);
    printf("write %zd\n", write(fd, "hello world", 11));
    printf("lseek end %ld\n", (long)lseek(fd, 0, SEEK_END));
    printf("pwrite %zd\n", pwrite(fd, "HELLO", 5, 0));
    char buf[32] = {0};
    printf("pread %zd %s\n", pread(fd, buf, 11, 0), buf);
    int copy = dup(fd);
    lseek(fd, 6, SEEK_SET);
    memset(buf, 0, sizeof buf);
    printf("dup shares offset %zd %s\n", read(copy, buf, 5), buf);
    int flags = fcntl(fd, F_GETFL);
    printf("getfl rdwr %d append %d\n", (flags & O_ACCMODE) == O_RDWR, !!(flags & O_APPEND));
    fcntl(fd, F_SETFL, flags | O_APPEND);
    lseek(fd, 0, SEEK_SET);
    write(fd, "!", 1);
    struct stat st;
    fstat(fd, &st);
    printf("append size %ld mode %o\n", (long)st.st_size, st.st_mode & 0777);
    printf("ftruncate %d\n", ftruncate(fd, 4));
    fstat(copy, &st);
    printf("size via dup %ld\n", (long)st.st_size);
    lseek(fd, 0, SEEK_SET);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) { write(fd, "ab", 2); _exit(0); }
    waitpid(pid, NULL, 0);
    printf("offset after child wrote %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 50);
    printf("dupfd %d cloexec %d\n", high >= 50, fcntl(high, F_GETFD) & FD_CLOEXEC);
    fflush(stdout);
    dup2(fd, 1);
    printf("to the file\n");
    fflush(stdout);
    close(fd); close(copy); close(high);
    FILE *f = fopen(path, "r");
    char line[64] = {0};
    fread(line, 1, sizeof line - 1, f);
    fclose(f);
    fprintf(stderr, "content [%s]\n", line);
    errno = 0;
    int rc = close(copy);
    fprintf(stderr, "close twice %d %d\n", rc, errno);
    return 0;
}
"#;

#[test]
fn a_c_program_using_descriptors_directly() {
    let build = tempfile::tempdir().unwrap();
    let source = build.path().join("prog.c");
    std::fs::write(&source, C_PROGRAM).unwrap();
    let binary = build.path().join("prog");
    let status = Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success());
    same_as_tmpfs(&[binary.to_str().unwrap()], "cprog", "");
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
    let client = btfuse_ring_client::Client::connect(&server.socket).unwrap();
    assert_eq!(client.read("/written").unwrap(), b"from sh");
}

#[test]
fn programs_get_errors_not_hangs_when_the_server_is_killed() {
    let mut server = Server::start();
    let client = btfuse_ring_client::Client::connect(&server.socket).unwrap();
    client.write("/f", b"data").unwrap();
    let mut looping = Command::new("sh")
        .arg("-c")
        .arg("while cat /btfuse/f > /dev/null; do :; done; exit 3")
        .env("LD_PRELOAD", artifact("libbtfuse_preload.so"))
        .env(btfuse_preload::SOCKET_VAR, &server.socket)
        .env(btfuse_preload::PREFIX_VAR, "/btfuse")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        looping.try_wait().unwrap().is_none(),
        "the loop runs while the server does"
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = looping.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = looping.kill();
            panic!("a preloaded program hung after the server died");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3), "cat failed, and the loop ended");
}

/// The prefix is a real (tmpfs) directory here, standing for a mount that outlives its ring:
/// once the server is gone, a running program's path calls reach the kernel's files there,
/// the call that finds the server gone included; a descriptor of the lost session fails
/// instead, and so does a name relative to a btfuse working directory (the kernel would
/// resolve it from elsewhere).
#[test]
fn a_running_program_falls_back_to_the_kernel_when_the_server_goes() {
    let mut server = Server::start();
    let client = btfuse_ring_client::Client::connect(&server.socket).unwrap();
    client.write("/f", b"ring\n").unwrap();
    client.create_dir("/d").unwrap();
    client.write("/d/g", b"ring g\n").unwrap();
    let kernel = tempfile::tempdir_in("/dev/shm").unwrap();
    std::fs::write(kernel.path().join("f"), b"kernel\n").unwrap();
    std::fs::create_dir(kernel.path().join("d")).unwrap();
    std::fs::write(kernel.path().join("d/g"), b"kernel g\n").unwrap();
    let control = tempfile::tempdir().unwrap();
    let fifo = control.path().join("go");
    let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    let script = r#"
        exec 3< "$P/f"
        read a < "$P/f"; echo "before: $a"
        cd "$P/d"; read g < g; echo "cwd before: $g"
        read go < "$GO"
        read b < "$P/f"; echo "after: $b"
        read c < "$P/f"; echo "again: $c"
        if read x <&3; then echo "fd: read $x"; else echo "fd: failed"; fi
        if read y < g; then echo "cwd: read $y"; else echo "cwd: failed"; fi
    "#;
    let mut bash = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("P", kernel.path())
        .env("GO", &fifo)
        .env("LC_ALL", "C")
        .env("LD_PRELOAD", artifact("libbtfuse_preload.so"))
        .env(btfuse_preload::SOCKET_VAR, &server.socket)
        .env(btfuse_preload::PREFIX_VAR, kernel.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Opening the FIFO for writing waits for bash to reach `read go`, past the first reads.
    let mut go = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    use std::io::Write;
    go.write_all(b"go\n").unwrap();
    drop(go);
    let deadline = Instant::now() + Duration::from_secs(10);
    while bash.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = bash.kill();
            panic!("a preloaded program hung after the server died");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = bash.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "before: ring\ncwd before: ring g\nafter: kernel\nagain: kernel\nfd: failed\ncwd: failed\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .matches("Transport endpoint is not connected")
            .count()
            == 2,
        "{stderr}"
    );
}

/// A program whose kernel working directory is already inside the prefix (started there, or
/// entered by a relative `chdir` through the kernel) has its relative names served over the
/// ring too.
#[test]
fn relative_names_from_a_kernel_working_directory_under_the_prefix_use_the_ring() {
    let server = Server::start();
    let client = btfuse_ring_client::Client::connect(&server.socket).unwrap();
    client.create_dir("/sub").unwrap();
    client.write("/sub/f", b"ring\n").unwrap();
    let kernel = tempfile::tempdir_in("/dev/shm").unwrap();
    std::fs::create_dir(kernel.path().join("sub")).unwrap();
    std::fs::write(kernel.path().join("sub/f"), b"kernel\n").unwrap();
    let script = r#"
import os
print(open("f").read().strip())
os.chdir("..")
print(open("sub/f").read().strip())
os.mkdir("made")
print(sorted(os.listdir(".")))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(kernel.path().join("sub"))
        .env("LD_PRELOAD", artifact("libbtfuse_preload.so"))
        .env(btfuse_preload::SOCKET_VAR, &server.socket)
        .env(btfuse_preload::PREFIX_VAR, kernel.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ring\nring\n['made', 'sub']\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(client.metadata("/made").unwrap().is_dir());
    assert!(
        !kernel.path().join("made").exists(),
        "the kernel's directory is untouched"
    );
}

/// Descriptor numbers follow the kernel's rule (the lowest free one), whatever the program
/// closes: the placeholders come from a private descriptor of the library, which survives a
/// program closing everything above 2 and is made again when the program closes it by number.
const LOWEST_NUMBERS: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/n.txt", getenv("D"));
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    printf("first %d\n", fd);
    int second = open(path, O_RDONLY);
    close(fd);
    printf("reused %d\n", open(path, O_RDONLY));
    printf("next %d\n", open(path, O_RDONLY));
    closefrom(3);
    printf("after closefrom %d\n", open(path, O_RDONLY));
    for (int i = 3; i < 65536; i++) close(i);
    printf("after closing every number %d\n", open(path, O_RDONLY));
    fflush(stdout);
    close(0);
    printf("in place of stdin %d\n", open(path, O_RDONLY));
    printf("write through it %zd\n", write(3, "x", 1) < 0 ? (ssize_t)-1 : (ssize_t)1);
    (void)second;
    return 0;
}
"#;

/// Compiles C `source` and runs it in a btfuse directory and in a tmpfs one (`$D`): the two
/// outputs must be the same.
fn c_program_same_as_tmpfs(source: &str, name: &str) {
    let (_build, binary) = compile_c(source, &["-O1"]);
    same_as_tmpfs(&[binary.to_str().unwrap()], name, "");
}

#[test]
fn descriptor_numbers_are_the_lowest_free_ones() {
    c_program_same_as_tmpfs(LOWEST_NUMBERS, "lowest");
}

/// Modes of new files follow the umask as it changes (the library keeps it rather than read
/// it with two system calls per create).
#[test]
fn new_files_follow_the_umask_as_it_changes() {
    same_as_tmpfs(
        BASH,
        "umask",
        r#"
        umask 027; touch "$D/a"; mkdir "$D/b"
        umask 0; touch "$D/c"; mkdir "$D/d"
        umask 077; echo x > "$D/e"
        stat -c '%n %a' "$D"/* | sed "s#$D/##"
        python3 -c 'import os; os.umask(0o002); open(os.environ["D"] + "/p", "w").close(); os.mkdir(os.environ["D"] + "/q")'
        stat -c '%n %a' "$D/p" "$D/q" | sed "s#$D/##"
        "#,
    );
}

/// `readdir` leaves errno as it was at the end of a directory (that is how a program tells
/// the end from an error): whatever the ring call did inside, the program's errno comes back.
const READDIR_ERRNO: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    char path[512];
    const char *d = getenv("D");
    for (int i = 0; i < 300; i++) {
        snprintf(path, sizeof path, "%s/f%03d", d, i);
        close(open(path, O_CREAT | O_WRONLY, 0644));
    }
    DIR *dir = opendir(d);
    int n = 0;
    for (;;) {
        errno = EDOM;
        struct dirent *e = readdir(dir);
        if (!e) break;
        if (errno != EDOM) printf("errno changed by a successful readdir: %d\n", errno);
        n++;
    }
    printf("entries %d, errno at the end %s\n", n, errno == EDOM ? "unchanged" : "changed");
    closedir(dir);
    return 0;
}
"#;

/// A directory whose listing takes several batches, each larger than the last: every entry
/// comes once, `telldir` marks taken in the first batch still lead back to their entries
/// once the stream has moved on to later ones, and a rewind lists it all again.
const LARGE_LISTING: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define FILES 6000
static unsigned long hash(const char *s) {
    unsigned long h = 5381;
    while (*s) h = h * 33 + (unsigned char)*s++;
    return h;
}
int main(void) {
    char path[1024], name[200];
    const char *d = getenv("D");
    memset(name, 'n', 120);
    name[120] = 0;
    for (int i = 0; i < FILES; i++) {
        snprintf(path, sizeof path, "%s/%s%05d", d, name, i);
        close(open(path, O_CREAT | O_WRONLY, 0644));
    }
    DIR *dir = opendir(d);
    long marks[FILES / 500 + 1];
    char marked[FILES / 500 + 1][200];
    int n = 0, m = 0;
    unsigned long sum = 0;
    struct dirent *e;
    for (;;) {
        long here = telldir(dir);
        if (!(e = readdir(dir))) break;
        if (n % 500 == 0) {
            marks[m] = here;
            strcpy(marked[m++], e->d_name);
        }
        sum += hash(e->d_name);
        n++;
    }
    int back = 1;
    for (int i = m - 1; i >= 0; i--) {
        seekdir(dir, marks[i]);
        e = readdir(dir);
        if (!e || strcmp(e->d_name, marked[i])) back = 0;
    }
    rewinddir(dir);
    int again = 0;
    while (readdir(dir)) again++;
    closedir(dir);
    printf("entries %d sum %lu marks %d back %d again %d\n", n, sum, m, back, again);
    return 0;
}
"#;

#[test]
fn a_large_listing_in_growing_batches() {
    c_program_same_as_tmpfs(LARGE_LISTING, "large_listing");
}

/// Listings this process keeps (served again with no round trip while the directory is
/// unchanged) never show a directory as it was: every kind of change, made here or by another
/// process, shows in the next listing; positions taken in a kept listing lead back to their
/// entries; a rewind after a change shows it; and a stream that began after the program moved
/// its description leaves nothing kept. (That a kept listing grants nothing to a
/// caller that may no longer read the directory is in `identity.rs`.)
const KEPT_LISTINGS: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}
/* Prints the sorted names of `dir` after `what`, and whether `..` names `parent`. */
static void list(const char *what, const char *dir, const char *parent) {
    char *names[5000];
    int n = 0, dotdot = -1;
    struct stat up;
    stat(parent, &up);
    DIR *d = opendir(dir);
    if (!d) { printf("%s: opendir: %s\n", what, strerror(errno)); return; }
    struct dirent *e;
    while ((e = readdir(d)) && n < 5000) {
        if (!strcmp(e->d_name, "..")) dotdot = e->d_ino == up.st_ino;
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp);
    printf("%s: %d entries, .. is the parent: %d:", what, n, dotdot);
    for (int i = 0; i < n && i < 12; i++) printf(" %s", names[i]);
    printf("\n");
    for (int i = 0; i < n; i++) free(names[i]);
}
static void make(const char *d, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", d, name);
    close(open(path, O_CREAT | O_WRONLY, 0644));
}
int main(void) {
    char a[512], b[512], c[512], p[512], q[512], big[512];
    const char *d = getenv("D");
    snprintf(a, sizeof a, "%s/a", d);
    snprintf(b, sizeof b, "%s/b", d);
    mkdir(a, 0755);
    mkdir(b, 0755);
    make(a, "one");
    make(a, "two");
    list("first", a, d);
    list("again", a, d);
    make(a, "three");
    list("created", a, d);
    snprintf(p, sizeof p, "%s/one", a);
    unlink(p);
    list("unlinked", a, d);
    snprintf(q, sizeof q, "%s/uno", a);
    snprintf(p, sizeof p, "%s/two", a);
    rename(p, q);
    list("renamed in place", a, d);
    snprintf(p, sizeof p, "%s/moved", b);
    rename(q, p);
    list("renamed away", a, d);
    list("renamed here", b, d);
    snprintf(p, sizeof p, "%s/two", b);
    snprintf(q, sizeof q, "%s/two", a);
    link(p, q); /* fails: no such file; a no-op as on tmpfs */
    snprintf(p, sizeof p, "%s/moved", b);
    link(p, q);
    list("linked", a, d);
    snprintf(c, sizeof c, "%s/c", a);
    mkdir(c, 0755);
    list("sub, before its move", c, a);
    snprintf(p, sizeof p, "%s/c", b);
    rename(c, p);
    list("sub, moved: .. follows", p, b);
    list("the old parent", a, d);
    symlink("target", c); /* the name `c` is free again */
    list("symlinked", a, d);
    mknod(c, S_IFREG | 0644, 0); /* taken: fails */
    snprintf(p, sizeof p, "%s/node", a);
    mknod(p, S_IFREG | 0644, 0);
    list("node made", a, d);
    snprintf(p, sizeof p, "%s/c", b);
    rmdir(p);
    list("rmdir", b, d);
    /* A stream whose description the program moved first (its own getdents64 on dirfd)
       goes on from there, and what it read is not kept as the whole listing. */
    char fresh[512];
    snprintf(fresh, sizeof fresh, "%s/fresh", d);
    mkdir(fresh, 0755);
    make(fresh, "x");
    make(fresh, "y");
    DIR *m = opendir(fresh);
    char dents[48];
    long took = getdents64(dirfd(m), dents, sizeof dents);
    /* How many records it took is the filesystem's to choose; the two together see all. */
    int seen = 0;
    for (long at = 0; at < took; at += ((struct dirent64 *)(dents + at))->d_reclen) seen++;
    while (readdir(m)) seen++;
    closedir(m);
    printf("moved stream: %d entries in all\n", seen);
    list("the same directory again", fresh, d);
    /* Another process changes the directory: the next listing here shows it. */
    list("before the child", a, d);
    pid_t child = fork();
    if (child == 0) {
        make(a, "from-the-child");
        _exit(0);
    }
    waitpid(child, NULL, 0);
    list("after the child", a, d);
    /* A kept listing's positions, and a rewind that must see a change. */
    snprintf(big, sizeof big, "%s/big", d);
    mkdir(big, 0755);
    char name[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "entry-%04d-with-a-longer-name", i);
        make(big, name);
    }
    list("big", big, d);
    DIR *s = opendir(big);
    long mark = -1;
    char marked[256] = "";
    int n = 0;
    struct dirent *e;
    while ((e = readdir(s))) {
        if (n++ == 1700) {
            mark = telldir(s);
            e = readdir(s);
            if (!e) break;
            strcpy(marked, e->d_name);
            n++;
        }
    }
    seekdir(s, mark);
    e = readdir(s);
    printf("big: %d entries, the mark leads back: %d\n", n, e && !strcmp(e->d_name, marked));
    make(big, "late");
    rewinddir(s);
    int late = 0;
    n = 0;
    while ((e = readdir(s))) { n++; late |= !strcmp(e->d_name, "late"); }
    printf("big after a rewind: %d entries, the late one among them: %d\n", n, late);
    closedir(s);
    return 0;
}
"#;

#[test]
fn kept_listings_show_every_change() {
    c_program_same_as_tmpfs(KEPT_LISTINGS, "kept_listings");
}

#[test]
fn readdir_leaves_errno_alone() {
    c_program_same_as_tmpfs(READDIR_ERRNO, "readdir_errno");
}

/// `stat` answers this process keeps: every kind of change, by this process and by another,
/// shows in the next `stat`, `lstat` and `fstatat` of a path, absolute, relative to the
/// working directory and relative to a directory descriptor. For each answer the program also
/// prints whether it is exactly what `fstat` of a fresh `O_PATH` descriptor (asked of the
/// server every time) says; a link is not opened (the ring's `O_PATH` does not open links).
const KEPT_ATTRIBUTES: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
static int same(const struct stat *a, const struct stat *b) {
    return a->st_ino == b->st_ino && a->st_mode == b->st_mode && a->st_nlink == b->st_nlink
        && a->st_uid == b->st_uid && a->st_gid == b->st_gid && a->st_size == b->st_size
        && a->st_blocks == b->st_blocks
        && a->st_atim.tv_sec == b->st_atim.tv_sec && a->st_atim.tv_nsec == b->st_atim.tv_nsec
        && a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec
        && a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}
/* What `stat` (dirfd `at`, AT_SYMLINK_NOFOLLOW if `nofollow`) answers for `path`. */
static void one(const char *what, int at, const char *path, int nofollow) {
    struct stat s, f;
    int r = fstatat(at, path, &s, nofollow ? AT_SYMLINK_NOFOLLOW : 0);
    printf("%s%s: ", what, nofollow ? " (l)" : "");
    if (r) { printf("%s\n", strerror(errno)); return; }
    printf("mode %o nlink %lu size %ld uid %u", s.st_mode, (unsigned long)s.st_nlink,
           (long)s.st_size, s.st_uid);
    if (S_ISLNK(s.st_mode)) { printf(" (a link: not opened)\n"); return; }
    int fd = openat(at, path, O_PATH | (nofollow ? O_NOFOLLOW : 0));
    int fresh = fd >= 0 && !fstat(fd, &f) && same(&s, &f);
    if (fd >= 0) close(fd);
    if (s.st_mtim.tv_sec < 2000000000 && s.st_mtim.tv_sec > 100)
        printf(" mtime set");
    printf(" fresh %d\n", fresh);
}
static void show(const char *what, const char *path) {
    one(what, AT_FDCWD, path, 0);
    one(what, AT_FDCWD, path, 1);
}
int main(void) {
    char a[512], b[512], f[512], g[512], h[512], c[512], l[512], n[512];
    const char *d = getenv("D");
    snprintf(a, sizeof a, "%s/a", d);
    snprintf(b, sizeof b, "%s/a/b", d);
    snprintf(f, sizeof f, "%s/a/b/f", d);
    snprintf(g, sizeof g, "%s/a/g", d);
    snprintf(h, sizeof h, "%s/a/b/h", d);
    snprintf(c, sizeof c, "%s/a/c", d);
    snprintf(l, sizeof l, "%s/l", d);
    snprintf(n, sizeof n, "%s/a/b/new", d);
    mkdir(a, 0755);
    mkdir(b, 0755);
    close(open(f, O_CREAT | O_WRONLY, 0644));
    show("first", f);
    show("again", f);
    show("missing", n);
    show("missing again", n);
    int o = open(n, O_RDONLY);
    printf("open missing: %d %s\n", o < 0 ? -1 : 0, o < 0 ? strerror(errno) : "");
    chmod(f, 0600);
    show("chmod", f);
    chown(f, 1, 1);
    show("chown", f);
    struct timespec times[2] = {{1000000000, 5}, {1000000000, 7}};
    utimensat(AT_FDCWD, f, times, 0);
    show("utimens", f);
    int w = open(f, O_WRONLY | O_APPEND);
    write(w, "hello", 5);
    close(w);
    show("written", f);
    truncate(f, 2);
    show("truncated", f);
    int r = open(f, O_RDONLY);
    char buf[8];
    read(r, buf, sizeof buf);
    close(r);
    show("read after a write", f);
    printf("setxattr %d\n", setxattr(f, "user.x", "1", 1, 0));
    show("setxattr", f);
    link(f, g);
    show("linked", f);
    unlink(g);
    show("link removed", f);
    rename(f, h);
    show("renamed away", f);
    show("renamed here", h);
    rename(h, f);
    show("renamed back", f);
    chmod(b, 0700);
    show("directory chmod", b);
    show("through it", f);
    rename(b, c);
    show("directory renamed", f);
    rename(c, b);
    show("directory back", f);
    rename(b, c);
    close(open(b, O_CREAT | O_WRONLY, 0644));
    show("a file in its place", f);
    unlink(b);
    rename(c, b);
    show("restored", f);
    symlink("a/b", l);
    show("through a link", f);
    char lf[512];
    snprintf(lf, sizeof lf, "%s/f", l);
    show("link/f", lf);
    show("the link", l);
    unlink(l);
    symlink("a/none", l);
    show("link/f, link replaced", lf);
    show("the link, replaced", l);
    /* Another process changes things; this one sees it. */
    pid_t child = fork();
    if (child == 0) {
        chmod(f, 0640);
        close(open(n, O_CREAT | O_WRONLY, 0644));
        _exit(0);
    }
    waitpid(child, NULL, 0);
    show("after the child", f);
    show("made by the child", n);
    o = open(n, O_RDONLY);
    printf("open made by the child: %d\n", o < 0 ? -1 : 0);
    if (o >= 0) close(o);
    /* Relative to the working directory, and to a directory descriptor. */
    chdir(a);
    show("relative", "b/f");
    chmod(f, 0604);
    show("relative after chmod", "b/f");
    int dir = open(b, O_RDONLY | O_DIRECTORY);
    one("from a descriptor", dir, "f", 0);
    one("from a descriptor", dir, "f", 0);
    unlink(n);
    one("from a descriptor, removed", dir, "new", 0);
    o = openat(dir, "new", O_RDONLY);
    printf("openat removed: %d %s\n", o < 0 ? -1 : 0, o < 0 ? strerror(errno) : "");
    close(dir);
    dir = open(a, O_RDONLY | O_DIRECTORY);
    one("from another descriptor", dir, "f", 0);
    one("from another descriptor", dir, "b/f", 0);
    close(dir);
    return 0;
}
"#;

#[test]
fn kept_attributes_show_every_change() {
    c_program_same_as_tmpfs(KEPT_ATTRIBUTES, "kept_attributes");
}
