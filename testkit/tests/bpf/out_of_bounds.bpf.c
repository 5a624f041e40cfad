/* Reads 4 KiB past the start of the context on every open: that open faults (EIO), nothing
 * else is touched. */
#include "btfuse_bpf.h"

BTFUSE_PROGRAM int read_past_context(struct btfuse_ctx *ctx)
{
    if (ctx->op != BTFUSE_OP_OPEN)
        return 0;
    volatile __u8 *far = (volatile __u8 *)ctx + 4096;
    return *far == 0x5a ? BTFUSE_EACCES : 0;
}
