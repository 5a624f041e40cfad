/* error_inject: opens (and creates) of names starting with "inject" fail with EIO.
 *
 * With -DINJECT_PERCENT=N (1 to 99), each such open fails with probability N%.
 *
 *   clang -O2 -g -target bpf -Iexamples/bpf -c examples/bpf/error_inject.bpf.c -o inject.o
 *   btfuse-fuse --bpf inject.o MOUNTPOINT
 */
#include "btfuse_bpf.h"

#ifndef INJECT_PERCENT
#define INJECT_PERCENT 100
#endif

BTFUSE_PROGRAM int error_inject(struct btfuse_ctx *ctx)
{
    if (ctx->op != BTFUSE_OP_OPEN && ctx->op != BTFUSE_OP_CREATE)
        return 0;
    if (ctx->name_len < 6)
        return 0;
    if (ctx->name[0] != 'i' || ctx->name[1] != 'n' || ctx->name[2] != 'j' ||
        ctx->name[3] != 'e' || ctx->name[4] != 'c' || ctx->name[5] != 't')
        return 0;
#if INJECT_PERCENT < 100
    if (btfuse_random() % 100 >= INJECT_PERCENT)
        return 0;
#endif
    return BTFUSE_EIO;
}
