/* The variadic members of the exec family (execl, execle and execlp), and dprintf with its
 * relatives and syscall (below).
 *
 * glibc builds their argument vector and calls its internal execve, which no interposer
 * sees, so the next program would not receive the btfuse descriptors. These build the
 * vector the same way (on the stack: the functions must stay async-signal-safe and usable
 * after vfork) and call the library's execve and execvp, which hand the descriptors on.
 * Stable Rust cannot define C-variadic functions, hence C. */

#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

extern char **environ;

/* Counts the arguments after `arg` up to the terminating null pointer; -1 (E2BIG) if
 * there are too many for an int, as glibc answers. */
#define COUNT_ARGS(argc, arg, ap)                                                         \
    do {                                                                              \
        va_start(ap, arg);                                                            \
        for (argc = 1; va_arg(ap, const char *) != NULL; argc++) {                    \
            if (argc == INT_MAX) {                                                    \
                va_end(ap);                                                           \
                errno = E2BIG;                                                        \
                return -1;                                                            \
            }                                                                         \
        }                                                                             \
        va_end(ap);                                                                   \
    } while (0)

/* Fills argv[0..argc]: `arg`, then from `ap` (started after `arg`) the argc - 1 arguments
 * COUNT_ARGS counted and the null pointer that ends them. */
#define FILL_ARGV(argv, argc, arg, ap)                                                    \
    do {                                                                              \
        (argv)[0] = (char *)(arg);                                                    \
        for (ptrdiff_t i_ = 1; i_ <= (argc); i_++)                                    \
            (argv)[i_] = va_arg(ap, char *);                                          \
    } while (0)

__attribute__((visibility("default"))) int execl(const char *path, const char *arg, ...) {
    ptrdiff_t argc;
    va_list ap;
    COUNT_ARGS(argc, arg, ap);
    char *argv[argc + 1];
    va_start(ap, arg);
    FILL_ARGV(argv, argc, arg, ap);
    va_end(ap);
    return execve(path, argv, environ);
}

__attribute__((visibility("default"))) int execle(const char *path, const char *arg, ...) {
    ptrdiff_t argc;
    va_list ap;
    COUNT_ARGS(argc, arg, ap);
    char *argv[argc + 1];
    char **envp;
    va_start(ap, arg);
    FILL_ARGV(argv, argc, arg, ap);
    envp = va_arg(ap, char **);
    va_end(ap);
    return execve(path, argv, envp);
}

__attribute__((visibility("default"))) int execlp(const char *file, const char *arg, ...) {
    ptrdiff_t argc;
    va_list ap;
    COUNT_ARGS(argc, arg, ap);
    char *argv[argc + 1];
    va_start(ap, arg);
    FILL_ARGV(argv, argc, arg, ap);
    va_end(ap);
    return execvp(file, argv);
}

/* dprintf and its relatives: glibc formats into a stream over the descriptor and writes with
 * its internal write, which no interposer sees, so a btfuse descriptor would fail with EBADF.
 * For one, the text is formatted here and written with the library's write; any other
 * descriptor goes to glibc's own function. */

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

/* Defined in Rust (calls/io.rs): whether `fd` is a btfuse descriptor. */
extern int btfuse_preload_descriptor(int fd);

/* Formats and writes all of it with the library's write; the count, or -1 with errno. */
static int write_formatted(int fd, const char *format, va_list ap) {
    char *text;
    int n = vasprintf(&text, format, ap);
    if (n < 0)
        return -1;
    size_t done = 0;
    while (done < (size_t)n) {
        ssize_t w = write(fd, text + done, (size_t)n - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int saved = errno;
            free(text);
            errno = saved;
            return -1;
        }
        done += (size_t)w;
    }
    free(text);
    return n;
}

typedef int (*vdprintf_fn)(int, const char *, va_list);
typedef int (*vdprintf_chk_fn)(int, int, const char *, va_list);

__attribute__((visibility("default"))) int vdprintf(int fd, const char *format, va_list ap) {
    if (btfuse_preload_descriptor(fd))
        return write_formatted(fd, format, ap);
    vdprintf_fn next = (vdprintf_fn)dlsym(RTLD_NEXT, "vdprintf");
    return next(fd, format, ap);
}

__attribute__((visibility("default"))) int dprintf(int fd, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    int n = vdprintf(fd, format, ap);
    va_end(ap);
    return n;
}

__attribute__((visibility("default"))) int __vdprintf_chk(int fd, int flag, const char *format,
                                                          va_list ap) {
    if (btfuse_preload_descriptor(fd))
        return write_formatted(fd, format, ap);
    vdprintf_chk_fn next = (vdprintf_chk_fn)dlsym(RTLD_NEXT, "__vdprintf_chk");
    return next(fd, flag, format, ap);
}

__attribute__((visibility("default"))) int __dprintf_chk(int fd, int flag, const char *format,
                                                         ...) {
    va_list ap;
    va_start(ap, format);
    int n = __vdprintf_chk(fd, flag, format, ap);
    va_end(ap);
    return n;
}

/* syscall: a program that makes a file system call by number (nix's copy_file_range, for
 * one) bypasses every wrapper above, and the kernel would meet a btfuse descriptor's
 * placeholder. The calls this library serves are given to its own function of that name;
 * every other number goes to glibc's syscall. Six arguments are read whatever the number,
 * as glibc's own syscall reads them (on x86-64 the unused ones are whatever the registers
 * hold). */

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/types.h>

typedef long (*syscall_fn)(long, long, long, long, long, long, long);

/* In .data beside the library's other early statics (see hot.rs): in .bss it made a page
 * of its own, faulted in by every process. */
__attribute__((section(".data.btfuse.syscall"))) static syscall_fn next_syscall;

/* Found when the library loads, so that no later call (the channel's own futex waits
 * among them) asks the dynamic loader. */
__attribute__((constructor, section(".text.hot.btfuse"))) static void find_next_syscall(void) {
    next_syscall = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
}

/* Hot: the library's own raw calls (listing the socket directories) come here too. */
__attribute__((visibility("default"), section(".text.hot.btfuse"))) long syscall(long number,
                                                                                  ...) {
    va_list ap;
    va_start(ap, number);
    long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
    long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
    va_end(ap);
    switch (number) {
    case SYS_copy_file_range:
        return copy_file_range((int)a1, (off_t *)a2, (int)a3, (off_t *)a4, (size_t)a5,
                               (unsigned)a6);
    case SYS_fallocate:
        return fallocate((int)a1, (int)a2, (off_t)a3, (off_t)a4);
    case SYS_getdents64:
        return getdents64((int)a1, (void *)a2, (size_t)a3);
    case SYS_unshare:
        return unshare((int)a1);
    case SYS_setns:
        return setns((int)a1, (int)a2);
    default:
        break;
    }
    if (next_syscall == NULL)
        find_next_syscall();
    return next_syscall(number, a1, a2, a3, a4, a5, a6);
}

/* vfork: a function that calls the real vfork cannot return to its caller afterwards (the
 * child, returning first, reuses the stack frame the parent returns through), so this one
 * asks the library where to go (btfuse_vfork_target: libc's vfork, or the library's fork)
 * and jumps there with the caller's return address on top of the stack, as if the caller
 * had called it directly. */
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork, @function\n"
        "vfork:\n"
        "    sub $8, %rsp\n" /* the stack 16-byte aligned for the call */
        "    call btfuse_vfork_target@PLT\n"
        "    add $8, %rsp\n"
        "    jmp *%rax\n"
        ".size vfork, .-vfork\n");
#else
__attribute__((visibility("default"))) pid_t vfork(void) {
    return fork();
}
#endif
