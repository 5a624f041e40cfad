/* Logs every mkdir with the caller's uid and whether the clock helper gave a time after 2020,
 * and counts it (helpers 1, 3 and 4). Refuses nothing. */
#include "btfuse_bpf.h"

BTFUSE_COUNTERS("mkdirs");

BTFUSE_PROGRAM int log_mkdir(struct btfuse_ctx *ctx)
{
    if (ctx->op != BTFUSE_OP_MKDIR)
        return 0;
    __u64 after_2020 = btfuse_time_ns() > 1577836800000000000ULL;
    btfuse_log(BTFUSE_TAG8('m', 'k', 'd', 'i', 'r', 0, 0, 0), ctx->uid, after_2020);
    btfuse_count(0, ctx->mode & 07777, 1);
    return 0;
}
