/* test-sync-decide.c - every row of the handshake decision table, from both
 * sides: the two nodes must always reach mirror-image answers. */
#include <string.h>
#include <CUnit/Basic.h>

#include "unit-main.h"

#include "repvol/meta_format.h"
#include "repvol/repl_proto.h"
#include "repvol/sync_decide.h"

static struct rv_gen_view node(uint64_t cur, uint64_t bm, bool primary)
{
    struct rv_gen_view v;
    memset(&v, 0, sizeof v);
    v.current_gen = cur;
    v.bitmap_gen = bm;
    v.disk_state = RV_DISK_UPTODATE;
    v.primary = primary;
    return v;
}

/* Decide from both sides; check they agree and return A's view. */
static struct rv_sync_decision both(const struct rv_gen_view *a, const struct rv_gen_view *b, enum rv_sb_policy pol)
{
    struct rv_sync_decision da, db;
    rv_sync_decide(a, b, pol, &da);
    rv_sync_decide(b, a, pol, &db);
    CU_ASSERT_EQUAL(da.refuse, db.refuse);
    CU_ASSERT_EQUAL(da.full, db.full);
    CU_ASSERT_EQUAL(da.split_brain, db.split_brain);
    if (da.dir == RV_SYNC_SOURCE)
        CU_ASSERT_EQUAL(db.dir, RV_SYNC_TARGET);
    if (da.dir == RV_SYNC_TARGET)
        CU_ASSERT_EQUAL(db.dir, RV_SYNC_SOURCE);
    if (da.dir == RV_SYNC_NONE)
        CU_ASSERT_EQUAL(db.dir, RV_SYNC_NONE);
    CU_ASSERT(strlen(da.msg) > 0);
    return da;
}

static void test_in_sync(void)
{
    struct rv_gen_view a = node(10, 0, true), b = node(10, 0, false);
    struct rv_sync_decision d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.refuse, 0);
    CU_ASSERT_EQUAL(d.dir, RV_SYNC_NONE);
    /* ... but an activity log left by a crashed primary is resynced. */
    a.dirty_bytes = 4 << 20;
    d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.dir, RV_SYNC_SOURCE);
    CU_ASSERT_FALSE(d.full);
}

/* Model findings 2 and 7: at the same generation, a secondary that is not
 * UpToDate, or has dirty bits of its own, is resynced from the primary. */
static void test_same_gen_secondary(void)
{
    struct rv_gen_view a = node(10, 0, true), b = node(10, 0, false);
    struct rv_sync_decision d;
    uint32_t states[] = { RV_DISK_OUTDATED, RV_DISK_INCONSISTENT };
    for (unsigned i = 0; i < 2; i++) {
        b.disk_state = states[i];
        d = both(&a, &b, RV_SB_DISCONNECT);
        CU_ASSERT_EQUAL(d.refuse, 0);
        CU_ASSERT_EQUAL(d.dir, RV_SYNC_SOURCE);
        CU_ASSERT_FALSE(d.full);
        CU_ASSERT_PTR_NOT_NULL(strstr(d.msg, "UpToDate"));
    }
    b.disk_state = RV_DISK_UPTODATE;
    b.dirty_bytes = 1 << 20;            /* crashed as primary, restarted secondary */
    d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.refuse, 0);
    CU_ASSERT_EQUAL(d.dir, RV_SYNC_SOURCE);
    CU_ASSERT_FALSE(d.full);
    /* the secondary's view of the same pair */
    d = both(&b, &a, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.dir, RV_SYNC_TARGET);
    /* both clean and UpToDate: nothing to do */
    b.dirty_bytes = 0;
    d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.dir, RV_SYNC_NONE);
}

static void test_ahead_and_behind(void)
{
    struct rv_gen_view a = node(11, 10, true), b = node(10, 0, false);
    struct rv_sync_decision d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.refuse, 0);
    CU_ASSERT_EQUAL(d.dir, RV_SYNC_SOURCE);
    CU_ASSERT_FALSE(d.full);
    /* The newer side is a secondary: it must not be overwritten, and it
     * can't push to a primary either. */
    a.primary = false;
    b.primary = true;
    d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.refuse, RV_REPL_REFUSE_STATE);
}

static void test_empty_mirror(void)
{
    struct rv_gen_view a = node(10, 0, true), b = node(0, 0, false);
    b.disk_state = RV_DISK_INCONSISTENT;
    struct rv_sync_decision d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.refuse, 0);
    CU_ASSERT_EQUAL(d.dir, RV_SYNC_SOURCE);
    CU_ASSERT(d.full);
    /* The source must be UpToDate. */
    a.disk_state = RV_DISK_OUTDATED;
    d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.refuse, RV_REPL_REFUSE_STATE);
    /* Two empty mirrors: nothing to sync from. */
    a = node(0, 0, true);
    d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.refuse, RV_REPL_REFUSE_STATE);
}

static void test_split_brain(void)
{
    struct rv_gen_view a = node(11, 10, true), b = node(12, 10, true);
    a.dirty_bytes = 8192;
    b.dirty_bytes = 4096;
    struct rv_sync_decision d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.refuse, RV_REPL_REFUSE_GENERATION);
    CU_ASSERT(d.split_brain);
    CU_ASSERT(strstr(d.msg, "SPLIT BRAIN") != NULL);
    /* Policies never discard a primary's data. */
    d = both(&a, &b, RV_SB_DISCARD_LEAST_CHANGES);
    CU_ASSERT(d.split_brain);
    /* B demoted: least-changes discards B (fewer bytes). */
    b.primary = false;
    d = both(&a, &b, RV_SB_DISCARD_LEAST_CHANGES);
    CU_ASSERT_EQUAL(d.refuse, 0);
    CU_ASSERT_EQUAL(d.dir, RV_SYNC_SOURCE);
    CU_ASSERT_FALSE(d.full);
    /* Equal amounts: no winner. */
    b.dirty_bytes = a.dirty_bytes;
    d = both(&a, &b, RV_SB_DISCARD_LEAST_CHANGES);
    CU_ASSERT(d.split_brain);
    /* zero-changes applies only when one side changed nothing. */
    d = both(&a, &b, RV_SB_DISCARD_ZERO_CHANGES);
    CU_ASSERT(d.split_brain);
    b.dirty_bytes = 0;
    d = both(&a, &b, RV_SB_DISCARD_ZERO_CHANGES);
    CU_ASSERT_EQUAL(d.dir, RV_SYNC_SOURCE);
    /* Operator decides: --discard-my-data on B, whatever the policy. */
    b.dirty_bytes = 1 << 20;
    b.discard_my_data = true;
    d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.refuse, 0);
    CU_ASSERT_EQUAL(d.dir, RV_SYNC_SOURCE);
    /* Both asking to discard: still split brain. */
    a.discard_my_data = true;
    a.primary = false;
    d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT(d.split_brain);
}

static void test_history_and_unrelated(void)
{
    /* A moved on twice since B's generation: the bitmap doesn't cover it. */
    struct rv_gen_view a = node(12, 11, true), b = node(10, 0, false);
    a.history_gen[0] = 11;
    a.history_gen[1] = 10;
    struct rv_sync_decision d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.refuse, 0);
    CU_ASSERT_EQUAL(d.dir, RV_SYNC_SOURCE);
    CU_ASSERT(d.full);
    /* No shared history at all. */
    a = node(20, 0, true);
    b = node(30, 0, false);
    d = both(&a, &b, RV_SB_DISCONNECT);
    CU_ASSERT_EQUAL(d.refuse, RV_REPL_REFUSE_GENERATION);
    CU_ASSERT_FALSE(d.split_brain);
    CU_ASSERT(strstr(d.msg, "unrelated") != NULL);
}

static void test_policy_names(void)
{
    enum rv_sb_policy p;
    for (int i = RV_SB_DISCONNECT; i <= RV_SB_DISCARD_LEAST_CHANGES; i++) {
        CU_ASSERT_EQUAL(rv_sb_policy_parse(rv_sb_policy_name((enum rv_sb_policy)i), &p), 0);
        CU_ASSERT_EQUAL((int)p, i);
    }
    CU_ASSERT(rv_sb_policy_parse("discard-everything", &p) < 0);
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "same generation", test_in_sync },
        { "same generation, secondary Outdated/Inconsistent/dirty", test_same_gen_secondary },
        { "one side ahead", test_ahead_and_behind },
        { "empty mirror: full sync", test_empty_mirror },
        { "split brain, policies, discard-my-data", test_split_brain },
        { "history (full sync) and unrelated data", test_history_and_unrelated },
        { "policy names", test_policy_names },
    };
    return UNIT_RUN("sync_decide", NULL, NULL, tests);
}
