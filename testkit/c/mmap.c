/* mmap of files, call for call: run in a directory of tmpfs and of btfuse and compare the
 * transcripts.
 *
 *   mmap DIR [private-only]   `private-only` leaves out shared writable mappings (the ring
 *                             without a mount refuses them with ENODEV) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *err(void) {
    switch (errno) {
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case ENODEV: return "ENODEV";
    case EBADF: return "EBADF";
    default: return strerror(errno);
    }
}

static void show_file(const char *what, int fd, size_t n) {
    char buf[64] = {0};
    ssize_t got = pread(fd, buf, n < sizeof buf - 1 ? n : sizeof buf - 1, 0);
    printf("%s: read %zd [%s]\n", what, got, buf);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return 2;
    int shared_writable = !(argc >= 3 && strcmp(argv[2], "private-only") == 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/mapped", argv[1]);
    long page = sysconf(_SC_PAGESIZE);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror("open"); return 2; }
    char text[] = "hello, mapped world";
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) return 2;
    if (ftruncate(fd, 2 * page) != 0) return 2;

    char *priv = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (priv == MAP_FAILED) { printf("private map: %s\n", err()); return 1; }
    printf("private sees [%.19s]\n", priv);
    memcpy(priv, "HELLO", 5);
    priv[page] = 'Z';
    printf("private after store [%.19s] second page %c\n", priv, priv[page]);
    show_file("file after private store", fd, 19);

    char *ro = mmap(NULL, page, PROT_READ, MAP_PRIVATE, fd, 0);
    printf("read-only private [%.19s]\n", ro == MAP_FAILED ? err() : ro);
    if (ro != MAP_FAILED) {
        printf("mprotect to write: %d\n", mprotect(ro, page, PROT_READ | PROT_WRITE));
        ro[0] = 'j';
        printf("after mprotect store [%.5s]\n", ro);
        printf("madvise: %d\n", madvise(ro, page, MADV_DONTNEED) == 0 || errno == EINVAL);
        munmap(ro, page);
    }
    printf("unaligned offset: %s\n", mmap(NULL, page, PROT_READ, MAP_PRIVATE, fd, 1) == MAP_FAILED ? err() : "mapped");
    printf("zero length: %s\n", mmap(NULL, 0, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED ? err() : "mapped");
    printf("second page offset [%c]\n", ((char *)mmap(NULL, page, PROT_READ, MAP_PRIVATE, fd, page))[0] == 0 ? '0' : '?');

    int wo = open(path, O_WRONLY);
    printf("private map of O_WRONLY: %s\n", mmap(NULL, page, PROT_READ, MAP_PRIVATE, wo, 0) == MAP_FAILED ? err() : "mapped");
    close(wo);

    if (shared_writable) {
        char *sh = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (sh == MAP_FAILED) { printf("shared map: %s\n", err()); return 1; }
        close(fd); /* the mapping stays valid */
        memcpy(sh + 7, "MAPPED", 6);
        sh[page + 1] = 'Q';
        printf("msync: %d\n", msync(sh, 2 * page, MS_SYNC));
        fd = open(path, O_RDONLY);
        show_file("file after shared store", fd, 19);
        char c = 0;
        printf("second page byte: %zd %c\n", pread(fd, &c, 1, page + 1), c);
        /* A write through the descriptor shows in the shared mapping. */
        int w = open(path, O_WRONLY);
        if (pwrite(w, "howdy", 5, 0) != 5) printf("pwrite failed\n");
        close(w);
        printf("mapping after write [%.19s]\n", sh);
        printf("munmap: %d\n", munmap(sh, 2 * page));
        int ro_fd = open(path, O_RDONLY);
        printf("shared writable of O_RDONLY: %s\n",
               mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, ro_fd, 0) == MAP_FAILED ? err() : "mapped");
        char *shr = mmap(NULL, page, PROT_READ, MAP_SHARED, ro_fd, 0);
        printf("shared read-only of O_RDONLY [%.19s]\n", shr == MAP_FAILED ? err() : shr);
        close(ro_fd);
    }
    munmap(priv, 2 * page);
    close(fd);
    return 0;
}
