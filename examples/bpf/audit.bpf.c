/* audit: counts unlinks, directory removals and renames per uid. Nothing is refused.
 *
 * The counts are exported by --metrics as
 *   btfuse_bpf_counter_total{program="audit",counter="unlinks",key="UID"}
 * (and counter="rmdirs", counter="renames"), and drawn by dashboards/btfuse.json.
 *
 *   clang -O2 -g -target bpf -Iexamples/bpf -c examples/bpf/audit.bpf.c -o audit.o
 *   btfuse-fuse --bpf audit.o --metrics 127.0.0.1:9464 MOUNTPOINT
 */
#include "btfuse_bpf.h"

BTFUSE_COUNTERS("unlinks\0rmdirs\0renames");

BTFUSE_PROGRAM int audit(struct btfuse_ctx *ctx)
{
    if (ctx->op == BTFUSE_OP_UNLINK)
        btfuse_count(0, ctx->uid, 1);
    else if (ctx->op == BTFUSE_OP_RMDIR)
        btfuse_count(1, ctx->uid, 1);
    else if (ctx->op == BTFUSE_OP_RENAME)
        btfuse_count(2, ctx->uid, 1);
    return 0;
}
