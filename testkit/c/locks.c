/* Lock semantics, call for call: run in a directory of tmpfs and of btfuse (through the
 * mount, under the preload, on the ring alone) and compare the transcripts.
 *
 *   locks DIR              every scenario, in DIR (a fresh directory)
 *   locks hold FILE        takes locks on FILE, prints "held", and keeps them until stdin ends
 *   locks probe FILE PID   tests the locks `hold` took (PID is the holder's) and prints what
 *                          it finds
 *   locks counter DIR      4 processes add 1 to a counter in DIR/counter 250 times each,
 *                          under `flock`, then under `lockf`, and print the totals (1000 each)
 *   locks add FILE N LOCK  adds 1 to the counter in FILE N times under LOCK (`flock` or
 *                          `lockf`): one of several such processes, started apart
 *
 * Process ids are printed only as "holder"/"other", so transcripts compare across runs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *err(int rc) {
    if (rc == 0) return "ok";
    switch (errno) {
    case EAGAIN: return "EAGAIN";
    case EACCES: return "EACCES";
    case EDEADLK: return "EDEADLK";
    case EINTR: return "EINTR";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ENOLCK: return "ENOLCK";
    default: return strerror(errno);
    }
}

static int lk(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {0};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = len;
    return fcntl(fd, cmd, &fl);
}

static const char *type_name(short t) {
    return t == F_RDLCK ? "read" : t == F_WRLCK ? "write" : t == F_UNLCK ? "unlocked" : "?";
}

/* F_GETLK (or F_OFD_GETLK) and what it says, the pid as "holder" when it is `holder` (not
 * shown when `holder` is -2). */
static void getlk(const char *what, int fd, int cmd, short type, off_t start, off_t len,
                  pid_t holder) {
    struct flock fl = {0};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = len;
    if (cmd == F_OFD_GETLK) fl.l_pid = 0;
    int rc = fcntl(fd, cmd, &fl);
    if (rc != 0) { printf("%s: getlk %s\n", what, err(rc)); return; }
    if (fl.l_type == F_UNLCK) { printf("%s: unlocked\n", what); return; }
    printf("%s: %s start %ld len %ld pid %s\n", what, type_name(fl.l_type), (long)fl.l_start,
           (long)fl.l_len,
           holder == -2 ? "not shown"
           : fl.l_pid == holder ? "holder" : fl.l_pid == -1 ? "-1" : "other");
}

static int open_file(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) { perror(path); exit(2); }
    return fd;
}

/* Runs `child` in a forked process and waits for it. */
static void in_child(void (*child)(const char *, pid_t), const char *dir) {
    pid_t parent = getpid();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) { child(dir, parent); fflush(stdout); _exit(0); }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) printf("child failed %d\n", status);
}

static void conflicting_child(const char *dir, pid_t parent) {
    int fd = open_file(dir, "conflict");
    printf("read 5..6: %s\n", err(lk(fd, F_SETLK, F_RDLCK, 5, 1)));
    printf("write 10..20: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 10, 10)));
    getlk("getlk 0..100", fd, F_GETLK, F_RDLCK, 0, 100, parent);
    getlk("getlk 20..", fd, F_GETLK, F_WRLCK, 20, 0, parent);
}

static void updown_child(const char *dir, pid_t parent) {
    int fd = open_file(dir, "updown");
    getlk("child sees", fd, F_GETLK, F_WRLCK, 0, 0, parent);
    printf("child read 50..60: %s\n", err(lk(fd, F_SETLK, F_RDLCK, 50, 10)));
    printf("child write 50..60: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 50, 10)));
}

static void split_child(const char *dir, pid_t parent) {
    int fd = open_file(dir, "split");
    getlk("0..100", fd, F_GETLK, F_RDLCK, 0, 100, parent);
    getlk("40..60", fd, F_GETLK, F_RDLCK, 40, 20, parent);
    getlk("50..", fd, F_GETLK, F_RDLCK, 50, 0, parent);
    getlk("60..61", fd, F_GETLK, F_RDLCK, 60, 1, parent);
}

static void try_write_child(const char *dir, pid_t parent) {
    (void)parent;
    int fd = open_file(dir, "closing");
    printf("child write all: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 0)));
}

static int inherited_fd = -1;

static void fork_child(const char *dir, pid_t parent) {
    int fd = inherited_fd;
    getlk("posix from child", fd, F_GETLK, F_WRLCK, 0, 10, parent);
    printf("posix relock by child: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 10)));
    printf("ofd relock on inherited fd: %s\n", err(lk(fd, F_OFD_SETLK, F_WRLCK, 20, 10)));
    int other = open_file(dir, "fork");
    printf("ofd on a new open: %s\n", err(lk(other, F_OFD_SETLK, F_WRLCK, 20, 10)));
    getlk("ofd getlk from a new open", other, F_OFD_GETLK, F_WRLCK, 20, 10, parent);
    printf("flock on inherited fd: %s\n", err(flock(fd, LOCK_EX | LOCK_NB)));
    printf("flock on a new open: %s\n", err(flock(other, LOCK_EX | LOCK_NB)));
    close(other);
}

static void on_alarm(int sig) { (void)sig; }

static void scenarios(const char *dir) {
    printf("== conflicting ranges\n");
    int fd = open_file(dir, "conflict");
    printf("write 0..10: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 10)));
    in_child(conflicting_child, dir);
    close(fd);

    printf("== upgrade and downgrade\n");
    fd = open_file(dir, "updown");
    printf("read 0..100: %s\n", err(lk(fd, F_SETLK, F_RDLCK, 0, 100)));
    in_child(updown_child, dir);
    printf("upgrade 0..100: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 100)));
    in_child(updown_child, dir);
    printf("downgrade 0..50: %s\n", err(lk(fd, F_SETLK, F_RDLCK, 0, 50)));
    in_child(updown_child, dir);
    close(fd);

    printf("== split and merge\n");
    fd = open_file(dir, "split");
    printf("write 0..100: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 100)));
    printf("unlock 40..60: %s\n", err(lk(fd, F_SETLK, F_UNLCK, 40, 20)));
    in_child(split_child, dir);
    printf("read 50..55: %s\n", err(lk(fd, F_SETLK, F_RDLCK, 50, 5)));
    in_child(split_child, dir);
    printf("write 40..60: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 40, 20)));
    in_child(split_child, dir);
    printf("negative length, write 100 back 30: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 100, -30)));
    printf("bad range: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 5, -10)));
    printf("bad type: %s\n", err(lk(fd, F_SETLK, 99, 0, 1)));
    close(fd);

    printf("== close of another descriptor\n");
    fd = open_file(dir, "closing");
    int other = open_file(dir, "closing");
    printf("write all: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 0)));
    in_child(try_write_child, dir);
    close(other);
    in_child(try_write_child, dir);
    close(fd);

    printf("== read-only and write-only descriptors\n");
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, "closing");
        int ro = open(path, O_RDONLY);
        printf("write lock on O_RDONLY: %s\n", err(lk(ro, F_SETLK, F_WRLCK, 0, 1)));
        printf("read lock on O_RDONLY: %s\n", err(lk(ro, F_SETLK, F_RDLCK, 0, 1)));
        close(ro);
        int wo = open(path, O_WRONLY);
        printf("read lock on O_WRONLY: %s\n", err(lk(wo, F_SETLK, F_RDLCK, 0, 1)));
        printf("flock shared on O_WRONLY: %s\n", err(flock(wo, LOCK_SH | LOCK_NB)));
        close(wo);
    }

    printf("== fork\n");
    fd = open_file(dir, "fork");
    inherited_fd = fd;
    printf("posix write 0..10: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 10)));
    printf("ofd write 20..30: %s\n", err(lk(fd, F_OFD_SETLK, F_WRLCK, 20, 10)));
    printf("flock ex: %s\n", err(flock(fd, LOCK_EX)));
    in_child(fork_child, dir);
    close(fd);

    printf("== ofd and posix conflict, flock apart\n");
    fd = open_file(dir, "spaces");
    other = open_file(dir, "spaces");
    printf("ofd write 0..10: %s\n", err(lk(fd, F_OFD_SETLK, F_WRLCK, 0, 10)));
    printf("ofd write on another open: %s\n", err(lk(other, F_OFD_SETLK, F_WRLCK, 5, 1)));
    printf("posix write, same process: %s\n", err(lk(other, F_SETLK, F_WRLCK, 5, 1)));
    printf("flock on the first: %s\n", err(flock(fd, LOCK_EX | LOCK_NB)));
    printf("flock on the other: %s\n", err(flock(other, LOCK_SH | LOCK_NB)));
    printf("flock unlock: %s\n", err(flock(fd, LOCK_UN)));
    printf("flock shared on the other: %s\n", err(flock(other, LOCK_SH | LOCK_NB)));
    printf("flock shared on the first: %s\n", err(flock(fd, LOCK_SH | LOCK_NB)));
    printf("flock upgrade with a sharer: %s\n", err(flock(fd, LOCK_EX | LOCK_NB)));
    printf("flock the other up after the first lost its lock: %s\n",
           err(flock(other, LOCK_EX | LOCK_NB)));
    close(other);
    printf("ofd lock survives closing another open: %s\n",
           err(lk(open_file(dir, "spaces"), F_OFD_SETLK, F_WRLCK, 5, 1)));
    close(fd);

    printf("== flock goes with the description's last close\n");
    fd = open_file(dir, "lastclose");
    other = open_file(dir, "lastclose");
    int dup_fd = dup(fd);
    printf("flock ex: %s\n", err(flock(fd, LOCK_EX | LOCK_NB)));
    printf("flock sh on another open: %s\n", err(flock(other, LOCK_SH | LOCK_NB)));
    close(fd);
    printf("after closing one of two descriptors: %s\n", err(flock(other, LOCK_SH | LOCK_NB)));
    printf("flock again through the dup: %s\n", err(flock(dup_fd, LOCK_EX | LOCK_NB)));
    close(dup_fd);
    printf("after the last close: %s\n", err(flock(other, LOCK_EX | LOCK_NB)));
    close(other);

    printf("== lockf\n");
    fd = open_file(dir, "lockf");
    if (write(fd, "0123456789", 10) != 10) printf("short write\n");
    lseek(fd, 2, SEEK_SET);
    printf("F_LOCK 3: %s\n", err(lockf(fd, F_LOCK, 3)));
    printf("F_TEST 3 own: %s\n", err(lockf(fd, F_TEST, 3)));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        lseek(fd, 0, SEEK_SET);
        printf("child F_TEST 10: %s\n", err(lockf(fd, F_TEST, 10)));
        printf("child F_TLOCK 3: %s\n", err(lockf(fd, F_TLOCK, 3)));
        lseek(fd, 5, SEEK_SET);
        printf("child F_TLOCK 3 after: %s\n", err(lockf(fd, F_TLOCK, 3)));
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    lseek(fd, 2, SEEK_SET);
    printf("F_ULOCK: %s\n", err(lockf(fd, F_ULOCK, 3)));
    close(fd);

    printf("== a SIGKILLed holder\n");
    {
        int ready[2];
        if (pipe(ready) != 0) exit(2);
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            int cfd = open_file(dir, "killed");
            lk(cfd, F_SETLK, F_WRLCK, 0, 0);
            flock(cfd, LOCK_EX);
            if (write(ready[1], "x", 1) != 1) _exit(3);
            pause();
            _exit(0);
        }
        char c;
        if (read(ready[0], &c, 1) != 1) printf("no ready\n");
        fd = open_file(dir, "killed");
        printf("while held: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 1)));
        printf("flock while held: %s\n", err(flock(fd, LOCK_EX | LOCK_NB)));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        printf("after kill: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 1)));
        printf("flock after kill: %s\n", err(flock(fd, LOCK_EX | LOCK_NB)));
        close(fd);
        close(ready[0]);
        close(ready[1]);
    }

    printf("== a wait granted, and EDEADLK\n");
    {
        int ready[2];
        if (pipe(ready) != 0) exit(2);
        fd = open_file(dir, "deadlock");
        printf("parent byte 0: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 1)));
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            int cfd = open_file(dir, "deadlock");
            printf("child byte 1: %s\n", err(lk(cfd, F_SETLK, F_WRLCK, 1, 1)));
            fflush(stdout);
            if (write(ready[1], "x", 1) != 1) _exit(3);
            int rc = lk(cfd, F_SETLKW, F_WRLCK, 0, 1);
            printf("child waited for byte 0: %s\n", err(rc));
            fflush(stdout);
            _exit(0);
        }
        char c;
        if (read(ready[0], &c, 1) != 1) printf("no ready\n");
        usleep(500 * 1000); /* the child parks its wait */
        printf("parent waits for byte 1: %s\n", err(lk(fd, F_SETLKW, F_WRLCK, 1, 1)));
        fflush(stdout);
        /* Printed first: the woken child may print before this unlock returns. */
        printf("parent unlocks byte 0\n");
        fflush(stdout);
        int rc = lk(fd, F_SETLK, F_UNLCK, 0, 1);
        waitpid(pid, NULL, 0);
        printf("unlocked: %s\n", err(rc));
        close(fd);
        close(ready[0]);
        close(ready[1]);
    }

    printf("== SETLKW interrupted by a signal\n");
    fd = open_file(dir, "interrupted");
    printf("parent write: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 0)));
    printf("parent flock: %s\n", err(flock(fd, LOCK_EX)));
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        struct sigaction sa = {0};
        sa.sa_handler = on_alarm; /* no SA_RESTART */
        sigaction(SIGALRM, &sa, NULL);
        int cfd = open_file(dir, "interrupted");
        struct itimerval t = {{0, 0}, {0, 300 * 1000}};
        setitimer(ITIMER_REAL, &t, NULL);
        printf("child setlkw: %s\n", err(lk(cfd, F_SETLKW, F_WRLCK, 0, 1)));
        setitimer(ITIMER_REAL, &t, NULL);
        printf("child flock: %s\n", err(flock(cfd, LOCK_EX)));
        getlk("still held", cfd, F_GETLK, F_WRLCK, 0, 1, getppid());
        printf("flock still held: %s\n", err(flock(cfd, LOCK_SH | LOCK_NB)));
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    close(fd);
}

/* Opens the counter in `path` (a description of its own, so `flock` excludes the other
 * adders) and adds 1 to it `times` times, reading and writing it whole under the lock; 0 when
 * every lock call succeeded. */
static int add(const char *path, int times, int use_lockf) {
    int fd = open(path, O_RDWR);
    if (fd < 0) { perror(path); return 1; }
    for (int i = 0; i < times; i++) {
        int rc = use_lockf ? lockf(fd, F_LOCK, 0) : flock(fd, LOCK_EX);
        if (rc != 0) { printf("lock: %s\n", err(rc)); return 1; }
        char buf[32] = {0};
        if (pread(fd, buf, sizeof buf - 1, 0) < 0) return 1;
        int len = snprintf(buf, sizeof buf, "%d", atoi(buf) + 1);
        if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, len, 0) != len) return 1;
        rc = use_lockf ? lockf(fd, F_ULOCK, 0) : flock(fd, LOCK_UN);
        if (rc != 0) { printf("unlock: %s\n", err(rc)); return 1; }
    }
    close(fd);
    return 0;
}

/* 4 processes add 1 to the counter 250 times each. */
static void count(const char *dir, int use_lockf) {
    int fd = open_file(dir, "counter");
    if (ftruncate(fd, 0) != 0 || pwrite(fd, "0", 1, 0) != 1) exit(2);
    close(fd);
    char path[4096];
    snprintf(path, sizeof path, "%s/counter", dir);
    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        fflush(stdout);
        kids[k] = fork();
        if (kids[k] == 0) _exit(add(path, 250, use_lockf));
    }
    int failed = 0;
    for (int k = 0; k < 4; k++) {
        int status;
        waitpid(kids[k], &status, 0);
        failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    fd = open_file(dir, "counter");
    char buf[32] = {0};
    if (pread(fd, buf, sizeof buf - 1, 0) < 0) exit(2);
    close(fd);
    printf("%s counter: %s (%d failed)\n", use_lockf ? "lockf" : "flock", buf, failed);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && strcmp(argv[1], "hold") == 0) {
        int fd = open(argv[2], O_RDWR | O_CREAT, 0644);
        int fd2 = open(argv[2], O_RDWR);
        printf("posix write 0..10: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 10)));
        printf("posix read 50..: %s\n", err(lk(fd, F_SETLK, F_RDLCK, 50, 0)));
        printf("ofd write 20..30: %s\n", err(lk(fd2, F_OFD_SETLK, F_WRLCK, 20, 10)));
        printf("flock ex: %s\n", err(flock(fd, LOCK_EX | LOCK_NB)));
        printf("held\n");
        char buf[64];
        while (read(0, buf, sizeof buf) > 0) {}
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "probe") == 0) {
        pid_t holder = (pid_t)atoi(argv[3]);
        int fd = open(argv[2], O_RDWR);
        getlk("getlk 0..100", fd, F_GETLK, F_WRLCK, 0, 100, holder);
        getlk("getlk 5", fd, F_GETLK, F_RDLCK, 5, 1, holder);
        /* Its pid is left out: an OFD lock taken through the FUSE mount reports its taker's
         * pid rather than -1 (FUSE does not tell the daemon an OFD lock from a POSIX one). */
        getlk("ofd getlk 20..30", fd, F_OFD_GETLK, F_RDLCK, 20, 10, -2);
        getlk("getlk 60..", fd, F_GETLK, F_WRLCK, 60, 0, holder);
        printf("write 5: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 5, 1)));
        printf("ofd write 25: %s\n", err(lk(fd, F_OFD_SETLK, F_WRLCK, 25, 1)));
        printf("read 60: %s\n", err(lk(fd, F_SETLK, F_RDLCK, 60, 1)));
        printf("write 60: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 60, 1)));
        printf("write 10..20: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 10, 10)));
        printf("flock ex: %s\n", err(flock(fd, LOCK_EX | LOCK_NB)));
        printf("flock sh: %s\n", err(flock(fd, LOCK_SH | LOCK_NB)));
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "counter") == 0) {
        count(argv[2], 0);
        count(argv[2], 1);
        return 0;
    }
    if (argc >= 5 && strcmp(argv[1], "add") == 0)
        return add(argv[2], atoi(argv[3]), strcmp(argv[4], "lockf") == 0);
    if (argc != 2) { fprintf(stderr, "usage: locks DIR\n"); return 2; }
    scenarios(argv[1]);
    return 0;
}
