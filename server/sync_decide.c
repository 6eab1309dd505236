/* sync_decide.c - the handshake decision (see include/repvol/sync_decide.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "repvol/meta_format.h"
#include "repvol/repl_proto.h"
#include "repvol/sync_decide.h"

const char *rv_sb_policy_name(enum rv_sb_policy p)
{
    switch (p) {
    case RV_SB_DISCONNECT: return "disconnect";
    case RV_SB_DISCARD_ZERO_CHANGES: return "discard-zero-changes";
    case RV_SB_DISCARD_LEAST_CHANGES: return "discard-least-changes";
    }
    return "unknown";
}

int rv_sb_policy_parse(const char *s, enum rv_sb_policy *out)
{
    for (int i = RV_SB_DISCONNECT; i <= RV_SB_DISCARD_LEAST_CHANGES; i++)
        if (!strcmp(s, rv_sb_policy_name((enum rv_sb_policy)i))) {
            *out = (enum rv_sb_policy)i;
            return 0;
        }
    return -EINVAL;
}

static uint32_t decide(const struct rv_gen_view *m, const struct rv_gen_view *r, enum rv_sb_policy policy,
                       struct rv_sync_decision *d, char *msg, size_t len)
{
    bool primary = m->primary;
    uint64_t lg = m->current_gen, rg = r->current_gen;

    if (lg == 0 && rg == 0) {
        snprintf(msg, len, "both nodes are empty mirrors: neither has data to sync from");
        return RV_REPL_REFUSE_STATE;
    }
    if (rg == 0 || lg == 0) {
        bool source = rg == 0;
        uint32_t src_state = source ? m->disk_state : r->disk_state;
        if (src_state != RV_DISK_UPTODATE) {
            snprintf(msg, len, "the %s side is %s: it cannot be the source of a full sync",
                     source ? "local" : "peer", rv_disk_state_name(src_state));
            return RV_REPL_REFUSE_STATE;
        }
        if (!source && primary) {
            snprintf(msg, len, "this node is an empty mirror and cannot be primary");
            return RV_REPL_REFUSE_STATE;
        }
        d->dir = source ? RV_SYNC_SOURCE : RV_SYNC_TARGET;
        d->full = true;
        snprintf(msg, len, "%s is an empty mirror: full sync from %s", source ? "the peer" : "this node",
                 source ? "this node" : "the peer");
        return 0;
    }
    if (lg == rg) {
        /* Same data generation.  Bits left by an unclean stop of the
         * primary (its activity log) still go to the secondary; so do the
         * blocks the secondary's own bits name (it crashed as primary with a
         * write the peer never got: model finding 7); and a secondary that
         * is not UpToDate (an interrupted resync, a late outdate) becomes
         * so through a resync that ends with SYNC_DONE, even an empty one
         * (model finding 2). */
        const struct rv_gen_view *sec = primary ? r : m;
        bool sec_needs = (primary ? !r->primary : r->primary) &&
                         (sec->dirty_bytes > 0 || sec->disk_state != RV_DISK_UPTODATE);
        if (primary && (m->dirty_bytes > 0 || sec_needs))
            d->dir = RV_SYNC_SOURCE;
        else if (!primary && (r->dirty_bytes > 0 || sec_needs))
            d->dir = RV_SYNC_TARGET;
        snprintf(msg, len, "same data generation %016" PRIx64 "%s", lg,
                 d->dir == RV_SYNC_NONE ? ": in sync"
                 : sec->disk_state != RV_DISK_UPTODATE ? ", resyncing the secondary to UpToDate"
                 : ", resyncing what either side marked dirty");
        return 0;
    }
    if (m->bitmap_gen && m->bitmap_gen == rg && r->bitmap_gen == 0) {
        if (!primary) {
            snprintf(msg, len, "this secondary has changes the primary lacks (generation %016" PRIx64
                     " based on %016" PRIx64 "); promote it or discard its changes", lg, rg);
            return RV_REPL_REFUSE_STATE;
        }
        d->dir = RV_SYNC_SOURCE;
        snprintf(msg, len, "this node is ahead (generation %016" PRIx64 ", peer at %016" PRIx64
                 "): resync from the dirty bitmap", lg, rg);
        return 0;
    }
    if (r->bitmap_gen && r->bitmap_gen == lg && m->bitmap_gen == 0) {
        if (primary) {
            snprintf(msg, len, "the peer has changes this primary lacks (generation %016" PRIx64
                     " based on %016" PRIx64 "); refusing to overwrite them", rg, lg);
            return RV_REPL_REFUSE_STATE;
        }
        d->dir = RV_SYNC_TARGET;
        snprintf(msg, len, "the peer is ahead (generation %016" PRIx64 ", this node at %016" PRIx64
                 "): resync from its dirty bitmap", rg, lg);
        return 0;
    }
    if (m->bitmap_gen && m->bitmap_gen == r->bitmap_gen) {
        /* Both changed the data since they last agreed.  Never merge
         * silently: an operator (--discard-my-data) or a configured policy
         * picks the side whose changes are thrown away. */
        uint64_t ld = m->dirty_bytes, rd = r->dirty_bytes;
        bool l_discard = m->discard_my_data, r_discard = r->discard_my_data;
        int victim = 0;         /* 1: this node, 2: the peer */
        const char *why = NULL;
        if (l_discard != r_discard) {
            victim = l_discard ? 1 : 2;
            why = "discard-my-data";
        } else if (!l_discard && policy == RV_SB_DISCARD_ZERO_CHANGES && (ld == 0) != (rd == 0)) {
            victim = ld == 0 ? 1 : 2;
            why = "policy discard-zero-changes";
        } else if (!l_discard && policy == RV_SB_DISCARD_LEAST_CHANGES && ld != rd) {
            victim = ld < rd ? 1 : 2;
            why = "policy discard-least-changes";
        }
        if (victim && ((victim == 1 && primary) || (victim == 2 && r->primary)))
            victim = 0;         /* never throw away a serving primary's data */
        if (victim) {
            d->dir = victim == 1 ? RV_SYNC_TARGET : RV_SYNC_SOURCE;
            snprintf(msg, len, "split brain since generation %016" PRIx64 " resolved by %s: %s node's changes "
                     "(%" PRIu64 " bytes) are discarded; resync from the %s using both bitmaps",
                     m->bitmap_gen, why, victim == 1 ? "this" : "the peer", victim == 1 ? ld : rd,
                     victim == 1 ? "peer" : "this node");
            return 0;
        }
        d->split_brain = true;
        snprintf(msg, len, "SPLIT BRAIN: both nodes changed the data since generation %016" PRIx64
                 " (this node %" PRIu64 " bytes as %016" PRIx64 ", peer %" PRIu64 " bytes as %016" PRIx64
                 "); not connecting. Keep one side: run 'repvol connect --discard-my-data' on the other "
                 "(as secondary)", m->bitmap_gen, ld, lg, rd, rg);
        return RV_REPL_REFUSE_GENERATION;
    }
    for (unsigned i = 0; i < RV_REPL_HISTORY; i++) {
        /* One side is more than one step ahead: its bitmap doesn't cover
         * everything the other lacks, so copy all of it. */
        if (m->history_gen[i] && m->history_gen[i] == rg && primary) {
            d->dir = RV_SYNC_SOURCE;
            d->full = true;
            snprintf(msg, len, "the peer is at an older generation of this node's data: full sync");
            return 0;
        }
        if (r->history_gen[i] && r->history_gen[i] == lg && !primary) {
            d->dir = RV_SYNC_TARGET;
            d->full = true;
            snprintf(msg, len, "this node is at an older generation of the peer's data: full sync");
            return 0;
        }
    }
    snprintf(msg, len, "unrelated data: generations local %016" PRIx64 " (base %016" PRIx64
             "), peer %016" PRIx64 " (base %016" PRIx64 ") share no history", lg, m->bitmap_gen, rg,
             r->bitmap_gen);
    return RV_REPL_REFUSE_GENERATION;
}


void rv_sync_decide(const struct rv_gen_view *local, const struct rv_gen_view *remote,
                    enum rv_sb_policy policy, struct rv_sync_decision *out)
{
    memset(out, 0, sizeof *out);
    out->refuse = decide(local, remote, policy, out, out->msg, sizeof out->msg);
}
