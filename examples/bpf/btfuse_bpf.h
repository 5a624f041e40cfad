/* btfuse_bpf.h: what a btfuse eBPF program sees and may call.
 *
 * A program is one function in section "btfuse" (mark it BTFUSE_PROGRAM). The daemon
 * (`btfuse-fuse --bpf PROG.o`, `btfuse-shm serve --bpf PROG.o`) runs it before every operation
 * that reaches the engine, from the FUSE mount and from the shared-memory ring alike, with a
 * pointer to a `struct btfuse_ctx`. It returns 0 to let the operation go on, or a positive
 * errno (EIO, EROFS, EACCES, ...) to fail it with that errno: nothing stored changes.
 *
 * Rules the loader enforces (a refused program is named with the reason):
 *  - at most BTFUSE_MAX_INSNS instructions and no backward jumps: a run never executes more
 *    than the program's length (unroll loops, `#pragma unroll`);
 *  - no global variables, string constants in read-only data or maps (no relocations):
 *    keep data on the stack or compare bytes one by one;
 *  - only the helpers below; functions other than the entry are `static __always_inline`.
 * A program that faults at run time (an access outside the context and its stack) fails
 * only that operation, with EIO, and is counted in btfuse_bpf_faults_total.
 *
 * Build: clang -O2 -g -target bpf -Iexamples/bpf -c PROG.bpf.c -o PROG.o
 *
 * Version 1. Numbers here never change meaning; new ones are only added, and a layout
 * change bumps BTFUSE_BPF_VERSION (the daemon fills `version`).
 */
#ifndef BTFUSE_BPF_H
#define BTFUSE_BPF_H

#define BTFUSE_BPF_VERSION 1

typedef unsigned char __u8;
typedef unsigned int __u32;
typedef unsigned long long __u64;

/* Operation kinds: one per engine call. */
#define BTFUSE_OP_LOOKUP 1      /* parent, name: one component of a path walk */
#define BTFUSE_OP_GETATTR 2     /* ino */
#define BTFUSE_OP_SETATTR 3     /* ino; flags: BTFUSE_SET_*; mode, length (new size) */
#define BTFUSE_OP_MKNOD 4       /* parent, name; mode (S_IFMT | permissions) */
#define BTFUSE_OP_MKDIR 5       /* parent, name; mode */
#define BTFUSE_OP_CREATE 6      /* parent, name; mode; flags (O_CREAT | O_*) */
#define BTFUSE_OP_UNLINK 7      /* parent, name */
#define BTFUSE_OP_RMDIR 8       /* parent, name */
#define BTFUSE_OP_RENAME 9      /* parent, name -> new_parent, new_name; flags: RENAME_* */
#define BTFUSE_OP_LINK 10       /* ino -> new_parent, new_name */
#define BTFUSE_OP_SYMLINK 11    /* parent, name; new_name: the target; length: its length */
#define BTFUSE_OP_READLINK 12   /* ino */
#define BTFUSE_OP_OPEN 13       /* ino; flags (O_*) */
#define BTFUSE_OP_READ 14       /* ino; offset, length */
#define BTFUSE_OP_WRITE 15      /* ino; offset, length */
#define BTFUSE_OP_FALLOCATE 16  /* ino; offset, length; flags: FALLOC_FL_* */
#define BTFUSE_OP_LSEEK 17      /* ino; offset; flags: SEEK_DATA (3) or SEEK_HOLE (4) */
#define BTFUSE_OP_READDIR 18    /* ino; offset: the cookie */
#define BTFUSE_OP_STATFS 19     /* nothing */
#define BTFUSE_OP_GETXATTR 20   /* ino; name: the attribute; length: the buffer */
#define BTFUSE_OP_SETXATTR 21   /* ino; name: the attribute; length: the value; flags */
#define BTFUSE_OP_LISTXATTR 22  /* ino; length: the buffer */
#define BTFUSE_OP_REMOVEXATTR 23 /* ino; name: the attribute */
#define BTFUSE_OP_ACCESS 24     /* ino; flags: R_OK | W_OK | X_OK */
#define BTFUSE_OP_FSYNC 25      /* ino; flags: 1 for fdatasync */

/* Where the operation came in. */
#define BTFUSE_FRONTEND_FUSE 1  /* the kernel, through the FUSE mount */
#define BTFUSE_FRONTEND_SHM 2   /* the shared-memory ring (the preload, the Rust client) */

/* SETATTR's flags: which attributes change. */
#define BTFUSE_SET_MODE 1
#define BTFUSE_SET_UID 2
#define BTFUSE_SET_GID 4
#define BTFUSE_SET_SIZE 8
#define BTFUSE_SET_ATIME 16
#define BTFUSE_SET_MTIME 32

#define BTFUSE_NAME_MAX 256

/* Open flags as Linux numbers them (x86-64, AArch64, RISC-V). */
#define BTFUSE_O_ACCMODE 3
#define BTFUSE_O_WRONLY 1
#define BTFUSE_O_RDWR 2
#define BTFUSE_O_CREAT 0100
#define BTFUSE_O_EXCL 0200
#define BTFUSE_O_TRUNC 01000
#define BTFUSE_O_APPEND 02000
#define BTFUSE_O_DIRECTORY 0200000

/* The operation. Names are zero-padded and not NUL-terminated when 256 bytes long: use the
 * lengths. For operations on an inode (open, read, getattr, ...), `name` and `parent` are the
 * name and directory by which the inode was last reached (looked up, created or renamed to),
 * empty when the daemon has not seen one. Fields an operation does not have are 0. */
struct btfuse_ctx {
    __u32 version;      /* BTFUSE_BPF_VERSION */
    __u32 op;           /* BTFUSE_OP_* */
    __u32 frontend;     /* BTFUSE_FRONTEND_* */
    __u32 uid;          /* the caller's effective (filesystem) uid */
    __u32 gid;
    __u32 pid;
    __u32 mode;
    __u32 flags;
    __u64 ino;
    __u64 parent;
    __u64 new_parent;
    __u64 offset;
    __u64 length;
    __u32 name_len;
    __u32 new_name_len;
    __u8 name[BTFUSE_NAME_MAX];
    __u8 new_name[BTFUSE_NAME_MAX];
};

_Static_assert(__builtin_offsetof(struct btfuse_ctx, op) == 4, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, frontend) == 8, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, uid) == 12, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, gid) == 16, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, pid) == 20, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, mode) == 24, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, flags) == 28, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, ino) == 32, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, parent) == 40, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, new_parent) == 48, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, offset) == 56, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, length) == 64, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, name_len) == 72, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, new_name_len) == 76, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, name) == 80, "layout");
_Static_assert(__builtin_offsetof(struct btfuse_ctx, new_name) == 336, "layout");
_Static_assert(sizeof(struct btfuse_ctx) == 592, "layout");

/* Helpers. */

/* Wall-clock time, nanoseconds since 1970 (CLOCK_REALTIME). */
static __u64 (*btfuse_time_ns)(void) = (void *)1;
/* A pseudo-random 32-bit number, fresh at each call (per-thread generator). */
static __u64 (*btfuse_random)(void) = (void *)2;
/* Adds `delta` to counter number `counter` (0 to 63) for `key`: exported as
 * btfuse_bpf_counter_total{program, counter, key}. Name counters with BTFUSE_COUNTERS. */
static __u64 (*btfuse_count)(__u64 counter, __u64 key, __u64 delta) = (void *)3;
/* Logs a line: the program's name, `tag` (up to 8 characters, BTFUSE_TAG) and two numbers.
 * At most 10 lines a second reach the log; the rest are counted in the line that follows. */
static __u64 (*btfuse_log)(__u64 tag, __u64 a, __u64 b) = (void *)4;

/* The entry function. */
#define BTFUSE_PROGRAM __attribute__((section("btfuse"), used))

/* Names of counters 0, 1, ...: BTFUSE_COUNTERS("unlinks\0renames"). */
#define BTFUSE_COUNTERS(names) \
    __attribute__((section("btfuse_counters"), used)) static const char btfuse_counter_names[] = names

/* Up to 8 characters packed in a number, for btfuse_log's tag. */
#define BTFUSE_TAG8(a, b, c, d, e, f, g, h)                                                     \
    ((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | (__u64)(e) << 32 |   \
     (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)

/* Errno values a program returns (Linux generic numbering). */
#define BTFUSE_EPERM 1
#define BTFUSE_ENOENT 2
#define BTFUSE_EIO 5
#define BTFUSE_EACCES 13
#define BTFUSE_EBUSY 16
#define BTFUSE_EEXIST 17
#define BTFUSE_EINVAL 22
#define BTFUSE_ENOSPC 28
#define BTFUSE_EROFS 30

#define BTFUSE_MAX_INSNS 4096

#endif
