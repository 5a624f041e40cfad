/* The calls glibc makes through internal entry points or that came late to the library:
 * fortified and old-ABI entry points, dprintf, fallocate and the advice calls, copies
 * between descriptors (sendfile, splice, copy_file_range, syscall by number), unique names,
 * the utimes family, mknod and remove, and a name from a kernel descriptor of / that leads
 * into $D. Every result is printed, so a run under the preload and one on tmpfs compare.
 * Built with -O2 -D_FORTIFY_SOURCE=2 (the _chk entry points). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>
#include <utime.h>

int __xstat(int, const char *, struct stat *);
int __lxstat(int, const char *, struct stat *);
int __fxstat(int, int, struct stat *);
int __fxstatat(int, int, const char *, struct stat *, int);

static void show(const char *what, long rc) {
    if (rc < 0)
        printf("%s: %ld %s\n", what, rc, strerror(errno));
    else
        printf("%s: %ld\n", what, rc);
    errno = 0;
}

static void contents(const char *name) {
    char buf[256] = {0};
    int fd = open(name, O_RDONLY);
    long n = read(fd, buf, sizeof buf - 1);
    close(fd);
    for (long i = 0; i < n; i++)
        if (buf[i] == 0)
            buf[i] = '.';
    printf("%s = [%.*s]\n", name, (int)(n < 0 ? 0 : n), buf);
}

static void times_of(const char *name, int follow) {
    struct stat st;
    int rc = follow ? stat(name, &st) : lstat(name, &st);
    printf("%s times: %d %ld.%09ld %ld.%09ld\n", name, rc, (long)st.st_atim.tv_sec,
           st.st_atim.tv_nsec, (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

int main(void) {
    const char *d = getenv("D");
    show("chdir", chdir(d));
    int dfd = open(".", O_RDONLY | O_DIRECTORY);
    int fd = open("f", O_CREAT | O_RDWR | O_TRUNC, 0644);
    show("write", write(fd, "hello world\n", 12));

    /* Fortified and old entry points. */
    volatile int flags = O_RDONLY;
    int r = openat(dfd, "f", flags);
    show("openat (fortified)", r >= 0);
    char small[4];
    volatile size_t want = sizeof small;
    show("read (fortified)", read(r, small, want));
    close(r);
    struct stat st;
    show("__xstat", __xstat(1, "f", &st));
    printf("size %ld\n", (long)st.st_size);
    show("__lxstat", __lxstat(1, "f", &st));
    show("__fxstat", __fxstat(1, fd, &st));
    show("__fxstatat", __fxstatat(1, dfd, "f", &st, 0));
    show("__xstat bad version", __xstat(99, "f", &st));
    show("symlink", symlink("f", "l"));
    char link[64];
    volatile size_t link_size = sizeof link;
    long n = readlink("l", link, link_size);
    printf("readlink (fortified): %ld %.*s\n", n, (int)(n < 0 ? 0 : n), link);
    char cwd[4096];
    printf("getcwd: %s\n", getcwd(cwd, sizeof cwd) ? "ok" : strerror(errno));
    char *cur = get_current_dir_name();
    printf("get_current_dir_name: %s\n", cur && strcmp(cur, cwd) == 0 ? "same" : "different");
    free(cur);

    /* dprintf. */
    show("dprintf", dprintf(fd, "%s-%d\n", "dp", 42));
    contents("f");

    /* fallocate and the advice calls. */
    show("fallocate", fallocate(fd, 0, 0, 8192));
    show("fstat", fstat(fd, &st));
    printf("size %ld\n", (long)st.st_size);
    show("fallocate keep size", fallocate(fd, FALLOC_FL_KEEP_SIZE, 8192, 4096));
    show("fstat", fstat(fd, &st));
    printf("size %ld\n", (long)st.st_size);
    show("pwrite", pwrite(fd, "tail", 4, 8188));
    show("punch", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096));
    show("hole at", lseek(fd, 0, SEEK_HOLE));
    show("data at", lseek(fd, 4096, SEEK_DATA));
    show("punch without keep size", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10));
    show("zero range", fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 10));
    show("fallocate len 0", fallocate(fd, 0, 0, 0));
    printf("posix_fallocate: %d\n", posix_fallocate(fd, 100, 20000));
    printf("posix_fallocate bad: %d\n", posix_fallocate(fd, 0, -1));
    show("fstat", fstat(fd, &st));
    printf("size %ld\n", (long)st.st_size);
    show("ftruncate", ftruncate(fd, 12 + 6));
    printf("posix_fadvise: %d\n", posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED));
    printf("posix_fadvise bad: %d\n", posix_fadvise(fd, 0, 0, 99));
    show("readahead", readahead(fd, 0, 4096));
    int wo = open("f", O_WRONLY);
    show("readahead write-only", readahead(wo, 0, 4096));
    close(wo);
    show("sync_file_range", sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE));
    show("sync_file_range bad", sync_file_range(fd, 0, 0, 0x80));
    show("syncfs", syncfs(fd));

    /* Copies between descriptors. */
    int pp[2];
    show("pipe", pipe(pp));
    off_t at = 0;
    show("sendfile to a pipe", sendfile(pp[1], fd, &at, 5));
    printf("offset %ld\n", (long)at);
    char buf[64] = {0};
    show("read pipe", read(pp[0], buf, 5));
    printf("[%s]\n", buf);
    show("write pipe", write(pp[1], "XYZ", 3));
    loff_t out = 1;
    show("splice into the file", splice(pp[0], NULL, fd, &out, 3, 0));
    printf("offset %ld\n", (long)out);
    loff_t in = 6;
    show("splice out of the file", splice(fd, &in, pp[1], NULL, 5, 0));
    memset(buf, 0, sizeof buf);
    show("read pipe", read(pp[0], buf, 5));
    printf("[%s]\n", buf);
    show("splice file to file", splice(fd, NULL, fd, NULL, 5, 0));
    int g = open("g", O_CREAT | O_RDWR | O_TRUNC, 0600);
    loff_t i0 = 0, o0 = 2;
    show("copy_file_range", copy_file_range(fd, &i0, g, &o0, 7, 0));
    printf("offsets %ld %ld\n", (long)i0, (long)o0);
    show("copy_file_range flags", copy_file_range(fd, NULL, g, NULL, 7, 1));
    i0 = 0, o0 = 3;
    show("copy_file_range overlap", copy_file_range(fd, &i0, fd, &o0, 7, 0));
    i0 = 0, o0 = 20;
    show("syscall copy_file_range", syscall(SYS_copy_file_range, fd, &i0, g, &o0, 4, 0));
    contents("f");
    contents("g");
    close(g);

    /* Unique names. */
    char t1[] = "tmpXXXXXX";
    int tf = mkstemp(t1);
    show("mkstemp", tf >= 0);
    struct stat ts;
    fstat(tf, &ts);
    printf("mode %o name %zu %s\n", ts.st_mode & 07777, strlen(t1), strncmp(t1, "tmp", 3) ? "?" : "tmp");
    close(tf);
    show("unlink", unlink(t1));
    char t2[] = "sXXXXXX.c";
    tf = mkostemps(t2, 2, O_CLOEXEC);
    show("mkostemps", tf >= 0);
    printf("cloexec %d suffix %s\n", fcntl(tf, F_GETFD) & FD_CLOEXEC, t2 + 7);
    close(tf);
    unlink(t2);
    char t3[] = "dXXXXXX";
    show("mkdtemp", mkdtemp(t3) != NULL);
    show("stat", stat(t3, &ts));
    printf("dir mode %o\n", ts.st_mode & 07777);
    show("remove dir", remove(t3));
    char t4[] = "bad";
    show("mkstemp bad template", mkstemp(t4));
    char t5[] = "mXXXXXX";
    show("mktemp", mktemp(t5)[0] != 0);
    show("mktemp made nothing", access(t5, F_OK));

    /* Times. */
    struct timeval tv[2] = {{1000, 500000}, {2000, 250}};
    show("utimes", utimes("f", tv));
    times_of("f", 1);
    tv[1].tv_sec = 3000;
    show("lutimes", lutimes("l", tv));
    times_of("l", 0);
    tv[0].tv_sec = 4000;
    show("futimes", futimes(fd, tv));
    times_of("f", 1);
    tv[0].tv_sec = 5000;
    show("futimesat", futimesat(dfd, "f", tv));
    times_of("f", 1);
    struct utimbuf ub = {6000, 7000};
    show("utime", utime("f", &ub));
    times_of("f", 1);
    tv[0].tv_usec = 1000000;
    show("utimes bad", utimes("f", tv));

    /* Nodes. */
    show("mknod regular", mknod("reg", S_IFREG | 0640, 0));
    show("stat", stat("reg", &ts));
    printf("mode %o size %ld\n", ts.st_mode, (long)ts.st_size);
    show("mknod existing", mknod("reg", S_IFREG | 0640, 0));
    show("mknod directory", mknod("dir", S_IFDIR | 0755, 0));
    show("remove file", remove("reg"));
    show("remove missing", remove("reg"));

    /* A name from a kernel directory that leads into this one. */
    int root = open("/", O_PATH | O_DIRECTORY);
    char rel[4096];
    snprintf(rel, sizeof rel, "%s/f", d + 1);
    show("fstatat from /", fstatat(root, rel, &ts, 0));
    printf("size %ld\n", (long)ts.st_size);
    snprintf(rel, sizeof rel, "%s/new", d + 1);
    int made = openat(root, rel, O_CREAT | O_WRONLY, 0600);
    show("openat from /", made >= 0);
    close(made);
    show("stat new", stat("new", &ts));

    DIR *dir = opendir(".");
    int count = 0;
    while (readdir(dir))
        count++;
    closedir(dir);
    printf("entries %d\n", count);
    return 0;
}
