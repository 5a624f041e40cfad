/* Returns a number that is no errno on every getattr: the operation fails with EIO, counted
 * as a fault. */
#include "btfuse_bpf.h"

BTFUSE_PROGRAM int bad_errno(struct btfuse_ctx *ctx)
{
    return ctx->op == BTFUSE_OP_GETATTR ? 4000 : 0;
}
