/* sync_decide.h - what two nodes do when they meet: the handshake decision.
 *
 * Pure logic, no I/O: both nodes evaluate it on the same two views (their
 * own and the peer's HELLO) and reach the same answer.  Data generations
 * (DRBD's "UUIDs"): current_gen names the data a node has; a node that
 * wrote without its peer has bitmap_gen = the generation the peer still has
 * (its dirty bitmap is relative to it); history_gen[] are older currents;
 * generation 0 is an empty mirror (`repvol create --uuid`).
 *
 *   equal current              in sync (or resync what the primary's
 *                              activity log marked after a crash)
 *   one side empty             full sync from the other (if UpToDate)
 *   A.bitmap == B.current      A is ahead: bitmap resync A -> B
 *   A.bitmap == B.bitmap != 0  split brain: refuse, unless --discard-my-data
 *                              or a policy names the side to discard
 *   B.current in A.history     A is further ahead: full sync A -> B
 *   otherwise                  unrelated data: refuse
 * A primary is never the target of a sync, and its data is never discarded
 * automatically. */
#ifndef REPVOL_SYNC_DECIDE_H
#define REPVOL_SYNC_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What to do when both nodes changed the data while apart. */
enum rv_sb_policy {
    RV_SB_DISCONNECT = 0,       /* refuse; an operator decides (default) */
    RV_SB_DISCARD_ZERO_CHANGES, /* a side that changed nothing takes the other's data */
    RV_SB_DISCARD_LEAST_CHANGES,/* the side with fewer changed bytes takes the other's */
};
const char *rv_sb_policy_name(enum rv_sb_policy p);
int rv_sb_policy_parse(const char *s, enum rv_sb_policy *out);

/* One node as the decision sees it. */
struct rv_gen_view {
    uint64_t current_gen, bitmap_gen, history_gen[2];
    uint32_t disk_state;        /* enum rv_disk_state */
    bool primary;
    uint64_t dirty_bytes;       /* bytes marked in its dirty bitmap */
    bool discard_my_data;       /* asked to throw its changes away */
};

enum rv_sync_dir { RV_SYNC_NONE = 0, RV_SYNC_SOURCE, RV_SYNC_TARGET };

struct rv_sync_decision {
    uint32_t refuse;            /* 0, or an RV_REPL_REFUSE_* reason */
    enum rv_sync_dir dir;       /* for the local node */
    bool full;                  /* copy everything allocated, not the bitmap */
    bool split_brain;
    char msg[300];              /* one line for both logs */
};

void rv_sync_decide(const struct rv_gen_view *local, const struct rv_gen_view *remote,
                    enum rv_sb_policy policy, struct rv_sync_decision *out);

#endif
