//! The calls glibc serves through its own internal calls, which an interposer cannot see
//! unless it defines them itself: `realpath`, directory positions and `getdents64`,
//! `closefrom`, the `exec` and spawn families, `freopen`. As in `programs.rs`, each script runs
//! under the preload at `/btfuse/...` (nothing there for the kernel) and on tmpfs, and the
//! transcripts must match.

mod common;

use common::{PYTHON, SH, compile_c, same_as_tmpfs};

/// Runs a C program (built with `flags`) under the preload and on tmpfs.
fn c_program_same_as_tmpfs(name: &str, source: &str, flags: &[&str]) {
    let (_build, binary) = compile_c(source, flags);
    same_as_tmpfs(&[binary.to_str().unwrap()], name, "");
}

const REALPATH_PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static char d[PATH_MAX];
static void show(const char *label, const char *rel) {
    char path[PATH_MAX * 2], buf[PATH_MAX];
    if (rel[0] == '/' || rel[0] == '.' && rel[1] == '/') snprintf(path, sizeof path, "%s", rel);
    else if (rel[0] == '@') snprintf(path, sizeof path, "%s", rel + 1);
    else snprintf(path, sizeof path, "%s/%s", d, rel);
    memset(buf, 0, sizeof buf);
    errno = 0;
    /* With _FORTIFY_SOURCE this is __realpath_chk. */
    char *r = realpath(path, buf);
    if (r) printf("%-10s %s\n", label, r);
    else printf("%-10s errno %d partial [%s]\n", label, errno, buf);
}
int main(void) {
    snprintf(d, sizeof d, "%s", getenv("D"));
    char p[PATH_MAX * 2], q[PATH_MAX * 2];
#define AT(x) (snprintf(p, sizeof p, "%s/%s", d, x), p)
    mkdir(AT("a"), 0755); mkdir(AT("a/b"), 0755);
    close(creat(AT("a/f"), 0644));
    symlink("a/b", AT("rel"));
    snprintf(q, sizeof q, "%s/a", d); symlink(q, AT("abs"));
    symlink("loop", AT("loop"));
    symlink("../f", AT("a/b/up"));
    symlink("missing", AT("dangling"));
    symlink("/usr/bin/../lib", AT("out"));
    show("dir", "");
    show("slash", "/");
    show("dot", ".");
    show("dotdot", "a/../a/f");
    show("rel", "rel");
    show("rel..", "rel/..");
    show("chain", "abs/b/up");
    show("loop", "loop");
    show("dangling", "dangling");
    show("missing", "missing/x");
    show("notdir", "a/f/x");
    show("fslash", "a/f/");
    show("fdot", "a/f/.");
    show("fdotdot", "a/f/..");
    show("slashes", "a//b///");
    show("out", "out");
    show("empty", "@");
    char *m = canonicalize_file_name(AT("rel"));
    printf("canon      %s\n", m ? m : "(null)");
    free(m);
    m = realpath(AT("abs/b/up"), NULL);
    printf("malloc     %s\n", m ? m : "(null)");
    free(m);
    errno = 0;
    m = canonicalize_file_name(AT("nope"));
    printf("canon-miss %s %d\n", m ? m : "(null)", errno);
    /* A kernel symbolic link leading into the directory. */
    char k[] = "/tmp/btfuse-rp-XXXXXX";
    if (!mkdtemp(k)) return 1;
    snprintf(q, sizeof q, "%s/in", k);
    symlink(AT("a"), q);
    snprintf(q, sizeof q, "@%s/in/b/up", k);
    show("kernel-in", q);
    snprintf(q, sizeof q, "%s/in", k); unlink(q); rmdir(k);
    /* Relative names from a working directory inside. */
    if (chdir(AT("a")) != 0) return 2;
    show("cwd-dot", "./");
    show("cwd-rel", "./b/up");
    show("cwd-up", "./../rel");
    show("cwd-bare", "@b");
    show("cwd-miss", "@nothing/here");
    return 0;
}
"#;

#[test]
fn realpath_in_c_with_and_without_fortify() {
    c_program_same_as_tmpfs("realpath", REALPATH_PROGRAM, &["-O0"]);
    c_program_same_as_tmpfs(
        "realpath_chk",
        REALPATH_PROGRAM,
        &["-O2", "-D_FORTIFY_SOURCE=2"],
    );
}

#[test]
fn realpath_from_coreutils_and_python() {
    same_as_tmpfs(
        SH,
        "realpath_tools",
        r#"
        mkdir -p $D/a/b; touch $D/a/f; ln -s a/b $D/rel; ln -s $D/a $D/abs; ln -s ../f $D/a/b/up
        ln -s nowhere $D/dangling
        realpath $D/rel $D/abs/b/up $D/rel/..; readlink -f $D/abs/b/up
        realpath -e $D/dangling; echo "realpath -e dangling: $?"
        realpath -m $D/dangling/x; readlink -f $D/missing/x; echo "readlink -f missing: $?"
        realpath $D/a/f/x; echo "notdir: $?"
        cd $D/a && realpath ../rel b/up . && readlink -f b/up
        "#,
    );
    same_as_tmpfs(
        PYTHON,
        "realpath_python",
        r#"
import os, pathlib
d = os.environ["D"]
os.makedirs(f"{d}/a/b"); open(f"{d}/a/f", "w").close()
os.symlink("a/b", f"{d}/rel"); os.symlink(f"{d}/a", f"{d}/abs"); os.symlink("../f", f"{d}/a/b/up")
os.symlink("nowhere", f"{d}/dangling"); os.symlink("loop", f"{d}/loop")
for p in ["rel", "abs/b/up", "rel/..", "dangling", "missing/x", "a/../rel"]:
    print(p, os.path.realpath(f"{d}/{p}"))
for p in ["abs/b/up", "dangling", "loop"]:
    try:
        print(p, pathlib.Path(f"{d}/{p}").resolve(strict=True))
    except OSError as e:
        print(p, type(e).__name__, e.errno)
os.chdir(f"{d}/a")
print(os.path.realpath("b/up"), os.path.realpath(".."), pathlib.Path("b").resolve())
"#,
    );
}

const DIRECTORY_PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define SHOW(label, call) do { errno = 0; long r_ = (long)(call); int e_ = errno; \
    printf("%s %ld errno %d\n", label, r_, e_); } while (0)
struct ent { char name[64]; long off; };
static struct ent first[100], again[100];
static int by_name(const void *a, const void *b) {
    return strcmp(((const struct ent *)a)->name, ((const struct ent *)b)->name);
}
/* Lists `fd` from its position with getdents64 in `size`-byte buffers. */
static int list(int fd, size_t size, struct ent *out, int *calls) {
    char *buf = malloc(size);
    int n = 0;
    *calls = 0;
    for (;;) {
        long got = getdents64(fd, buf, size);
        if (got < 0) { printf("getdents64 errno %d\n", errno); break; }
        if (got == 0) break;
        (*calls)++;
        for (long at = 0; at < got;) {
            struct dirent64 *d = (struct dirent64 *)(buf + at);
            size_t need = offsetof(struct dirent64, d_name) + strlen(d->d_name) + 1;
            if (d->d_reclen % 8 || d->d_reclen < need || at + d->d_reclen > got)
                printf("bad record %s\n", d->d_name);
            if (n < 100) { snprintf(out[n].name, 64, "%s", d->d_name); out[n].off = d->d_off; n++; }
            at += d->d_reclen;
        }
    }
    free(buf);
    return n;
}
static int same_names(struct ent *a, struct ent *b, int n) {
    struct ent x[100], y[100];
    memcpy(x, a, n * sizeof *a); memcpy(y, b, n * sizeof *b);
    qsort(x, n, sizeof *x, by_name); qsort(y, n, sizeof *y, by_name);
    for (int i = 0; i < n; i++) if (strcmp(x[i].name, y[i].name)) return 0;
    return 1;
}
int main(void) {
    const char *d = getenv("D");
    char path[512];
    for (int i = 0; i < 60; i++) {
        snprintf(path, sizeof path, "%s/n%d_%.*s", d, i, i % 13, "zzzzzzzzzzzzz");
        close(open(path, O_CREAT | O_WRONLY, 0644));
    }
    snprintf(path, sizeof path, "%s/sub", d);
    mkdir(path, 0755);
    int fd = open(d, O_RDONLY | O_DIRECTORY);
    int calls;
    int n = list(fd, 256, first, &calls);
    printf("entries %d continued %d\n", n, calls > 1);
    int dirs = 0;
    for (int i = 0; i < n; i++) dirs += !strcmp(first[i].name, ".") + !strcmp(first[i].name, "..");
    printf("dot entries %d\n", dirs);
    printf("at end %ld\n", (long)getdents64(fd, path, sizeof path));
    printf("lseek 0 -> %ld\n", (long)lseek(fd, 0, SEEK_SET));
    int m = list(fd, 4096, again, &calls);
    printf("again %d same %d one call %d\n", m, m == n && same_names(first, again, n), calls == 1);
    /* Resume after the 10th entry of the first listing from its d_off. */
    printf("lseek d_off ok %d\n", lseek(fd, first[9].off, SEEK_SET) == first[9].off);
    m = list(fd, 512, again, &calls);
    printf("resumed %d same %d\n", m, m == n - 10 && same_names(first + 10, again, m));
    lseek(fd, 0, SEEK_SET);
    char tiny[10];
    SHOW("tiny buffer", getdents64(fd, tiny, sizeof tiny));
    printf("after tiny %d\n", list(fd, 1024, again, &calls));
    lseek(fd, 0, SEEK_SET);
    m = list(fd, 40, again, &calls);
    printf("one record a call %d same %d calls %d\n", m, m == n && same_names(first, again, n), calls);
    char readbuf[8];
    SHOW("read on a directory", read(fd, readbuf, sizeof readbuf));
    snprintf(path, sizeof path, "%s/n1_z", d);
    int file = open(path, O_RDONLY);
    SHOW("getdents64 on a file", getdents64(file, path, sizeof path));
    close(file);
    SHOW("getdents64 on a closed fd", getdents64(file, path, sizeof path));
    close(fd);

    /* Directory streams: telldir after each entry, seekdir back to them. */
    DIR *dir = opendir(d);
    long start = telldir(dir);
    long tells[100];
    int k = 0, dofs_match = 1;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL && k < 100) {
        snprintf(first[k].name, 64, "%s", e->d_name);
        tells[k] = telldir(dir);
        if (e->d_off != tells[k]) dofs_match = 0;
        k++;
    }
    printf("stream entries %d start %ld d_off is telldir %d\n", k, start, dofs_match);
    int ok = 1;
    for (int i = k - 2; i >= 0; i -= 7) {
        seekdir(dir, tells[i]);
        e = readdir(dir);
        if (!e || strcmp(e->d_name, first[i + 1].name)) ok = 0;
        if (telldir(dir) != tells[i + 1]) ok = 0;
    }
    printf("seekdir to each mark %d\n", ok);
    seekdir(dir, start);
    e = readdir(dir);
    printf("seekdir start %d\n", e && !strcmp(e->d_name, first[0].name));
    seekdir(dir, tells[k - 1]);
    printf("seekdir end null %d\n", readdir(dir) == NULL);
    rewinddir(dir);
    int count = 0;
    while (readdir(dir)) count++;
    printf("after rewinddir %d\n", count);
    closedir(dir);
    /* fdopendir on a descriptor positioned by lseek continues from there. */
    fd = open(d, O_RDONLY | O_DIRECTORY);
    lseek(fd, tells[4], SEEK_SET);
    dir = fdopendir(fd);
    e = readdir(dir);
    printf("fdopendir continues %d telldir %d\n", e && !strcmp(e->d_name, first[5].name), telldir(dir) == tells[5]);
    closedir(dir);
    return 0;
}
"#;

#[test]
fn getdents64_seekdir_telldir_and_directory_offsets() {
    c_program_same_as_tmpfs("directories", DIRECTORY_PROGRAM, &["-O1"]);
}

const CLOSEFROM_PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#define SHOW(label, call) do { errno = 0; long r_ = (long)(call); int e_ = errno; \
    printf("%s %ld errno %d\n", label, r_, e_); } while (0)
static char path[512];
static const char *at(const char *name) {
    snprintf(path, sizeof path, "%s/%s", getenv("D"), name);
    return path;
}
int main(void) {
    int a = open(at("a"), O_CREAT | O_RDWR, 0644);
    int b = open(at("b"), O_CREAT | O_RDWR, 0644);
    int null = open("/dev/null", O_WRONLY);
    int c = open(at("c"), O_CREAT | O_RDWR, 0644);
    printf("fds %d %d %d %d\n", a, b, null, c);
    closefrom(b);
    SHOW("write below", write(a, "kept", 4));
    SHOW("write closed btfuse", write(b, "x", 1));
    SHOW("write closed kernel", write(null, "x", 1));
    SHOW("fstat closed btfuse", fstat(c, &(struct stat){0}));
    /* The library still reaches its server: new descriptors take the freed numbers. */
    int again = open(at("b"), O_RDWR);
    SHOW("reopened", again);
    SHOW("write reopened", write(again, "bb", 2));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        closefrom(3);
        int fd = open(at("child"), O_CREAT | O_WRONLY, 0644);
        _exit(fd == 3 && write(fd, "from child", 10) == 10 ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("child %d\n", WEXITSTATUS(status));
    closefrom(3);
    SHOW("write after closefrom(3)", write(a, "x", 1));
    char buf[32] = {0};
    int fd = open(at("a"), O_RDONLY);
    read(fd, buf, sizeof buf - 1);
    printf("fd %d a [%s]\n", fd, buf);
    memset(buf, 0, sizeof buf);
    fd = open(at("child"), O_RDONLY);
    read(fd, buf, sizeof buf - 1);
    printf("fd %d child [%s]\n", fd, buf);
    return 0;
}
"#;

#[test]
fn closefrom_closes_btfuse_descriptors_and_spares_the_library() {
    c_program_same_as_tmpfs("closefrom", CLOSEFROM_PROGRAM, &["-O1"]);
}

const SPAWN_PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
static char path[512];
static const char *at(const char *name) {
    snprintf(path, sizeof path, "%s/%s", getenv("D"), name);
    return path;
}
static void show_file(const char *name) {
    char buf[512] = {0};
    int fd = open(at(name), O_RDONLY);
    long n = read(fd, buf, sizeof buf - 1);
    close(fd);
    printf("%s: [%s]\n", name, n >= 0 ? buf : "(unreadable)");
}
static int finish(pid_t pid) {
    int status;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
static void report(const char *label, int rc, pid_t pid) {
    printf("%s: rc %d exit %d\n", label, rc, rc == 0 ? finish(pid) : -1);
    fflush(stdout);
}
int main(void) {
    pid_t pid;
    int rc;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    fflush(stdout);

    /* An open action onto a btfuse file. */
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, at("echo.out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char *echo[] = {"echo", "spawned", "echo", NULL};
    rc = posix_spawn(&pid, "/bin/echo", &fa, NULL, echo, environ);
    report("open action", rc, pid);
    posix_spawn_file_actions_destroy(&fa);
    show_file("echo.out");

    /* A btfuse descriptor the new program inherits. */
    int fd = open(at("inherited"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 7);
    close(fd);
    char *sh7[] = {"sh", "-c", "echo via seven >&7; echo on stdout", NULL};
    rc = posix_spawnp(&pid, "sh", NULL, NULL, sh7, environ);
    report("inherited", rc, pid);
    close(7);
    show_file("inherited");

    /* dup2 actions from a close-on-exec btfuse descriptor, then closing it. */
    fd = open(at("dup2.out"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 1);
    posix_spawn_file_actions_adddup2(&fa, fd, 2);
    posix_spawn_file_actions_addclose(&fa, fd);
    char *sh2[] = {"sh", "-c", "echo out; echo err >&2; exit 6", NULL};
    rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, sh2, environ);
    report("dup2 actions", rc, pid);
    posix_spawn_file_actions_destroy(&fa);
    close(fd);
    show_file("dup2.out");

    /* Input and output both btfuse files, found on PATH. */
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, at("echo.out"), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, at("copy"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char *catv[] = {"cat", NULL};
    rc = posix_spawnp(&pid, "cat", &fa, NULL, catv, environ);
    report("cat", rc, pid);
    posix_spawn_file_actions_destroy(&fa);
    show_file("copy");

    /* chdir into the btfuse directory, relative names after it. */
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addchdir_np(&fa, getenv("D"));
    posix_spawn_file_actions_addopen(&fa, 1, "pwd.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char *pwd[] = {"sh", "-c", "pwd | sed \"s#$D#D#\"; cat echo.out", NULL};
    rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, pwd, environ);
    report("chdir", rc, pid);
    posix_spawn_file_actions_destroy(&fa);
    show_file("pwd.out");

    /* Errors come back from posix_spawn, the child reaped. */
    rc = posix_spawn(&pid, "/nonexistent/program", NULL, NULL, echo, environ);
    printf("missing program: rc %d\n", rc);
    rc = posix_spawnp(&pid, "no-such-program-anywhere", NULL, NULL, echo, environ);
    printf("missing on PATH: rc %d\n", rc);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, at("missing"), O_RDONLY, 0);
    rc = posix_spawn(&pid, "/bin/echo", &fa, NULL, echo, environ);
    printf("open action on a missing file: rc %d\n", rc);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, 40, 1);
    rc = posix_spawn(&pid, "/bin/echo", &fa, NULL, echo, environ);
    printf("dup2 from a closed descriptor: rc %d\n", rc);
    posix_spawn_file_actions_destroy(&fa);
    printf("no children left: %d\n", waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);

    /* Attributes, with a btfuse descriptor inherited so that the spawn is the library's. */
    fd = open(at("attrs"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 8);
    close(fd);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    posix_spawnattr_setsigmask(&attr, &mask);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, 8, 1);
    char *attrs[] = {"grep", "SigBlk", "/proc/self/status", NULL};
    rc = posix_spawnp(&pid, "grep", &fa, &attr, attrs, environ);
    printf("own process group %d\n", rc == 0 && getpgid(pid) == pid);
    report("attributes", rc, pid);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    signal(SIGTERM, SIG_IGN);
    posix_spawnattr_init(&attr);
    char *term[] = {"sh", "-c", "kill -TERM $$; echo survived TERM >&8", NULL};
    rc = posix_spawn(&pid, "/bin/sh", NULL, &attr, term, environ);
    report("ignored TERM inherited", rc, pid);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    posix_spawnattr_setsigdefault(&attr, &mask);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawn(&pid, "/bin/sh", NULL, &attr, term, environ);
    report("TERM set to default", rc, pid);
    posix_spawnattr_destroy(&attr);
    signal(SIGTERM, SIG_DFL);
    close(8);
    show_file("attrs");

    /* system() and popen() with the standard streams on btfuse files. */
    fflush(stdout);
    int saved_out = dup(1), saved_in = dup(0);
    fd = open(at("system.out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    close(fd);
    int st1 = system("echo from system; exit 3");
    int st2 = system("kill -INT $PPID; kill -QUIT $PPID; echo caller still here");
    int st3 = system("kill -INT $$; echo not reached");
    FILE *to = popen("tr a-z A-Z", "w");
    fputs("shouted through popen\n", to);
    int st4 = pclose(to);
    fflush(stdout);
    fd = open(at("echo.out"), O_RDONLY);
    dup2(fd, 0);
    close(fd);
    FILE *from = popen("cat; echo and more", "r");
    char line[128] = {0}, rest[128] = {0};
    fgets(line, sizeof line, from);
    fgets(rest, sizeof rest, from);
    int st5 = pclose(from);
    FILE *failing = popen("exit 5", "re");
    int st6 = pclose(failing);
    dup2(saved_out, 1);
    dup2(saved_in, 0);
    printf("system %d %d signal %d\n", WEXITSTATUS(st1), WEXITSTATUS(st2),
           WIFSIGNALED(st3) ? WTERMSIG(st3) : -1);
    printf("popen w %d r %d [%s] [%s] exit %d\n", st4, st5, strtok(line, "\n"), strtok(rest, "\n"),
           WEXITSTATUS(st6));
    errno = 0;
    printf("popen bad mode %d errno %d\n", popen("true", "rw") == NULL, errno);
    show_file("system.out");
    return 0;
}
"#;

#[test]
fn posix_spawn_system_and_popen_hand_btfuse_descriptors_on() {
    c_program_same_as_tmpfs("spawn", SPAWN_PROGRAM, &["-O1"]);
}

#[test]
fn python_spawns_with_btfuse_files() {
    same_as_tmpfs(
        PYTHON,
        "pyspawn",
        r#"
import os, subprocess, sys
d = os.environ["D"]
with open(f"{d}/in", "w") as f:
    f.write("b\na\n")
# Absolute program, close_fds=False, no cwd: CPython takes its posix_spawn path.
print("posix_spawn path:", subprocess._USE_POSIX_SPAWN)
with open(f"{d}/in") as i, open(f"{d}/out", "w") as o:
    r = subprocess.run(["/usr/bin/sort"], stdin=i, stdout=o, close_fds=False)
print(r.returncode, open(f"{d}/out").read().split())
actions = [
    (os.POSIX_SPAWN_OPEN, 1, f"{d}/ps", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    (os.POSIX_SPAWN_OPEN, 0, f"{d}/in", os.O_RDONLY, 0),
]
pid = os.posix_spawn("/bin/sh", ["sh", "-c", "echo spawned; cat"], os.environ, file_actions=actions)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), open(f"{d}/ps").read().split())
fd = os.open(f"{d}/ps", os.O_RDONLY)
pid = os.posix_spawnp("cat", ["cat"], os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, fd, 0), (os.POSIX_SPAWN_OPEN, 1, f"{d}/ps2", os.O_WRONLY | os.O_CREAT, 0o600)], setpgroup=0)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), open(f"{d}/ps2").read().split())
os.close(fd)
try:
    os.posix_spawn("/bin/true", ["true"], os.environ, file_actions=[(os.POSIX_SPAWN_OPEN, 0, f"{d}/nope", os.O_RDONLY, 0)])
except OSError as e:
    print("spawn error", e.errno)
sys.stdout.flush()
fd = os.open(f"{d}/sys", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
saved = os.dup(1)
os.dup2(fd, 1)
status = os.system("echo from os.system; exit 4")
os.dup2(saved, 1)
print(os.waitstatus_to_exitcode(status), open(f"{d}/sys").read().split())
print(os.popen(f"cat {d}/in").read().split())
print(subprocess.run(["cat", "in"], cwd=d, capture_output=True, text=True).stdout.split())
"#,
    );
}

const EXEC_PROGRAM: &str = r##"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
static char path[512];
static const char *at(const char *name) {
    snprintf(path, sizeof path, "%s/%s", getenv("D"), name);
    return path;
}
/* Runs `body` in a child; a failed exec prints its errno. */
#define CHILD(label, body) do { \
    fflush(stdout); \
    pid_t pid_ = fork(); \
    if (pid_ == 0) { body; printf("%s failed errno %d\n", label, errno); fflush(stdout); _exit(1); } \
    int st_; waitpid(pid_, &st_, 0); printf("%s exit %d\n", label, WEXITSTATUS(st_)); \
} while (0)
int main(void) {
    int fd = open(at("log"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 5);
    close(fd);
    CHILD("execl", execl("/bin/sh", "sh", "-c", "echo execl $0 $1 >&5", "zero", "one", (char *)NULL));
    char *env[] = {"X=from-execle", NULL};
    CHILD("execle", execle("/bin/sh", "sh", "-c", "echo $X >&5", (char *)NULL, env));
    CHILD("execlp", execlp("sh", "sh", "-c", "echo execlp >&5; exit 2", (char *)NULL));
    CHILD("execlp missing", execlp("no-such-program-here", "x", (char *)NULL));
    char *argv[] = {"sh", "-c", "echo fexecve >&5", NULL};
    int sh = open("/bin/sh", O_RDONLY | O_CLOEXEC);
    CHILD("fexecve", fexecve(sh, argv, environ));
    char *argv2[] = {"sh", "-c", "echo execveat >&5", NULL};
    CHILD("execveat", execveat(AT_FDCWD, "/bin/sh", argv2, environ, 0));
    CHILD("execveat empty path", execveat(sh, "", argv2, environ, AT_EMPTY_PATH));
    close(sh);
    /* Files on the directory under test: not executable (mode 644), so the kernel refuses
       them on tmpfs as the library refuses btfuse files. */
    int file = open(at("plain"), O_RDWR | O_CREAT, 0644);
    write(file, "#!/bin/sh\necho ran\n", 19);
    int dir = open(getenv("D"), O_RDONLY | O_DIRECTORY);
    CHILD("fexecve btfuse", fexecve(file, argv, environ));
    CHILD("execveat file fd", execveat(file, "", argv, environ, AT_EMPTY_PATH));
    CHILD("execveat not a dir", execveat(file, "x", argv, environ, 0));
    CHILD("execveat missing", execveat(dir, "missing", argv, environ, 0));
    if (chdir(getenv("D")) != 0) return 1;
    CHILD("relative from cwd", execv("./missing", argv));
    close(5);
    char buf[256] = {0};
    fd = open(at("log"), O_RDONLY);
    read(fd, buf, sizeof buf - 1);
    printf("log:\n%s", buf);
    return 0;
}
"##;

#[test]
fn the_exec_family_hands_btfuse_descriptors_on() {
    c_program_same_as_tmpfs("exec", EXEC_PROGRAM, &["-O1"]);
}

const FREOPEN_PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static char path[512];
static const char *at(const char *name) {
    snprintf(path, sizeof path, "%s/%s", getenv("D"), name);
    return path;
}
static void show_file(const char *name) {
    char buf[512] = {0};
    int fd = open(at(name), O_RDONLY);
    long n = read(fd, buf, sizeof buf - 1);
    close(fd);
    printf("%s: [%s]\n", name, n >= 0 ? buf : "(unreadable)");
}
int main(void) {
    int saved = dup(1);
    printf("before\n");
    FILE *r = freopen(at("out"), "w", stdout);
    printf("into the file %d\n", r != NULL);
    r = freopen64(at("out"), "a", stdout);
    printf("appended %d\n", r != NULL);
    r = freopen("/dev/null", "w", stdout);
    printf("into /dev/null\n");
    fflush(stdout);
    dup2(saved, 1);
    show_file("out");

    /* Output buffered before a dup2 lands where the descriptor then points. */
    int fd = open(at("buffered"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    printf("pending");
    dup2(fd, 1);
    close(fd);
    printf(" and more\n");
    fflush(stdout);
    dup2(saved, 1);
    show_file("buffered");

    fd = open(at("in"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, "first line\n42\n", 14);
    close(fd);
    r = freopen(at("in"), "r", stdin);
    char line[64] = {0};
    int number = 0;
    fgets(line, sizeof line, stdin);
    scanf("%d", &number);
    printf("stdin %d [%s] %d\n", r != NULL, strtok(line, "\n"), number);

    r = freopen(at("err"), "w", stderr);
    fprintf(stderr, "to the error file %d\n", r != NULL);

    FILE *f = fopen(at("a"), "w");
    fputs("A", f);
    FILE *g = freopen(at("b"), "w", f);
    fputs("B", g);
    printf("same stream %d\n", g == f);
    g = freopen(NULL, "a", g);
    fputs("b", g);
    fclose(g);
    f = fopen(at("c"), "w");
    fputs("one\n", f);
    errno = 0;
    g = freopen(at("missing/x"), "r", f);
    printf("missing %d errno %d\n", g == NULL, errno);
    show_file("a");
    show_file("b");
    show_file("c");
    show_file("err");
    return 0;
}
"#;

#[test]
fn freopen_moves_standard_and_library_streams() {
    c_program_same_as_tmpfs("freopen", FREOPEN_PROGRAM, &["-O1"]);
}
