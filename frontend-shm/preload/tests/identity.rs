//! What an unprivileged process gets through the preload, against what the kernel gives it on
//! tmpfs: a root program makes root's files, drops its privileges (from a second thread, as
//! glibc applies the change to every thread), and then tries the opens the kernel refuses:
//! access mode 3 without read and write permission, directories it may not read, `O_PATH`
//! descriptors read or listed, a file it opened and closed again and again as root.
//! Descriptions opened before the drop keep their access; the filesystem ids (`setfsuid`)
//! count as the kernel counts them. The transcripts must match.

mod common;

use common::{Server, artifact, compile_c};

const PROGRAM: &str = r##"
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *dir;
static char path_buf[4096];

static const char *at(const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
    return path_buf;
}

static long report(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, strerror(errno));
    else
        printf("%s: ok\n", what);
    fflush(stdout);
    return r;
}

static void put(const char *name, const char *text, mode_t mode) {
    int fd = open(at(name), O_CREAT | O_WRONLY | O_TRUNC, mode);
    write(fd, text, strlen(text));
    close(fd);
    chmod(at(name), mode);
}

static void *drop(void *unused) {
    (void)unused;
    report("setgroups", setgroups(0, NULL));
    report("setgid", setgid(4001));
    report("setuid", setuid(4001));
    return NULL;
}

int main(int argc, char **argv) {
    (void)argc;
    dir = argv[1];
    char buf[256];
    put("secret", "root secret\n", 0600);
    put("shared", "shared\n", 0666);
    put("readable", "readable\n", 0644);
    put("suid", "#!/bin/sh\n", 04755);
    mkdir(at("p700"), 0700);
    put("p700/a", "a\n", 0644);
    mkdir(at("p711"), 0711);
    put("p711/b", "b\n", 0644);
    mkdir(at("pub"), 0777);
    chmod(at("pub"), 0777);

    /* Stat as root, and so kept by the process (see `attrs`), children included. */
    struct stat st;
    report("stat p700/a as root", stat(at("p700/a"), &st));
    /* Root still: the filesystem ids alone decide, in a child that changes only them. */
    pid_t child = fork();
    if (child == 0) {
        setfsgid(4001);
        setfsuid(4001);
        report("fsuid 4001: stat p700/a", stat(at("p700/a"), &st));
        report("fsuid 4001: open secret", open(at("secret"), O_RDONLY));
        report("fsuid 4001: open readable", open(at("readable"), O_RDONLY));
        setfsuid(0);
        setfsgid(0);
        report("fsuid 0: open secret", open(at("secret"), O_RDONLY));
        _exit(0);
    }
    waitpid(child, NULL, 0);

    /* Listed as root, and so kept by the process (see `listings`). */
    DIR *listed = opendir(at("p700"));
    while (listed && readdir(listed))
        ;
    if (listed)
        closedir(listed);

    int kept = open(at("secret"), O_RDONLY);
    /* Opened and closed as root until an open takes the description the last one left
       (see `held`): after the drop, an open must be refused all the same. */
    for (int i = 0; i < 4; i++) {
        int again = open(at("secret"), O_RDONLY);
        report("read secret as root", read(again, buf, sizeof buf));
        close(again);
    }
    pthread_t dropper;
    pthread_create(&dropper, NULL, drop, NULL);
    pthread_join(dropper, NULL);
    printf("ids now %u %u\n", getuid(), getgid());

    long n = pread(kept, buf, sizeof buf, 0);
    printf("read through the description opened as root: %ld\n", n);
    report("open secret O_RDONLY", open(at("secret"), O_RDONLY));
    report("open secret mode 3", open(at("secret"), 3));
    report("open readable mode 3", open(at("readable"), 3));
    int fd = report("open shared mode 3", open(at("shared"), 3));
    if (fd >= 0) {
        report("read through mode 3", read(fd, buf, sizeof buf));
        report("write through mode 3", write(fd, "x", 1));
        printf("F_GETFL access mode %d\n", fcntl(fd, F_GETFL) & O_ACCMODE);
    }
    report("stat p700/a, stat as root before", stat(at("p700/a"), &st));
    report("lstat p700/a, stat as root before", lstat(at("p700/a"), &st));
    report("open p700 O_DIRECTORY", open(at("p700"), O_RDONLY | O_DIRECTORY));
    DIR *again = opendir(at("p700"));
    report("opendir p700, listed as root before", again ? 0 : -1);
    DIR *anyones = opendir(at("pub"));
    int entries = 0;
    while (anyones && readdir(anyones))
        entries++;
    printf("opendir pub: %d entries\n", entries);
    report("open p711 O_DIRECTORY", open(at("p711"), O_RDONLY | O_DIRECTORY));
    report("open p700 mode 3", open(at("p700"), 3 | O_DIRECTORY));
    report("open p711 mode 3", open(at("p711"), 3 | O_DIRECTORY));
    fd = report("open p711 O_PATH", open(at("p711"), O_PATH | O_DIRECTORY));
    if (fd >= 0) {
        report("getdents64 p711 O_PATH", getdents64(fd, buf, sizeof buf));
        struct stat st;
        report("fstat p711 O_PATH", fstat(fd, &st));
        printf("O_PATH mode %o\n", st.st_mode & 07777);
        report("openat p711 O_PATH b", openat(fd, "b", O_RDONLY));
    }
    fd = report("open p700 O_PATH", open(at("p700"), O_PATH | O_DIRECTORY));
    if (fd >= 0) {
        report("getdents64 p700 O_PATH", getdents64(fd, buf, sizeof buf));
        report("openat p700 O_PATH a", openat(fd, "a", O_RDONLY));
    }
    report("open p700/a O_PATH", open(at("p700/a"), O_PATH));
    fd = report("open secret O_PATH", open(at("secret"), O_PATH));
    if (fd >= 0) {
        report("read secret O_PATH", read(fd, buf, sizeof buf));
        report("fchmod secret O_PATH", fchmod(fd, 0666));
    }
    report("chown suid -1 -1", chown(at("suid"), -1, -1));
    stat(at("suid"), &st);
    printf("suid mode after chown %o\n", st.st_mode & 07777);
    fd = report("create pub/mine", open(at("pub/mine"), O_CREAT | O_WRONLY, 0644));
    if (stat(at("pub/mine"), &st) == 0)
        printf("pub/mine owner %u:%u\n", st.st_uid, st.st_gid);
    return 0;
}
"##;

#[test]
fn a_process_that_drops_privileges_gets_what_the_kernel_gives() {
    let (_build, binary) = compile_c(PROGRAM, &["-pthread"]);
    let server = Server::start();
    // Reachable by the dropped process: whatever it is refused must be the server's refusal
    // (its checks with the new ids), not the socket's.
    use std::os::unix::fs::PermissionsExt;
    let open_to_all = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    open_to_all(&server.socket, 0o666);
    open_to_all(server.socket.parent().unwrap(), 0o755);
    let setup = btfuse_ring_client::Client::connect(&server.socket).unwrap();
    setup.create_dir_mode("/identity", 0o755).unwrap();
    let run = |dir: &str, preload: bool| {
        let mut cmd = std::process::Command::new(&binary);
        cmd.arg(dir).env_remove("LD_PRELOAD");
        if preload {
            cmd.env("LD_PRELOAD", artifact("libbtfuse_preload.so"))
                .env(btfuse_preload::SOCKET_VAR, &server.socket)
                .env(btfuse_preload::PREFIX_VAR, "/btfuse");
        }
        let out = cmd.output().unwrap();
        format!(
            "status {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let fast = run("/btfuse/identity", true);
    let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
    open_to_all(tmp.path(), 0o755);
    let kernel = run(tmp.path().to_str().unwrap(), false);
    assert_eq!(fast, kernel);
    // The transcript itself says what the kernel refused: not an empty agreement.
    for line in [
        "fsuid 4001: open secret: -1 Permission denied",
        "stat p700/a as root: ok",
        "fsuid 4001: stat p700/a: -1 Permission denied",
        "stat p700/a, stat as root before: -1 Permission denied",
        "opendir p700, listed as root before: -1 Permission denied",
        "opendir pub: 2 entries",
        "fsuid 0: open secret: ok",
        "read through the description opened as root: 12",
        "open secret O_RDONLY: -1 Permission denied",
        "open secret mode 3: -1 Permission denied",
        "open readable mode 3: -1 Permission denied",
        "read through mode 3: -1 Bad file descriptor",
        "open p700 mode 3: -1 Is a directory",
        "getdents64 p711 O_PATH: -1 Bad file descriptor",
        "getdents64 p700 O_PATH: -1 Bad file descriptor",
        "read secret O_PATH: -1 Bad file descriptor",
        "chown suid -1 -1: -1 Operation not permitted",
        "suid mode after chown 4755",
        "pub/mine owner 4001:4001",
    ] {
        assert!(kernel.contains(line), "{line:?} missing from\n{kernel}");
    }
}
