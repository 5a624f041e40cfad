/* The variadic members of the exec family: execl, execle and execlp.
 *
 * glibc builds their argument vector and calls its internal execve, which no interposer
 * sees, so the next program would not receive the btfuse descriptors. These build the
 * vector the same way (on the stack: the functions must stay async-signal-safe and usable
 * after vfork) and call the library's execve and execvp, which hand the descriptors on.
 * Stable Rust cannot define C-variadic functions, hence C. */

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
