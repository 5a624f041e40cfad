/* readonly_uid: one user may read everything but change nothing: writes, creates, unlinks,
 * renames, links, attribute and extended-attribute changes, and opens for writing or
 * truncating answer EROFS, as on a read-only mount. Other users are not affected.
 *
 * The uid is READONLY_UID (default 1000): -DREADONLY_UID=4001 picks another.
 *
 *   clang -O2 -g -target bpf -Iexamples/bpf -DREADONLY_UID=1000 \
 *       -c examples/bpf/readonly_uid.bpf.c -o readonly.o
 *   btfuse-fuse --bpf readonly.o MOUNTPOINT
 */
#include "btfuse_bpf.h"

#ifndef READONLY_UID
#define READONLY_UID 1000
#endif

BTFUSE_PROGRAM int readonly_uid(struct btfuse_ctx *ctx)
{
    if (ctx->uid != READONLY_UID)
        return 0;
    switch (ctx->op) {
    case BTFUSE_OP_SETATTR:
    case BTFUSE_OP_MKNOD:
    case BTFUSE_OP_MKDIR:
    case BTFUSE_OP_CREATE:
    case BTFUSE_OP_UNLINK:
    case BTFUSE_OP_RMDIR:
    case BTFUSE_OP_RENAME:
    case BTFUSE_OP_LINK:
    case BTFUSE_OP_SYMLINK:
    case BTFUSE_OP_WRITE:
    case BTFUSE_OP_FALLOCATE:
    case BTFUSE_OP_SETXATTR:
    case BTFUSE_OP_REMOVEXATTR:
        return BTFUSE_EROFS;
    case BTFUSE_OP_OPEN:
        if ((ctx->flags & BTFUSE_O_ACCMODE) != 0 || (ctx->flags & BTFUSE_O_TRUNC))
            return BTFUSE_EROFS;
        return 0;
    default:
        return 0;
    }
}
