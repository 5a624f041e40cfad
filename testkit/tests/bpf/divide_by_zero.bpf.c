/* Divides the length by the offset, which is 0 for most operations. The eBPF instruction set
 * defines a quotient by 0 as 0, so those are let through; a read whose length is 3 times its
 * offset (quotient 3) is refused with EPERM, which proves the division really runs. */
#include "btfuse_bpf.h"

BTFUSE_PROGRAM int divide(struct btfuse_ctx *ctx)
{
    __u64 q = ctx->length / ctx->offset;
    if (ctx->op == BTFUSE_OP_READ && q == 3)
        return BTFUSE_EPERM;
    return 0;
}
