//! Files opened only for reading arrive with their first bytes, and the process keeps their
//! offset until it shares the description (see the library's `held` module). These programs
//! read such files in every way that could tell the kept bytes or offset from the server's
//! (other writers, `fork`, `dup`, `exec`, seeks, reopens after changes, files longer than what
//! is sent) and must print what they print on tmpfs.

mod common;

use common::{BASH, compile_c, same_as_tmpfs};

const PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
static char d[4096];
static char *at(const char *name) {
    static char p[8192];
    snprintf(p, sizeof p, "%s/%s", d, name);
    return p;
}
static void put(const char *name, const char *text) {
    int fd = open(at(name), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, text, strlen(text));
    close(fd);
}
static void show(const char *label, int fd, size_t n) {
    char buf[256] = {0};
    ssize_t got = read(fd, buf, n);
    printf("%-12s %zd [%.*s] at %ld\n", label, got, got > 0 ? (int)got : 0, buf,
           (long)lseek(fd, 0, SEEK_CUR));
}
int main(void) {
    snprintf(d, sizeof d, "%s", getenv("D"));
    put("f", "0123456789abcdefghijklmnopqrstuvwxyz");

    /* Another writer between the open and the reads. */
    int r = open(at("f"), O_RDONLY);
    show("first", r, 4);
    int w = open(at("f"), O_WRONLY);
    pwrite(w, "XYZ", 3, 4);
    show("after-write", r, 4);
    ftruncate(w, 10);
    show("truncated", r, 8);
    show("at-end", r, 8);
    pwrite(w, "++", 2, 10);
    show("grown", r, 8);
    close(w);
    close(r);

    /* Another process writing. */
    put("f", "0123456789abcdefghijklmnopqrstuvwxyz");
    r = open(at("f"), O_RDONLY);
    show("proc-first", r, 3);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int w2 = open(at("f"), O_WRONLY);
        pwrite(w2, "!!!", 3, 3);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    show("proc-after", r, 6);
    close(r);

    /* fork shares the offset, both ways. */
    r = open(at("f"), O_RDONLY);
    show("fork-parent", r, 5);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        show("fork-child", r, 5);
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    show("fork-after", r, 5);
    close(r);

    /* dup shares it too; seeks of every kind. */
    r = open(at("f"), O_RDONLY);
    show("dup-before", r, 7);
    int r2 = dup(r);
    show("dup-copy", r2, 3);
    show("dup-orig", r, 3);
    close(r2);
    printf("seek-set     %ld\n", (long)lseek(r, 2, SEEK_SET));
    show("after-set", r, 3);
    printf("seek-cur     %ld\n", (long)lseek(r, -4, SEEK_CUR));
    show("after-cur", r, 3);
    printf("seek-neg     %ld\n", (long)lseek(r, -100, SEEK_CUR));
    printf("seek-end     %ld\n", (long)lseek(r, -3, SEEK_END));
    show("after-end", r, 10);
    lseek(r, 0, SEEK_SET);
    char b[8] = {0};
    printf("pread        %zd [%.5s] at %ld\n", pread(r, b, 5, 30), b, (long)lseek(r, 0, SEEK_CUR));
    close(r);

    /* Reopening the same path after a change, and after none. */
    for (int i = 0; i < 3; i++) {
        r = open(at("f"), O_RDONLY);
        show("reopen", r, 12);
        close(r);
        if (i == 1) put("f", "changed");
    }
    unlink(at("f"));
    r = open(at("f"), O_RDONLY);
    printf("gone         %d\n", r);

    /* Opened again and again: a later open may take the description an earlier one left
       (see `held`), and must behave as a fresh one in every way. A helper started first
       changes the file on request (a fork would close what this process left open). */
    put("h", "hello parked world");
    int cmd[2], ack[2];
    pipe(cmd);
    pipe(ack);
    pid_t helper = fork();
    if (helper == 0) {
        close(cmd[1]);
        close(ack[0]);
        char c;
        while (read(cmd[0], &c, 1) == 1) {
            if (c == 'w') {
                int w2 = open(at("h"), O_WRONLY);
                pwrite(w2, "J", 1, 0);
                close(w2);
            } else if (c == 'r') {
                put("h2", "replaced");
                char from[8192];
                snprintf(from, sizeof from, "%s", at("h2"));
                rename(from, at("h"));
            } else if (c == 'm') {
                chmod(at("h"), 0);
            } else if (c == 'u') {
                unlink(at("h"));
            }
            write(ack[1], &c, 1);
        }
        _exit(0);
    }
    close(cmd[0]);
    close(ack[1]);
    for (int i = 0; i < 4; i++) {
        r = open(at("h"), i % 2 ? O_RDONLY | O_CLOEXEC : O_RDONLY);
        printf("again-cloexec %d\n", fcntl(r, F_GETFD) & FD_CLOEXEC);
        printf("again-flags  %o\n", fcntl(r, F_GETFL));
        show("again", r, 5);
        close(r);
    }
    r = open(at("h"), O_RDONLY);
    show("again-dup", r, 6);
    r2 = dup(r);
    show("again-dup2", r2, 6);
    close(r2);
    close(r);
    r = open(at("h"), O_RDONLY);
    struct stat st;
    fstat(r, &st);
    printf("again-fstat  %ld\n", (long)st.st_size);
    show("after-fstat", r, 5);
    close(r);
    r = open(at("h"), O_RDONLY);
    show("again-fork", r, 3);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        show("again-child", r, 3);
        r2 = open(at("h"), O_RDONLY);
        show("child-open", r2, 4);
        close(r2);
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    show("again-parent", r, 3);
    close(r);
    for (int i = 0; i < 3; i++) {
        r = open(at("h"), O_RDONLY);
        show("after-fork", r, 5);
        close(r);
    }
    const char *asks = "wrmu";
    const char *labels[] = {"helper-wrote", "renamed-over", "mode-0", "removed"};
    for (int k = 0; k < 4; k++) {
        write(cmd[1], &asks[k], 1);
        char a;
        read(ack[0], &a, 1);
        for (int i = 0; i < 3; i++) {
            r = open(at("h"), O_RDONLY);
            if (r < 0)
                printf("%-12s %d\n", labels[k], r);
            else
                show(labels[k], r, 8);
            close(r);
        }
    }
    close(cmd[1]);
    waitpid(helper, NULL, 0);

    /* A file longer than what comes with the open, read in pieces. */
    int big = open(at("big"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    static char data[100000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = 'a' + (i * 7 + i / 4096) % 26;
    write(big, data, sizeof data);
    close(big);
    big = open(at("big"), O_RDONLY);
    static char back[100000];
    size_t total = 0;
    ssize_t n;
    size_t sizes[] = {1, 4095, 4096, 8000, 3, 50000};
    for (int i = 0; (n = read(big, back + total, sizes[i % 6])) > 0; i++) total += n;
    printf("big          %zu %s at %ld\n", total, memcmp(back, data, sizeof data) ? "differs" : "same",
           (long)lseek(big, 0, SEEK_CUR));
    lseek(big, 16380, SEEK_SET);
    show("big-seam", big, 8);
    close(big);

    /* An inherited descriptor read partly here, then by a shell. */
    put("g", "line one\nline two\nline three\n");
    r = open(at("g"), O_RDONLY);
    show("before-exec", r, 5);
    dup2(r, 0);
    close(r);
    fflush(stdout);
    system("head -c 8; echo; cat");
    printf("stdin-after  %ld\n", (long)lseek(0, 0, SEEK_CUR));
    return 0;
}
"#;

#[test]
fn read_only_descriptors_read_what_the_file_holds_and_share_their_offset() {
    let (_build, binary) = compile_c(PROGRAM, &[]);
    same_as_tmpfs(&[binary.to_str().unwrap()], "held", "");
}

#[test]
fn shells_reading_lines_share_the_offset_with_what_they_run() {
    // `read` takes a line and seeks back to its end; what it runs continues from there.
    let script = r#"
        cd "$D"
        printf 'one\ntwo\nthree\nfour\nfive\n' > f
        { read a; read b; head -n 1; read c; echo "$a|$b|$c"; cat; } < f
        exec 3< f
        read -u 3 x; echo "$x"
        python3 -c 'import os; print(os.read(3, 6))'
        read -u 3 y; echo "$y"
        exec 3<&-
        while read l; do echo "[$l]"; done < f
    "#;
    same_as_tmpfs(BASH, "held-sh", script);
}

/// A writer thread fills a file with one byte value after another, each larger, while reader
/// threads open, read and close it (and a reader keeps one descriptor and reads it again from
/// the start). No byte a read returns may be older than the last write that had returned
/// before the read began: bytes the reader's process kept from an earlier open must never
/// stand in for a later write. (A read may see a write under way in part, as on tmpfs, whose
/// reads do not lock pages against writers.)
const RACE: &str = r#"
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define SIZE 6000
#define ROUNDS 3000
static char path[4096];
static atomic_int done;
static atomic_int failures;
/* Counts a failure; the first few are described. */
static void fail(const char *who, const char *what, long a, long b) {
    if (atomic_fetch_add(&failures, 1) < 3) printf("%s: %s %ld %ld\n", who, what, a, b);
}
static void check(const char *who, const unsigned char *buf, ssize_t n, int before) {
    if (n != SIZE) { fail(who, "short read", n, SIZE); return; }
    for (int i = 0; i < SIZE; i++)
        if (buf[i] < before) { fail(who, "old byte after write", buf[i], before); return; }
}
static void *writer(void *arg) {
    (void)arg;
    unsigned char buf[SIZE];
    int fd = open(path, O_WRONLY);
    for (int v = 1; v <= 250; v++) {
        memset(buf, v, SIZE);
        pwrite(fd, buf, SIZE, 0);
        atomic_store(&done, v);
        usleep(50);
    }
    close(fd);
    return NULL;
}
static void *reopener(void *arg) {
    unsigned char buf[SIZE + 1];
    for (int r = 0; r < ROUNDS && atomic_load(&done) < 250; r++) {
        int before = atomic_load(&done);
        int fd = open(path, O_RDONLY);
        ssize_t n = read(fd, buf, sizeof buf);
        close(fd);
        check(arg, buf, n, before);
    }
    return NULL;
}
static void *rereader(void *arg) {
    unsigned char buf[SIZE + 1];
    int fd = open(path, O_RDONLY);
    for (int r = 0; r < ROUNDS && atomic_load(&done) < 250; r++) {
        int before = atomic_load(&done);
        ssize_t n = pread(fd, buf, sizeof buf, 0);
        check(arg, buf, n, before);
        lseek(fd, 0, SEEK_SET);
        before = atomic_load(&done);
        n = read(fd, buf, sizeof buf);
        check(arg, buf, n, before);
    }
    close(fd);
    return NULL;
}
int main(void) {
    snprintf(path, sizeof path, "%s/race", getenv("D"));
    unsigned char zero[SIZE] = {0};
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, zero, SIZE);
    close(fd);
    pthread_t w, a, b, c;
    pthread_create(&a, NULL, reopener, "reopener-1");
    pthread_create(&b, NULL, reopener, "reopener-2");
    pthread_create(&c, NULL, rereader, "rereader");
    pthread_create(&w, NULL, writer, NULL);
    pthread_join(w, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_join(c, NULL);
    printf("failures %d\n", atomic_load(&failures));
    return 0;
}
"#;

#[test]
fn kept_bytes_never_stand_in_for_a_finished_write() {
    let (_build, binary) = compile_c(RACE, &["-pthread"]);
    same_as_tmpfs(&[binary.to_str().unwrap()], "held-race", "");
}
