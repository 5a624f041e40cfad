/* A loop whose bound is in the context: clang keeps the backward jump, the loader refuses it. */
#include "btfuse_bpf.h"

BTFUSE_PROGRAM int sum_name(struct btfuse_ctx *ctx)
{
    __u32 sum = 0;
    for (__u32 i = 0; i < ctx->name_len && i < BTFUSE_NAME_MAX; i++)
        sum += ctx->name[i];
    return sum == 0xffffffff ? BTFUSE_EIO : 0;
}
