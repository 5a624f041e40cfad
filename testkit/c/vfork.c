/* vfork children as shells make them, in directory DIR (argv[1]); prints a transcript that
 * must be the same on every filesystem and path.
 *
 * - A child of a parent with no descriptor open in DIR creates a file there and exits; the
 *   parent reads it, then uses DIR itself.
 * - A child puts a descriptor the parent holds on its standard output and executes echo.
 * - A child executes cat on a file of DIR, and one executes sh, which writes a file.
 * - After the parent's chdir into DIR, a child creates a file by a relative name.
 * - A child closes a descriptor the parent holds: the parent's stays usable.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(const char *text) {
    fflush(stdout);
    if (write(1, text, strlen(text)) < 0)
        _exit(3);
}

static void show(const char *label, const char *path) {
    char buf[256];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("%s: open %s\n", label, strerror(errno));
        return;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n < 0 ? 0 : n] = 0;
    printf("%s: [%s]\n", label, buf);
}

static int reap(pid_t pid) {
    int status = 0;
    if (pid < 0) {
        printf("vfork: %s\n", strerror(errno));
        return -1;
    }
    if (waitpid(pid, &status, 0) != pid)
        printf("waitpid: %s\n", strerror(errno));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: vfork DIR\n");
        return 2;
    }
    char a[4096], b[4096], c[4096];
    snprintf(a, sizeof a, "%s/a", argv[1]);
    snprintf(b, sizeof b, "%s/b", argv[1]);
    snprintf(c, sizeof c, "%s/c", argv[1]);

    /* Nothing of DIR open in the parent. */
    fflush(stdout);
    pid_t pid = vfork();
    if (pid == 0) {
        int fd = open(a, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (fd < 0 || write(fd, "from the child", 14) != 14)
            _exit(1);
        close(fd);
        _exit(0);
    }
    printf("creating child: status %d\n", reap(pid));
    show("its file", a);
    int fd = open(b, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    printf("parent writes: %zd\n", fd < 0 ? -1 : write(fd, "parent", 6));
    close(fd);
    show("parent's file", b);

    /* A descriptor of the parent's on the child's standard output. */
    fd = open(c, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    fflush(stdout);
    pid = vfork();
    if (pid == 0) {
        dup2(fd, 1);
        execl("/bin/echo", "echo", "echoed", (char *)NULL);
        _exit(127);
    }
    printf("echo child: status %d\n", reap(pid));
    close(fd);
    show("echoed", c);

    /* Programs reading and writing DIR. */
    say("cat child: ");
    pid = vfork();
    if (pid == 0) {
        execl("/bin/cat", "cat", a, (char *)NULL);
        _exit(127);
    }
    int status = reap(pid);
    printf("\ncat status %d\n", status);
    fflush(stdout);
    pid = vfork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "echo from sh > \"$0\"/d", argv[1], (char *)NULL);
        _exit(127);
    }
    printf("sh child: status %d\n", reap(pid));
    snprintf(c, sizeof c, "%s/d", argv[1]);
    show("sh's file", c);

    /* A relative name from the parent's working directory in DIR. */
    if (chdir(argv[1]) != 0)
        printf("chdir: %s\n", strerror(errno));
    fflush(stdout);
    pid = vfork();
    if (pid == 0) {
        int rel = open("relative", O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (rel < 0 || write(rel, "by its name", 11) != 11)
            _exit(1);
        close(rel);
        _exit(0);
    }
    printf("relative child: status %d\n", reap(pid));
    show("relative", "relative");

    /* The child closes the parent's descriptor. */
    fd = open("b", O_WRONLY | O_APPEND);
    fflush(stdout);
    pid = vfork();
    if (pid == 0) {
        close(fd);
        _exit(0);
    }
    printf("closing child: status %d\n", reap(pid));
    printf("parent appends: %zd\n", write(fd, " still", 6));
    close(fd);
    show("appended", "b");
    return 0;
}
