/*
 * repvol.pml - a Promela model of repvol's replication protocol, as the C
 * code implements it (server/peer_link.c, server/volume.c, server/resync.c,
 * server/roles.c, server/bitmap.c).  See tests/model/README.md for the
 * mapping of every transition to its C function, the bounds, and what is
 * abstracted away.
 *
 * Two nodes, NB = 2 blocks, block values = write ids (0 = never written:
 * a hole).  One replication connection at a time: a FIFO channel per
 * direction (q[n] = frames to node n).  Frames are lost only with the
 * connection: a link cut empties both channels, a node that closes its end
 * (or crashes) drops what it had not read; nothing is ever reordered.
 *
 * Compile-time knobs (spin -DNAME=value), defaults below:
 *   MODE       1 = A, 2 = B, 3 = C (replication mode, include/repvol/peer_link.h)
 *   MAXW       client writes in the whole run (write ids 1..MAXW, <= 7)
 *   MAXINFL    client writes in flight per node
 *   MAXCRASH   process crashes (either node), MAXCUT link cuts
 *   MAXOPS     operator commands (primary [--force], secondary,
 *              connect [--discard-my-data], resume-io)
 *   FENCE      1: --fence-peer-handler configured (a script that runs
 *              `repvol outdate` on the peer)
 *   SB_POLICY  0 disconnect, 1 discard-zero-changes, 2 discard-least-changes
 *   AL_CAP     activity-log extents kept hot (one extent per block here)
 *   ALLOW_FORCE, ALLOW_DISCARD   operator may use --force / --discard-my-data
 *   INIT_CONNECTED  start connected and in sync (skips the first handshake)
 * Proposed fixes (the C code does NOT do these; see README "Findings"):
 *   FIX_META_CB         rv_volume_meta_commit's callback runs after a flush
 *                       that started after the commit (not the one in flight),
 *                       callbacks accumulate instead of replacing each other,
 *                       and a connection's callbacks die with it
 *   FIX_MARK_AT_ISSUE   a client write that is not sent to the peer marks
 *                       its range when it is issued, and a leg failed by a
 *                       lost link marks its range at once (not at req_join)
 *   FIX_AL_UNTIL_ACK    mode A: the write's activity-log extent stays hot
 *                       until the peer's ACK (or the frame's drop)
 *   FIX_TRACK_UNACKED   mode B: a frame the peer has not completed stays
 *                       tracked (the peer also acknowledges completion); on
 *                       link loss its range is marked; modes A/B: the marks
 *                       are flushed (durable) at once; mode A: the write's
 *                       activity-log extent stays hot until the peer's ACK
 *   FIX_FENCE_ALL       fence whenever a primary would acknowledge a write
 *                       the peer lacks and the peer was not fenced since the
 *                       last connection (not only on loss of a live link)
 *   FIX_OUTDATE_DURABLE `repvol outdate` answers after the Outdated state
 *                       is durable
 *   FIX_START_SECONDARY a crashed primary restarts as secondary
 *   FIX_SAME_GEN_BITMAP same data generation: a secondary with dirty bits
 *                       is resynced too (its bitmap merged by the primary)
 *   FIX_HELLO_STABLE    the dialer starts over when its decision on its
 *                       current state differs from the one on its HELLO
 *   FIX_FULL_SYNC_HOLES a full sync sends holes too (as zeroes/TRIM) unless the
 *                       target is an empty mirror
 *   FIX_SD_LOST         a source that loses the link with its SYNC_DONE
 *                       unanswered starts a new generation for what it
 *                       writes next (the peer may have adopted the current one)
 *   FIX_AHEAD_GEN       the new data generation is taken when the peer is
 *                       lost / a local-only write parks, not when the
 *                       (possibly deferred) flush starts
 *   FIX_FENCE_HANDSHAKE with FIX_FENCE_ALL: a write the peer lacks that
 *                       completes on a new connection before the resync
 *                       target answered anything is held until it does (the
 *                       peer may not have processed our HELLO yet)
 *   FIX_SAME_GEN_STATE  same data generation: a secondary that is not
 *                       UpToDate becomes a resync target (SYNC_DONE ends it)
 */

/* Fixes the C code has (README.md, "Findings"): by default the model is
 * the code as it is now.  -DBUG_<NAME> puts the old behaviour back, so
 * check.sh can show the counterexample the fix removed (its xfail runs). */
#if !defined(BUG_FENCE_ALL) && !defined(FIX_FENCE_ALL)
#define FIX_FENCE_ALL
#endif
#if !defined(BUG_SAME_GEN_STATE) && !defined(FIX_SAME_GEN_STATE)
#define FIX_SAME_GEN_STATE
#endif
#if !defined(BUG_MARK_AT_ISSUE) && !defined(FIX_MARK_AT_ISSUE)
#define FIX_MARK_AT_ISSUE
#endif
#if !defined(BUG_SAME_GEN_BITMAP) && !defined(FIX_SAME_GEN_BITMAP)
#define FIX_SAME_GEN_BITMAP
#endif
#if !defined(BUG_SD_LOST) && !defined(FIX_SD_LOST)
#define FIX_SD_LOST
#endif
#if !defined(BUG_TRACK_UNACKED) && !defined(FIX_TRACK_UNACKED)
#define FIX_TRACK_UNACKED
#endif
#if !defined(BUG_SD_DURABLE) && !defined(FIX_SD_DURABLE)
#define FIX_SD_DURABLE
#endif
#if !defined(BUG_AL_UNTIL_ACK) && !defined(FIX_AL_UNTIL_ACK)
#define FIX_AL_UNTIL_ACK
#endif
#if !defined(BUG_META_CB) && !defined(FIX_META_CB)
#define FIX_META_CB
#endif
#if !defined(BUG_OUTDATE_DURABLE) && !defined(FIX_OUTDATE_DURABLE)
#define FIX_OUTDATE_DURABLE
#endif
#if !defined(BUG_HELLO_STABLE) && !defined(FIX_HELLO_STABLE)
#define FIX_HELLO_STABLE
#endif
#if !defined(BUG_FENCE_HANDSHAKE) && !defined(FIX_FENCE_HANDSHAKE)
#define FIX_FENCE_HANDSHAKE
#endif

#ifndef MODE
#define MODE 3
#endif
#ifndef MAXW
#define MAXW 3
#endif
#ifndef MAXINFL
#define MAXINFL 2
#endif
#ifndef MAXCRASH
#define MAXCRASH 1
#endif
#ifndef MAXCUT
#define MAXCUT 1
#endif
#ifndef MAXOPS
#define MAXOPS 2
#endif
#ifndef FENCE
#define FENCE 0
#endif
#ifndef SB_POLICY
#define SB_POLICY 0
#endif
#ifndef AL_CAP
#define AL_CAP 1
#endif
#ifndef ALLOW_FORCE
#define ALLOW_FORCE 1
#endif
#ifndef ALLOW_DISCARD
#define ALLOW_DISCARD 1
#endif
#ifndef INIT_CONNECTED
#define INIT_CONNECTED 0
#endif
/* property (a) is the mode-C promise */
#ifndef CHECK_A
#if MODE == 3
#define CHECK_A 1
#else
#define CHECK_A 0
#endif
#endif

/* frames tracked until the peer completes them: mode A (peer_link.c's
 * async frames), mode B only with the proposed fix */
#if MODE == 1 || (MODE == 2 && defined(FIX_TRACK_UNACKED))
#define TRACK_FRAMES 1
#else
#define TRACK_FRAMES 0
#endif

#define NB      2           /* blocks (= bitmap granules = activity-log extents) */
#define NSLOT   4           /* ordering-list entries per node */
#define NCHUNK  2           /* resync chunks in flight (RV_RESYNC_INFLIGHT) */
#define QLEN    8           /* frames in flight per direction */

/* enum rv_role, enum rv_disk_state (meta_format.h) */
#define SEC     1
#define PRI     2
#define INCONS  1
#define OUTD    2
#define UPTD    3
/* enum rv_peer_state (peer_link.h); CONNECTING is folded into HANDSHAKE */
#define PS_DISC     1
#define PS_HS       2
#define PS_CONN     3
#define PS_REFUSED  4
#define PS_SB       5
/* enum pc_state (peer_link.c); PC_NONE: p->conn == NULL (closed) */
#define PC_NONE     0
#define PC_HELLO    1
#define PC_CONN     2
/* pc->sync */
#define SYNC_NONE   0
#define SYNC_SRC    1
#define SYNC_TGT    2
/* enum rs_state (resync.c) */
#define RS_IDLE      0
#define RS_SOURCE    1
#define RS_DONE_SENT 2
#define RS_TARGET    3
/* enum rv_repl_refuse */
#define REF_BOTH_PRIMARY 4
#define REF_NO_PRIMARY   5
#define REF_GENERATION   6
#define REF_STATE        7
/* request kinds in the ordering list (struct rv_req, by origin and type) */
#define K_NONE  0
#define K_CW    1   /* client WRITE on the primary (RV_ORIGIN_CLIENT) */
#define K_RR    2   /* resync source's READ of a dirty chunk (RV_ORIGIN_RESYNC) */
#define K_PW    3   /* WRITE from the primary (RV_ORIGIN_PEER) */
#define K_RW    4   /* RESYNC_WRITE (RV_ORIGIN_PEER, FUA) */
#define K_SD    5   /* SYNC_DONE: a FLUSH through the engine */
/* stages of a client write in the ordering list */
#define S_WAIT   0  /* waiting for an earlier overlapping request (may_start) */
#define S_ALW    1  /* parked for the activity log: in meta_wait */
#define S_ALF    2  /* parked for the activity log: in meta_flight */
#define S_ISSUED 3  /* req_issue()d: local and peer legs running */
/* client write ghost states (the request after req_join) */
#define W_NONE    0
#define W_LIST    1  /* in the ordering list */
#define W_MWAIT   2  /* joined, not on the peer: in meta_wait */
#define W_MFLIGHT 3  /* joined, not on the peer: in meta_flight */
#define W_FROZEN  4  /* joined, not on the peer: held for the fence-peer handler */
#define W_ACKED   5  /* req->done(0): acknowledged to the client */
#define W_LOST    6  /* its node crashed first: never acknowledged */
/* resync chunk states */
#define CH_NONE 0
#define CH_READ 1   /* its READ is in the ordering list */
#define CH_SENT 2   /* RESYNC_WRITE queued, waiting for the ACK */
/* metadata-flush callbacks (v->meta_cb) */
#define CB_TARGET  1   /* target_committed */
#define CB_SD      2   /* sync_done_committed */
#define CB_OUTDATE 4   /* FIX_OUTDATE_DURABLE: the `outdate` command answers */
#define CB_SDSRC   8   /* FIX_SD_DURABLE: rs_pump's wait for bitmap_gen = 0 on disk */
/* sequence-number spaces of the frames that are answered */
#define SEQ_CHUNK 8    /* RESYNC_WRITE of chunk c: SEQ_CHUNK + c */
#define SEQ_SD    15   /* SYNC_DONE */

#define PEER(x) (1 - (x))

/* frame types (enum rv_repl_type); fields: seq, block (BITMAP: mask), value */
mtype = { HELLO, REFUSE, WRITE, ACK, RESYNC_WRITE, BITMAP, SYNC_DONE };
/* names for the event log only */
mtype = { UpToDate, Outdated, Inconsistent, primary, secondary, SOURCE, TARGET, in_sync };
#define DSNAME(x) (x == UPTD -> UpToDate : (x == OUTD -> Outdated : Inconsistent))
#define ROLENAME(x) (x == PRI -> primary : secondary)

typedef Meta {          /* the superblock fields the protocol uses */
    byte gen;           /* current_gen (0: empty mirror) */
    byte bmgen;         /* bitmap_gen: the generation the peer still has */
    byte h0;            /* history_gen[0] */
    byte h1;            /* history_gen[1] */
    byte dstate;        /* disk_state */
    byte role;          /* role */
};
typedef Req {           /* a request in the volume's ordering list */
    byte kind;          /* K_* */
    byte blk;
    byte val;           /* write id / value to write / gen (SYNC_DONE) */
    byte seq;           /* frame seq to answer (peer side) / chunk index (K_RR) */
    byte st;            /* S_* (client writes) */
    bit ldone;          /* local leg done */
    bit ppend;          /* peer leg pending (leg on the link) */
    bit pok;            /* peer_result == 0 */
    bit early;          /* mode B: ACK(RECEIVED) already sent */
    bit conn;           /* its connection is still open (not PC_CLOSING) */
};
typedef Hello {         /* struct rv_repl_hello, the fields decide() reads */
    byte gen; byte bmgen; byte h0; byte h1;
    byte role; byte dstate; byte dirty; bit discard;
};
typedef Chunk { byte st; byte blk };

typedef Node {
    /* durable: survives a crash */
    byte data[NB];      /* completed writes (a process crash keeps the page cache) */
    Meta dm;            /* superblock as last flushed */
    bit dbm[NB];        /* bitmap area as last flushed */
    /* volatile */
    bit up;
    byte role;          /* v->role */
    Meta m;             /* v->meta */
    bit bm[NB];         /* bm.mem */
    bit hot[NB];        /* activity log: hot extents */
    byte alinf[NB];     /* ext_inflight */
    bit ahead;          /* v->ahead_durable */
    bit gbump;          /* v->gen_bumped: a new generation since the last in-sync point */
    bit busy;           /* v->meta_busy */
    bit again;          /* v->meta_again */
    byte cb;            /* v->meta_cb (bitmask of CB_*); FIX_META_CB: the flight's */
    byte cbn;           /* FIX_META_CB: callbacks for the next flush */
    Meta fm;            /* sb_buf: the superblock being written */
    bit fbm[NB];        /* the bitmap pages being written */
    bit frozen;         /* v->frozen */
    byte fence;         /* fence-peer handler: 0 none, 1 running, 2 waiting for the outdate (fix) */
    bit fenced;         /* FIX_FENCE_ALL: peer fenced since the last connection */
    bit tconf;          /* pc->target_confirmed: the target answered a resync frame */
    bit hold;           /* p->held_for_target (FIX_FENCE_HANDSHAKE) */
    byte ps;            /* p->state */
    byte pc;            /* p->conn->state */
    bit outgoing;
    bit discard;        /* p->discard_my_data */
    byte sync; bit sfull; bit sb; bit await; bit paused;
    byte rrole;         /* pc->remote.role */
    byte rs; bit aborting; byte cursor;
    Chunk ck[NCHUNK];
    bit done_busy;      /* SYNC_DONE sent, not answered */
    byte sdwait;        /* FIX_SD_DURABLE: 1 bitmap_gen = 0 being committed, 2 durable */
    bit sd_pending;     /* pc->sync_done_rr */
    bit pump_timer;
    byte ninfl;         /* client writes in flight (v->stats.inflight) */
    Req r[NSLOT]; byte nr;
    /* ghost */
    bit incons;         /* data holds a resync that has not completed */
};

Node N[2];
Hello hs[2];                        /* the HELLO each node sent on this connection */
chan q[2] = [QLEN] of { mtype, byte, byte, byte };
bit linkup;                         /* the TCP connection is open at both ends */
byte next_gen = 2;                  /* fresh data generation ids (random in the C code) */

/* ghost state of the client writes */
byte nw;                            /* ids handed out */
byte wblk[MAXW + 1];
byte whist[MAXW + 1];               /* value w contains these writes (bit i = write i) */
byte wst[MAXW + 1];                 /* W_* */
bit wnode[MAXW + 1];
bit wun[MAXW + 1];                  /* frame the peer has not completed (TRACK_FRAMES) */
byte ncrash, ncut, nops;
bit lossy;                          /* a --force / resume-io / discard threw data away */
bit sb_resolved;                    /* this connection's split brain was resolved by discard/policy */
byte sd_snap[NB];                   /* the source's blocks when it sent SYNC_DONE */

/* scratch, only used inside one atomic step */
hidden mtype mt;
hidden byte ma, mb, mc;
hidden byte ki, mj, rk, fk, tk, ck2, ci, vk, pk;
hidden byte plan, bb, t1, jb, jw, cbs, nbit, lg, ld, victim, why, dres, reason, was;
hidden byte r_gen, r_bmgen, r_h0, r_h1, r_role, r_dstate, r_dirty, r_discard;
hidden byte ms, jok, pgo, d01, d10, c0, c1, lbits;
hidden byte s_sync, s_full, s_sb, s_lossy, s_sbr, s_gen, s_bmgen, s_h0, s_h1, s_dst, s_role, s_disc;
hidden byte a_ok, b_ok, c_ok, d_ok, e_ok;

#define CONTAINS(n, w)  ((whist[N[n].data[wblk[w]]] >> (w)) & 1)
#define NBITS(n)        (N[n].bm[0] + N[n].bm[1])
#define WANT(n)         ((N[n].role == PRI && N[n].ps != PS_SB) || N[n].discard)

#define MCOPY(d, s) d.gen = s.gen; d.bmgen = s.bmgen; d.h0 = s.h0; d.h1 = s.h1; \
                    d.dstate = s.dstate; d.role = s.role
#define MZERO(d)    d.gen = 0; d.bmgen = 0; d.h0 = 0; d.h1 = 0; d.dstate = 0; d.role = 0
#define RCOPY(d, s) d.kind = s.kind; d.blk = s.blk; d.val = s.val; d.seq = s.seq; d.st = s.st; \
                    d.ldone = s.ldone; d.ppend = s.ppend; d.pok = s.pok; d.early = s.early; \
                    d.conn = s.conn
#define RZERO(d)    d.kind = 0; d.blk = 0; d.val = 0; d.seq = 0; d.st = 0; d.ldone = 0; \
                    d.ppend = 0; d.pok = 0; d.early = 0; d.conn = 0

/* may_start(): no earlier overlapping write-ish request (a FLUSH: no
 * earlier request at all but flushes).  An expression, for guards. */
#define CONFL(n, j, i) (N[n].r[i].kind == K_SD -> N[n].r[j].kind != K_SD : \
                        (N[n].r[j].kind != K_SD && N[n].r[j].blk == N[n].r[i].blk))
#define MAY_START(n, i) (!((i) > 0 && CONFL(n, 0, i)) && !((i) > 1 && CONFL(n, 1, i)) && \
                         !((i) > 2 && CONFL(n, 2, i)))

/* ------------------------------------------------------------ frames */

/* rv_sockconn_send: delivered only while the connection is open */
inline SEND(x_to, x_t, x_a, x_b, x_c) {
    if
    :: linkup -> assert(nfull(q[x_to])); q[x_to]!x_t, x_a, x_b, x_c
    :: else -> skip
    fi
}

#define HS_CLEAR() hs[0].gen = 0; hs[0].bmgen = 0; hs[0].h0 = 0; hs[0].h1 = 0; hs[0].role = 0; \
    hs[0].dstate = 0; hs[0].dirty = 0; hs[0].discard = 0; \
    hs[1].gen = 0; hs[1].bmgen = 0; hs[1].h0 = 0; hs[1].h1 = 0; hs[1].role = 0; \
    hs[1].dstate = 0; hs[1].dirty = 0; hs[1].discard = 0

inline DRAIN(c) {
    do
    :: nempty(q[c]) -> q[c]?mt, ma, mb, mc
    :: empty(q[c]) -> break
    od;
    skip
}

/* ------------------------------------------------------------ metadata (volume.c) */

inline ACKW(w) {
    printf("MSC: n%d req_complete: write w%d (block %d) ACKNOWLEDGED to the client\n", wnode[w], w, wblk[w]);
    wst[w] = W_ACKED;
    N[wnode[w]].ninfl--
}

/* FIX_AHEAD_GEN: the new generation is taken when the need arises */
inline ahead_gen_now(n) {
#ifdef FIX_AHEAD_GEN
    if
    :: N[n].role == PRI && !N[n].ahead && N[n].m.bmgen == 0 && !N[n].gbump ->
        N[n].m.h1 = N[n].m.h0; N[n].m.h0 = N[n].m.gen;
        N[n].m.bmgen = N[n].m.gen; N[n].m.gen = next_gen; next_gen++;
        N[n].gbump = 1;
        printf("MSC: n%d new data generation %d (peer has %d)\n", n, N[n].m.gen, N[n].m.bmgen)
    :: else -> skip
    fi;
#endif
    skip
}

/* meta_flush_start(): a primary writing without its peer starts a new
 * data generation first; then the superblock and the bitmap's disk view
 * (mem | hot extents) are written and fdatasync'ed. */
inline meta_flush_start(n) {
    if
    :: N[n].role == PRI && N[n].ps != PS_CONN && !N[n].ahead && N[n].m.bmgen == 0 && !N[n].gbump ->
        N[n].m.h1 = N[n].m.h0; N[n].m.h0 = N[n].m.gen;
        N[n].m.bmgen = N[n].m.gen; N[n].m.gen = next_gen; next_gen++;
        N[n].gbump = 1;
        printf("MSC: n%d meta_flush_start: writing without the peer: new data generation %d (peer has %d)\n", n, N[n].m.gen, N[n].m.bmgen)
    :: else -> skip
    fi;
    printf("MSC: n%d meta_flush_start: superblock gen=%d bmgen=%d hist=%d,%d %e %e, bitmap %d%d\n", n,
           N[n].m.gen, N[n].m.bmgen, N[n].m.h0, N[n].m.h1,
           DSNAME(N[n].m.dstate),
           ROLENAME(N[n].m.role), N[n].bm[0] | N[n].hot[0], N[n].bm[1] | N[n].hot[1]);
    N[n].busy = 1;
    MCOPY(N[n].fm, N[n].m);
    N[n].fbm[0] = N[n].bm[0] | N[n].hot[0];
    N[n].fbm[1] = N[n].bm[1] | N[n].hot[1];
    /* meta_wait -> meta_flight */
    fk = 0;
    do
    :: fk < N[n].nr -> if :: N[n].r[fk].st == S_ALW -> N[n].r[fk].st = S_ALF :: else -> skip fi; fk++
    :: else -> break
    od;
    fk = 1;
    do
    :: fk <= nw -> if :: wst[fk] == W_MWAIT && wnode[fk] == n -> wst[fk] = W_MFLIGHT :: else -> skip fi; fk++
    :: else -> break
    od;
#ifdef FIX_META_CB
    N[n].cb = N[n].cbn; N[n].cbn = 0;
#endif
    skip
}

/* meta_park(): wait for a flush that starts after now */
inline meta_park(n) {
    if
    :: !N[n].busy -> meta_flush_start(n)
    :: else -> skip
    fi
}

/* rv_volume_meta_commit() */
inline meta_commit(n, c) {
#ifdef FIX_META_CB
    N[n].cbn = N[n].cbn | (c);
#else
    N[n].cb = (c);
#endif
    if
    :: N[n].busy -> N[n].again = 1
    :: else -> meta_flush_start(n)
    fi
}

/* rv_volume_freeze() + spawning the handler (fence_peer) */
inline fence_peer(n) {
    if
    :: N[n].fence == 0 -> N[n].frozen = 1; N[n].fence = 1; printf("MSC: n%d fence_peer: writes the peer lacks are held\n", n)
    :: else -> skip
    fi
}

/* rv_volume_thaw() */
inline thaw(n) {
    N[n].frozen = 0;
    tk = 1;
    do
    :: tk <= nw ->
        if
        :: wst[tk] == W_FROZEN && wnode[tk] == n ->
            if
            :: N[n].ahead -> ACKW(tk)
            :: else -> wst[tk] = W_MWAIT; ahead_gen_now(n); meta_park(n)
            fi
        :: else -> skip
        fi;
        tk++
    :: else -> break
    od;
    skip
}

/* ------------------------------------------------------------ ordering list (volume.c) */

/* ord_remove() */
inline ord_remove(n, i) {
    rk = i;
    do
    :: rk + 1 < N[n].nr -> RCOPY(N[n].r[rk], N[n].r[rk + 1]); rk++
    :: else -> break
    od;
    N[n].nr--;
    RZERO(N[n].r[N[n].nr])
}

/* rv_bitmap_al_begin()'s al_make_hot(): evict an idle hot extent when full */
inline al_make_hot(n, e) {
    if
    :: N[n].hot[0] + N[n].hot[1] >= AL_CAP && N[n].hot[PEER(e)] && N[n].alinf[PEER(e)] == 0 ->
        N[n].hot[PEER(e)] = 0
    :: else -> skip
    fi;
    N[n].hot[e] = 1
}

/* req_issue() for a client write: the peer leg (rv_peer_submit) and the
 * local leg (rv_backend_submit; completes in local_end_io). */
inline req_issue(n, i) {
    N[n].r[i].st = S_ISSUED; N[n].r[i].ldone = 0; N[n].r[i].pok = 0; N[n].r[i].ppend = 0;
    t1 = N[n].r[i].val;
    whist[t1] = whist[N[n].data[N[n].r[i].blk]] | (1 << t1);
    printf("MSC: n%d req_issue: w%d block %d, WRITE frame to the peer=%d\n", n, t1, N[n].r[i].blk,
           N[n].ps == PS_CONN && N[n].pc == PC_CONN);
    if
    :: N[n].ps == PS_CONN && N[n].pc == PC_CONN ->
        SEND(PEER(n), WRITE, t1, N[n].r[i].blk, t1);
#if TRACK_FRAMES
        wun[t1] = 1;                    /* mode A: an async_frame until the peer's ACK */
#endif
#if MODE == 1
        N[n].r[i].pok = 1               /* mode A: queued is enough */
#else
        N[n].r[i].ppend = 1
#endif
    :: else ->
#ifdef FIX_MARK_AT_ISSUE
        N[n].bm[N[n].r[i].blk] = 1;     /* the peer won't get it: mark now, not at req_join */
#endif
        skip
    fi
}

/* req_start() of a client write: activity log first */
inline req_start(n, i) {
    bb = N[n].r[i].blk;
    N[n].alinf[bb]++;
    if
    :: !N[n].hot[bb] ->
        printf("MSC: n%d req_start: w%d: activity-log extent %d cold: meta_park\n", n, N[n].r[i].val, bb);
        al_make_hot(n, bb);
        N[n].r[i].st = S_ALW;
        meta_park(n)
    :: else -> req_issue(n, i)
    fi
}

/* ord_kick() */
inline ord_kick(n) {
    ki = 0;
    do
    :: ki < N[n].nr ->
        if
        :: N[n].r[ki].kind == K_CW && N[n].r[ki].st == S_WAIT && MAY_START(n, ki) -> req_start(n, ki)
        :: else -> skip
        fi;
        ki++
    :: else -> break
    od;
    skip
}

/* req_join() of a client write: both legs are done */
inline req_join(n, i) {
    jb = N[n].r[i].blk; jw = N[n].r[i].val; jok = N[n].r[i].pok;
#if MODE == 1 && defined(FIX_AL_UNTIL_ACK)
    if
    :: !wun[jw] -> N[n].alinf[jb]--     /* else: the extent stays hot until the peer's ACK */
    :: else -> skip
    fi;
#else
    N[n].alinf[jb]--;
#endif
    ord_remove(n, i);
    if
    :: !jok && N[n].role == PRI ->
        N[n].bm[jb] = 1;                    /* rv_bitmap_mark: the peer lacks it */
        printf("MSC: n%d req_join: w%d not on the peer: bitmap bit %d set (frozen=%d ahead_durable=%d)\n", n, jw, jb,
               N[n].frozen, N[n].ahead);
        if
        :: N[n].frozen -> wst[jw] = W_FROZEN
#ifdef FIX_FENCE_ALL
        :: !N[n].frozen && FENCE && !N[n].fenced && N[n].ps != PS_CONN ->   /* rv_peer_fence_local_write */
            fence_peer(n); N[n].frozen = 1; wst[jw] = W_FROZEN
#endif
#ifdef FIX_FENCE_HANDSHAKE
        :: !N[n].frozen && FENCE && !N[n].fenced && N[n].ps == PS_CONN && N[n].sync == SYNC_SRC && !N[n].tconf ->
            printf("MSC: n%d rv_peer_fence_local_write: held until the target confirms\n", n);
            N[n].hold = 1; N[n].frozen = 1; wst[jw] = W_FROZEN
#endif
        :: else ->
            if
            :: !N[n].ahead -> wst[jw] = W_MWAIT; ahead_gen_now(n); meta_park(n)
            :: else -> ACKW(jw)
            fi
        fi
    :: else -> ACKW(jw)
    fi;
    ord_kick(n)
}

/* ------------------------------------------------------------ resync source (resync.c) */

inline chunk_count(n) {
    pk = (N[n].ck[0].st != CH_NONE) + (N[n].ck[1].st != CH_NONE)
}

/* rs_pump() */
inline rs_pump(n) {
    if
    :: N[n].rs == RS_SOURCE && !N[n].aborting ->
        pgo = 1;
        do
        :: !pgo -> break
        :: pgo ->
            chunk_count(n);
            if
            :: pk >= NCHUNK -> pgo = 0
            :: else ->
                nbit = N[n].cursor;     /* rv_bitmap_next_set */
                do
                :: nbit < NB && !N[n].bm[nbit] -> nbit++
                :: else -> break
                od;
                if
                :: nbit >= NB ->
                    if
                    :: pk > 0 -> pgo = 0        /* the last chunks are still out */
                    :: else ->
                        if
                        :: NBITS(n) > 0 -> N[n].cursor = 0     /* go round again */
#ifdef FIX_SD_DURABLE
                        :: NBITS(n) == 0 && N[n].sdwait == 0 ->
                            /* finding 14: "not ahead of the peer" durable first */
                            printf("MSC: n%d rs_pump: bitmap empty: bitmap_gen = 0, committing before SYNC_DONE\n", n);
                            N[n].m.bmgen = 0; N[n].sdwait = 1; meta_commit(n, CB_SDSRC); pgo = 0
                        :: NBITS(n) == 0 && N[n].sdwait == 1 -> pgo = 0     /* the commit is not durable yet */
                        :: NBITS(n) == 0 && N[n].sdwait == 2 ->
                            N[n].sdwait = 0;
#else
                        :: else ->
#endif
                            /* everything is on the peer: SYNC_DONE with our generation */
                            N[n].rs = RS_DONE_SENT;
                            N[n].done_busy = 1;
                            if
                            :: N[n].pc == PC_CONN ->
                                printf("MSC: n%d rs_pump: bitmap empty: SYNC_DONE gen=%d\n", n, N[n].m.gen);
                                sd_snap[0] = N[n].data[0]; sd_snap[1] = N[n].data[1];
                                SEND(PEER(n), SYNC_DONE, SEQ_SD, 0, N[n].m.gen)
                            :: else -> N[n].done_busy = 0
                            fi;
                            pgo = 0
                        fi
                    fi
                :: else ->
                    if
                    :: N[n].nr >= NSLOT -> N[n].pump_timer = 1; pgo = 0  /* no buffer: retry */
                    :: else ->
                        /* a chunk: READ ordered like a write */
                        ck2 = (N[n].ck[0].st == CH_NONE -> 0 : 1);
                        N[n].ck[ck2].st = CH_READ; N[n].ck[ck2].blk = nbit;
                        printf("MSC: n%d rs_pump: chunk %d: READ block %d (ordered like a write)\n", n, ck2, nbit);
                        N[n].cursor = nbit + 1;
                        N[n].r[N[n].nr].kind = K_RR; N[n].r[N[n].nr].blk = nbit;
                        N[n].r[N[n].nr].seq = ck2; N[n].r[N[n].nr].conn = 1;
                        N[n].nr++
                    fi
                fi
            fi
        od
    :: else -> skip
    fi
}

/* rv_resync_start() */
inline resync_start(n, isfull) {
    if
    :: isfull ->        /* every allocated block: holes are skipped */
#ifdef FIX_FULL_SYNC_HOLES
        N[n].bm[0] = 1; N[n].bm[1] = 1      /* the target may hold data where we have holes */
#else
        if :: N[n].data[0] != 0 -> N[n].bm[0] = 1 :: else -> skip fi;
        if :: N[n].data[1] != 0 -> N[n].bm[1] = 1 :: else -> skip fi
#endif
    :: else -> skip
    fi;
    N[n].rs = RS_SOURCE; N[n].aborting = 0; N[n].cursor = 0; N[n].sdwait = 0;
    printf("MSC: n%d rv_resync_start(full=%d): bitmap %d%d\n", n, isfull, N[n].bm[0], N[n].bm[1]);
    rs_pump(n)
}

/* ------------------------------------------------------------ properties */

/* (a) every write acknowledged to a client is on a node that becomes primary */
inline check_a(n) {
#if CHECK_A
    if
    :: !lossy ->
        vk = 1;
        do
        :: vk <= nw ->
            a_ok = (wst[vk] != W_ACKED || CONTAINS(n, vk));
            assert(a_ok);
            vk++
        :: else -> break
        od
    :: else -> skip
    fi
#endif
    skip
}

/* (b) two copies that both have acknowledged writes the other lacks are
 * never connected unless a discard/policy resolved it */
inline check_b() {
    d01 = 0; d10 = 0;
    vk = 1;
    do
    :: vk <= nw ->
        if
        :: wst[vk] == W_ACKED ->
            c0 = CONTAINS(0, vk); c1 = CONTAINS(1, vk);
            if
            :: c0 && !c1 -> d01 = 1
            :: c1 && !c0 -> d10 = 1
            :: else -> skip
            fi
        :: else -> skip
        fi;
        vk++
    :: else -> break
    od;
    b_ok = (!(d01 && d10) || sb_resolved);
    assert(b_ok)
}

/* ------------------------------------------------------------ handshake (peer_link.c) */

/* fill_hello() */
inline fill_hello(n) {
    hs[n].gen = N[n].m.gen; hs[n].bmgen = N[n].m.bmgen; hs[n].h0 = N[n].m.h0; hs[n].h1 = N[n].m.h1;
    hs[n].role = N[n].role; hs[n].dstate = N[n].m.dstate; hs[n].dirty = NBITS(n);
    hs[n].discard = N[n].discard
}

/* decide(): the data-generation rules; dres = 0 or a refusal reason */
inline decide(n) {
    N[n].sync = SYNC_NONE; N[n].sfull = 0; dres = 255;
    lg = N[n].m.gen;
    if
    :: lg == 0 && r_gen == 0 -> dres = REF_STATE
    :: else -> skip
    fi;
    /* an empty mirror: full sync from the other, if it is UpToDate */
    if
    :: dres == 255 && (r_gen == 0 || lg == 0) ->
        if
        :: (r_gen == 0 && N[n].m.dstate != UPTD) || (r_gen != 0 && r_dstate != UPTD) -> dres = REF_STATE
        :: else ->
            if
            :: r_gen != 0 && N[n].role == PRI -> dres = REF_STATE
            :: else -> N[n].sync = (r_gen == 0 -> SYNC_SRC : SYNC_TGT); N[n].sfull = 1; dres = 0
            fi
        fi
    :: else -> skip
    fi;
    /* same generation: the primary's bits (its activity log) go to the secondary */
    if
    :: dres == 255 && lg == r_gen ->
        if
        :: N[n].role == PRI && lbits > 0 -> N[n].sync = SYNC_SRC
        :: N[n].role != PRI && r_dirty > 0 -> N[n].sync = SYNC_TGT
#ifdef FIX_SAME_GEN_STATE
        :: N[n].role == PRI && lbits == 0 && r_dstate != UPTD -> N[n].sync = SYNC_SRC
        :: N[n].role != PRI && r_dirty == 0 && N[n].m.dstate != UPTD -> N[n].sync = SYNC_TGT
#endif
#ifdef FIX_SAME_GEN_BITMAP
        :: N[n].role == PRI && lbits == 0 && r_dirty > 0 -> N[n].sync = SYNC_SRC
        :: N[n].role != PRI && r_dirty == 0 && lbits > 0 -> N[n].sync = SYNC_TGT
#endif
        :: else -> skip
        fi;
        dres = 0
    :: else -> skip
    fi;
    /* one side is ahead by one step: bitmap resync */
    if
    :: dres == 255 && N[n].m.bmgen != 0 && N[n].m.bmgen == r_gen && r_bmgen == 0 ->
        if
        :: N[n].role != PRI -> dres = REF_STATE
        :: else -> N[n].sync = SYNC_SRC; dres = 0
        fi
    :: else -> skip
    fi;
    if
    :: dres == 255 && r_bmgen != 0 && r_bmgen == lg && N[n].m.bmgen == 0 ->
        if
        :: N[n].role == PRI -> dres = REF_STATE
        :: else -> N[n].sync = SYNC_TGT; dres = 0
        fi
    :: else -> skip
    fi;
    /* split brain */
    if
    :: dres == 255 && N[n].m.bmgen != 0 && N[n].m.bmgen == r_bmgen ->
        ld = lbits; victim = 0; why = 0;
        if
        :: N[n].discard != r_discard -> victim = (N[n].discard -> 1 : 2); why = 1
        :: N[n].discard == r_discard && !N[n].discard && SB_POLICY == 1 && ((ld == 0) != (r_dirty == 0)) ->
            victim = (ld == 0 -> 1 : 2); why = 2
        :: N[n].discard == r_discard && !N[n].discard && SB_POLICY == 2 && ld != r_dirty ->
            victim = (ld < r_dirty -> 1 : 2); why = 3
        :: else -> skip
        fi;
        if
        :: (victim == 1 && N[n].role == PRI) || (victim == 2 && r_role == PRI) -> victim = 0
        :: else -> skip
        fi;
        if
        :: victim != 0 ->
            N[n].sync = (victim == 1 -> SYNC_TGT : SYNC_SRC); dres = 0;
            sb_resolved = 1;
            if :: why != 2 -> lossy = 1 :: else -> skip fi
        :: else -> N[n].sb = 1; dres = REF_GENERATION
        fi
    :: else -> skip
    fi;
    /* more than one step ahead: full sync */
    if
    :: dres == 255 && N[n].m.h0 != 0 && N[n].m.h0 == r_gen && N[n].role == PRI ->
        N[n].sync = SYNC_SRC; N[n].sfull = 1; dres = 0
    :: else -> skip
    fi;
    if
    :: dres == 255 && r_h0 != 0 && r_h0 == lg && N[n].role != PRI ->
        N[n].sync = SYNC_TGT; N[n].sfull = 1; dres = 0
    :: else -> skip
    fi;
    if
    :: dres == 255 && N[n].m.h1 != 0 && N[n].m.h1 == r_gen && N[n].role == PRI ->
        N[n].sync = SYNC_SRC; N[n].sfull = 1; dres = 0
    :: else -> skip
    fi;
    if
    :: dres == 255 && r_h1 != 0 && r_h1 == lg && N[n].role != PRI ->
        N[n].sync = SYNC_TGT; N[n].sfull = 1; dres = 0
    :: else -> skip
    fi;
    if
    :: dres == 255 -> dres = REF_GENERATION    /* unrelated data */
    :: else -> skip
    fi
}

/* pc_close() (+ pc_on_closed(): legs the connection held are "not on the peer") */
inline pc_close(n, planned) {
    was = (N[n].pc == PC_CONN);
    printf("MSC: n%d pc_close (was connected=%d, planned=%d)\n", n, was, planned);
    N[n].pc = PC_NONE; N[n].outgoing = 0;
    if
    :: N[n].ps != PS_REFUSED && N[n].ps != PS_SB -> N[n].ps = PS_DISC
    :: else -> skip
    fi;
    linkup = 0;
    DRAIN(n);
    ck2 = 0;
    do
    :: ck2 < N[n].nr -> N[n].r[ck2].conn = 0; ck2++
    :: else -> break
    od;
    N[n].sd_pending = 0; N[n].paused = 0; N[n].await = 0;
    N[n].sync = SYNC_NONE; N[n].sfull = 0; N[n].sb = 0;
#ifdef FIX_META_CB
    /* the connection's callbacks die with it */
    N[n].cb = N[n].cb & ~(CB_TARGET | CB_SD); N[n].cbn = N[n].cbn & ~(CB_TARGET | CB_SD);
#endif
    if
    :: N[PEER(n)].pc == PC_NONE -> HS_CLEAR()
    :: else -> skip
    fi;
    /* a planned close with mode-A frames outstanding is a loss */
    plan = planned;
    vk = 1;
    do
    :: vk <= nw -> if :: wun[vk] && wnode[vk] == n -> plan = 0 :: else -> skip fi; vk++
    :: else -> break
    od;
    if
    :: was ->
        /* rv_resync_abort() */
        if
        :: N[n].rs != RS_IDLE -> N[n].aborting = 1; N[n].rs = RS_IDLE
        :: else -> skip
        fi;
        N[n].sdwait = 0;
#ifdef FIX_SD_LOST
        /* SYNC_DONE unanswered: the peer may have adopted our generation:
         * what we write from now on is a new one */
        if
        :: N[n].done_busy ->    /* rv_volume_peer_maybe_adopted (also when a demotion closed it) */
            N[n].m.bmgen = 0; N[n].ahead = 0; N[n].gbump = 0; meta_commit(n, 0)
        :: else -> skip
        fi;
#endif
        N[n].done_busy = 0;
        /* chunk_sent(err): queued RESYNC_WRITEs end unanswered, bits stay */
        ck2 = 0;
        do
        :: ck2 < NCHUNK ->
            if
            :: N[n].ck[ck2].st == CH_SENT -> N[n].ck[ck2].st = CH_NONE; N[n].ck[ck2].blk = 0
            :: else -> skip
            fi;
            ck2++
        :: else -> break
        od;
        if
        :: !plan ->
            if
            :: FENCE && MODE == 3 && N[n].role == PRI -> fence_peer(n)
            :: else -> skip
            fi;
            /* rv_volume_peer_lost() */
            if
            :: N[n].role == PRI && !N[n].ahead ->
                ahead_gen_now(n);
                if
                :: N[n].busy -> N[n].again = 1
                :: else -> meta_flush_start(n)
                fi
            :: else -> skip
            fi
        :: else -> skip
        fi
    :: else -> skip
    fi;
    /* writes held for the target's confirmation: fenced, release; else fence */
    N[n].tconf = 0;
    if
    :: N[n].hold ->
        N[n].hold = 0;
        if
        :: N[n].fenced -> thaw(n)
        :: else -> fence_peer(n)
        fi
    :: else -> skip
    fi;
#if TRACK_FRAMES
    /* pc_on_closed(): async_drop_all(): frames the peer has not acknowledged
     * may be missing there: mark them (in memory) */
    pk = 0; vk = 1;
    do
    :: vk <= nw ->
        if
        :: wun[vk] && wnode[vk] == n ->
#if MODE == 1 && defined(FIX_AL_UNTIL_ACK)
            if :: wst[vk] != W_LIST -> N[n].alinf[wblk[vk]]-- :: else -> skip fi;
#endif
            wun[vk] = 0; N[n].bm[wblk[vk]] = 1; pk = 1
        :: else -> skip
        fi;
        vk++
    :: else -> break
    od;
#if defined(FIX_TRACK_UNACKED) && MODE == 2
    if
    :: pk -> meta_commit(n, 0)          /* ... and durably */
    :: else -> skip
    fi;
#endif
#endif
    /* pc_on_closed(): leg_finish(-ENOTCONN) */
    ci = 0;
    do
    :: ci < N[n].nr && N[n].r[ci].kind == K_CW && N[n].r[ci].ppend ->
        N[n].r[ci].ppend = 0; N[n].r[ci].pok = 0;
#ifdef FIX_MARK_AT_ISSUE
        N[n].bm[N[n].r[ci].blk] = 1;    /* the peer lacks it: mark now, not at req_join */
#endif
        if
        :: N[n].r[ci].ldone -> req_join(n, ci); ci = 0
        :: else -> ci++
        fi
    :: ci < N[n].nr && !(N[n].r[ci].kind == K_CW && N[n].r[ci].ppend) -> ci++
    :: ci >= N[n].nr -> break
    od;
    skip
}

/* pc_connected() */
inline pc_connected(n) {
    printf("MSC: n%d pc_connected: %e full=%d\n", n,
           (N[n].sync == SYNC_SRC -> SOURCE : (N[n].sync == SYNC_TGT -> TARGET : in_sync)),
           N[n].sfull);
    N[n].pc = PC_CONN; N[n].ps = PS_CONN; N[n].discard = 0;
#ifdef FIX_FENCE_ALL
    N[n].fenced = 0;
#endif
    if
    :: N[n].sync == SYNC_SRC && !N[n].sfull && r_dirty > 0 ->
        N[n].await = 1                          /* the target's bitmap first */
    :: N[n].sync == SYNC_NONE ->
        N[n].gbump = 0; N[n].ahead = (N[n].m.bmgen != 0)        /* rv_volume_peer_in_sync */
    :: N[n].sync == SYNC_SRC && !(!N[n].sfull && r_dirty > 0) ->
        resync_start(n, N[n].sfull)
    :: N[n].sync == SYNC_TGT ->
        /* Inconsistent, durably, before the first resync write lands */
        N[n].m.dstate = INCONS;
        if
        :: N[n].sfull -> N[n].bm[0] = 0; N[n].bm[1] = 0    /* rv_bitmap_clear_all */
        :: else -> skip
        fi;
        N[n].rs = RS_TARGET;
        N[n].paused = 1;
        meta_commit(n, CB_TARGET);
        if
        :: !N[n].sfull && NBITS(n) > 0 ->      /* send_bitmap_chunk(): data, then the end marker */
            SEND(PEER(n), BITMAP, 0, N[n].bm[0] + 2 * N[n].bm[1], 0);
            SEND(PEER(n), BITMAP, 1, 0, 0)
        :: else -> skip
        fi
    fi;
    if
    :: N[PEER(n)].pc == PC_CONN -> check_b()
    :: else -> skip
    fi
}

/* handle_hello() with a HELLO */
inline handle_hello(n) {
    /* pc->remote */
    r_gen = hs[PEER(n)].gen; r_bmgen = hs[PEER(n)].bmgen; r_h0 = hs[PEER(n)].h0; r_h1 = hs[PEER(n)].h1;
    r_role = hs[PEER(n)].role; r_dstate = hs[PEER(n)].dstate; r_dirty = hs[PEER(n)].dirty;
    r_discard = hs[PEER(n)].discard;
    N[n].sb = 0;
    /* rv_repl_check_compat() + "both nodes are secondary" */
    reason = 0;
    if
    :: N[n].role == PRI && r_role == PRI -> reason = REF_BOTH_PRIMARY
    :: N[n].role != PRI && r_role != PRI -> reason = REF_NO_PRIMARY
    :: else -> skip
    fi;
    if
    :: reason == 0 -> lbits = NBITS(n); decide(n); reason = dres
    :: reason == REF_BOTH_PRIMARY ->
        lbits = NBITS(n); decide(n);
        if
        :: dres != 0 && N[n].sb -> reason = REF_GENERATION
        :: else -> skip
        fi
    :: else -> skip
    fi;
    N[n].rrole = r_role;
#ifdef FIX_HELLO_STABLE
    /* decided_on_stale_hello(): the dialer's decision on the HELLO it sent
     * (what the acceptor decided on) must be the one it reached on its
     * current state, or it starts over */
    if
    :: N[n].outgoing && reason == 0 ->
        s_sync = N[n].sync; s_full = N[n].sfull; s_sb = N[n].sb; s_lossy = lossy; s_sbr = sb_resolved;
        s_gen = N[n].m.gen; s_bmgen = N[n].m.bmgen; s_h0 = N[n].m.h0; s_h1 = N[n].m.h1;
        s_dst = N[n].m.dstate; s_role = N[n].role; s_disc = N[n].discard;
        N[n].m.gen = hs[n].gen; N[n].m.bmgen = hs[n].bmgen; N[n].m.h0 = hs[n].h0; N[n].m.h1 = hs[n].h1;
        N[n].m.dstate = hs[n].dstate; N[n].role = hs[n].role; N[n].discard = hs[n].discard;
        lbits = hs[n].dirty;
        decide(n);
        if
        :: dres != 0 || N[n].sync != s_sync || N[n].sfull != s_full ->
            printf("MSC: n%d handle_hello: decided on a state newer than its HELLO: reconnect\n", n);
            reason = 255
        :: else -> skip
        fi;
        N[n].sync = s_sync; N[n].sfull = s_full; N[n].sb = s_sb; lossy = s_lossy; sb_resolved = s_sbr;
        N[n].m.gen = s_gen; N[n].m.bmgen = s_bmgen; N[n].m.h0 = s_h0; N[n].m.h1 = s_h1;
        N[n].m.dstate = s_dst; N[n].role = s_role; N[n].discard = s_disc
    :: else -> skip
    fi;
#endif
    if
    :: N[n].outgoing -> HS_CLEAR()          /* both HELLOs consumed */
    :: else -> skip
    fi;
    printf("MSC: n%d handle_hello: local gen=%d bmgen=%d hist=%d,%d bits=%d %e; peer gen=%d bmgen=%d hist=%d,%d dirty=%d %e discard=%d -> reason %d split_brain=%d\n",
           n, N[n].m.gen, N[n].m.bmgen, N[n].m.h0, N[n].m.h1, NBITS(n), ROLENAME(N[n].role),
           r_gen, r_bmgen, r_h0, r_h1, r_dirty, ROLENAME(r_role),
           r_discard, reason, N[n].sb);
    if
    :: reason != 0 ->
        if
        :: reason != 255 ->
            /* send_refuse(): the REFUSE goes out, then the connection closes */
            N[n].ps = (N[n].sb -> PS_SB : PS_REFUSED);
            SEND(PEER(n), REFUSE, 0, N[n].sb, 0)
        :: else -> skip         /* decided_on_stale_hello: just close, dial again */
        fi;
        pc_close(n, 0)
    :: else ->
        if
        :: !N[n].outgoing -> fill_hello(n); SEND(PEER(n), HELLO, 0, 0, 0)   /* the acceptor answers */
        :: else -> skip
        fi;
        pc_connected(n)
    fi
}

/* peer_dial() + on_connect() at n, on_accept() at the peer */
inline dial(n) {
    printf("MSC: n%d peer_dial -> n%d on_accept; HELLO (gen=%d bmgen=%d bits=%d discard=%d)\n", n, PEER(n),
           N[n].m.gen, N[n].m.bmgen, NBITS(n), N[n].discard);
    assert(empty(q[0]) && empty(q[1]));
    linkup = 1; sb_resolved = 0;
    N[n].pc = PC_HELLO; N[n].outgoing = 1; N[n].ps = PS_HS;
    fill_hello(n);
    SEND(PEER(n), HELLO, 0, 0, 0);
    N[PEER(n)].pc = PC_HELLO; N[PEER(n)].outgoing = 0; N[PEER(n)].ps = PS_HS
}

/* ------------------------------------------------------------ frames at a node */

/* handle_answer(): the first answer to a resync frame on this connection */
inline confirm_target(n) {
    if
    :: !N[n].tconf ->
        N[n].tconf = 1;
        if
        :: N[n].hold -> N[n].hold = 0; thaw(n)
        :: else -> skip
        fi
    :: else -> skip
    fi
}

/* handle_answer() with an ACK */
inline handle_answer(n) {
    if
    :: ma >= 1 && ma <= MAXW ->               /* find_leg() */
        if
        :: mb == 0 ->                           /* async_answer(): the peer completed it */
#if MODE == 1 && defined(FIX_AL_UNTIL_ACK)
            if
            :: wun[ma] && wst[ma] != W_LIST -> N[n].alinf[wblk[ma]]--
            :: else -> skip
            fi;
#endif
            wun[ma] = 0
        :: else -> skip
        fi;
        ci = 0;
        do
        :: ci < N[n].nr && !(N[n].r[ci].kind == K_CW && N[n].r[ci].val == ma && N[n].r[ci].ppend) -> ci++
        :: else -> break
        od;
        if
        :: ci < N[n].nr ->
            printf("MSC: n%d handle_answer: ACK for w%d\n", n, ma);
            N[n].r[ci].ppend = 0; N[n].r[ci].pok = 1;    /* leg_finish(0) */
            if
            :: N[n].r[ci].ldone -> req_join(n, ci)
            :: else -> skip
            fi
        :: else -> skip                       /* ACK for unknown request (mode A) */
        fi
    :: ma >= SEQ_CHUNK && ma < SEQ_CHUNK + NCHUNK ->    /* rv_resync_answer(): a chunk */
        ck2 = ma - SEQ_CHUNK;
        if
        :: N[n].ck[ck2].st == CH_SENT ->
            /* chunk_maybe_finish(): the target has it durably: clear */
            if
            :: !N[n].aborting -> N[n].bm[N[n].ck[ck2].blk] = 0;
                printf("MSC: n%d chunk_maybe_finish: ACK for chunk %d: bit %d cleared\n", n, ck2, N[n].ck[ck2].blk)
            :: else -> skip
            fi;
            N[n].ck[ck2].st = CH_NONE; N[n].ck[ck2].blk = 0;
            confirm_target(n);
            rs_pump(n)
        :: else -> skip
        fi
    :: ma == SEQ_SD ->                          /* rv_resync_answer(): SYNC_DONE */
        if
        :: N[n].done_busy ->
            printf("MSC: n%d rv_resync_answer: SYNC_DONE acknowledged: bitmap_gen = 0\n", n);
            confirm_target(n);
            N[n].done_busy = 0; N[n].rs = RS_IDLE;
            N[n].m.bmgen = 0;                   /* not ahead of the peer any more */
            N[n].gbump = 0; N[n].ahead = 0;     /* rv_volume_peer_in_sync */
            meta_commit(n, 0)
        :: else -> skip
        fi
    :: else -> skip
    fi
}

/* handle_bitmap() */
inline handle_bitmap(n) {
    if
    :: !N[n].await -> pc_close(n, 0)            /* unexpected BITMAP frame */
    :: else ->
        if
        :: ma == 1 -> printf("MSC: n%d handle_bitmap: end\n", n); N[n].await = 0; resync_start(n, 0)   /* the end marker */
        :: else ->
            printf("MSC: n%d handle_bitmap: peer's bits %d%d merged\n", n, mb & 1, (mb >> 1) & 1);
            N[n].bm[0] = N[n].bm[0] | (mb & 1);
            N[n].bm[1] = N[n].bm[1] | ((mb >> 1) & 1)
        fi
    fi
}

/* start_remote() + rreq_submit() */
inline start_remote(n) {
    printf("MSC: n%d start_remote: %e seq=%d block=%d value=%d\n", n, mt, ma, mb, mc);
    N[n].r[N[n].nr].kind = (mt == WRITE -> K_PW : (mt == RESYNC_WRITE -> K_RW : K_SD));
    N[n].r[N[n].nr].blk = (mt == SYNC_DONE -> 0 : mb);
    N[n].r[N[n].nr].val = mc;
    N[n].r[N[n].nr].seq = ma;
    N[n].r[N[n].nr].conn = 1;
    N[n].r[N[n].nr].early = (MODE == 2 && mt == WRITE);
    N[n].nr++;
    if
    :: MODE == 2 && mt == WRITE -> SEND(PEER(n), ACK, ma, 1, 0)   /* ACK with RECEIVED */
    :: else -> skip
    fi
}

/* a request applied by the engine (start + completion: nothing observable
 * happens in between for these) */
inline apply(n, i) {
    if
    :: N[n].r[i].kind == K_RR ->
        /* chunk_read_done() (the READ is still ordered: frame queued before the kick) */
        ck2 = N[n].r[i].seq; bb = N[n].r[i].blk; t1 = N[n].data[bb];
        printf("MSC: n%d chunk_read_done: chunk %d block %d = %d (aborting=%d connected=%d)\n", n, ck2, bb, t1,
               N[n].aborting, N[n].pc == PC_CONN);
        ord_remove(n, i);
        if
        :: N[n].aborting -> N[n].ck[ck2].st = CH_NONE; N[n].ck[ck2].blk = 0; rs_pump(n)
        :: else ->
            if
            :: N[n].pc == PC_CONN ->
                N[n].ck[ck2].st = CH_SENT;
                SEND(PEER(n), RESYNC_WRITE, SEQ_CHUNK + ck2, bb, t1)
            :: else -> N[n].ck[ck2].st = CH_NONE; N[n].ck[ck2].blk = 0   /* link.send failed */
            fi
        fi;
        ord_kick(n)
    :: N[n].r[i].kind == K_PW || N[n].r[i].kind == K_RW ->
        /* the write completes; rreq_done() answers on the connection it came from */
        N[n].data[N[n].r[i].blk] = N[n].r[i].val;
        printf("MSC: n%d rreq_done: %e block %d = %d applied, ACK sent=%d\n", n, (N[n].r[i].kind == K_RW -> RESYNC_WRITE : WRITE),
               N[n].r[i].blk, N[n].r[i].val, N[n].r[i].conn && !N[n].r[i].early);
        if
        :: N[n].r[i].kind == K_RW && N[n].role != PRI -> N[n].incons = 1
        :: else -> skip
        fi;
        if
        :: N[n].r[i].conn && !N[n].r[i].early -> SEND(PEER(n), ACK, N[n].r[i].seq, 0, 0)
#if defined(FIX_TRACK_UNACKED) && MODE == 2
        :: N[n].r[i].conn && N[n].r[i].early -> SEND(PEER(n), ACK, N[n].r[i].seq, 0, 0)  /* completed */
#endif
        :: else -> skip
        fi;
        ord_remove(n, i);
        ord_kick(n)
    :: N[n].r[i].kind == K_SD ->
        /* rreq_done() for SYNC_DONE: adopt the source's generation */
        if
        :: N[n].r[i].conn ->
            /* (d) no block older than the source's when it sent SYNC_DONE */
            d_ok = ((whist[sd_snap[0]] & ~whist[N[n].data[0]]) == 0 &&
                    (whist[sd_snap[1]] & ~whist[N[n].data[1]]) == 0);
            assert(d_ok);
            printf("MSC: n%d rreq_done: SYNC_DONE: adopt generation %d, UpToDate (data %d,%d)\n", n, N[n].r[i].val,
                   N[n].data[0], N[n].data[1]);
            if   /* same generation: history unchanged */
            :: N[n].r[i].val != N[n].m.gen -> N[n].m.h1 = N[n].m.h0; N[n].m.h0 = N[n].m.gen
            :: else -> skip
            fi;
            N[n].m.gen = N[n].r[i].val; N[n].m.bmgen = 0;
            N[n].m.dstate = UPTD;
            N[n].bm[0] = 0; N[n].bm[1] = 0;
            N[n].rs = RS_IDLE;
            N[n].incons = 0;
            N[n].sd_pending = 1;
            meta_commit(n, CB_SD)
        :: else -> skip                             /* PC_CLOSING: dropped */
        fi;
        ord_remove(n, i);
        ord_kick(n)
    fi
}

/* meta_flush_done() */
inline meta_flush_done(n) {
    printf("MSC: n%d meta_flush_done: superblock durable (gen=%d bmgen=%d %e)\n", n, N[n].fm.gen, N[n].fm.bmgen,
           DSNAME(N[n].fm.dstate));
    N[n].busy = 0;
    MCOPY(N[n].dm, N[n].fm);
    N[n].dbm[0] = N[n].fbm[0]; N[n].dbm[1] = N[n].fbm[1];
#if defined(FIX_AHEAD_GEN) || defined(FIX_SD_LOST)
    /* what was written, not what memory says now */
    N[n].ahead = (N[n].fm.gen == N[n].m.gen && (N[n].m.bmgen != 0 || N[n].gbump));
#else
    N[n].ahead = (N[n].m.bmgen != 0 || N[n].gbump);
#endif
    /* meta_resume(): activity-log waits are issued, finished writes answered */
    fk = 0;
    do
    :: fk < N[n].nr -> if :: N[n].r[fk].st == S_ALF -> req_issue(n, fk) :: else -> skip fi; fk++
    :: else -> break
    od;
    fk = 1;
    do
    :: fk <= nw -> if :: wst[fk] == W_MFLIGHT && wnode[fk] == n -> ACKW(fk) :: else -> skip fi; fk++
    :: else -> break
    od;
    cbs = N[n].cb; N[n].cb = 0;
    if
    :: cbs & CB_TARGET ->                      /* target_committed() */
        if :: N[n].pc == PC_CONN -> printf("MSC: n%d target_committed: reading again\n", n); N[n].paused = 0 :: else -> skip fi
    :: else -> skip
    fi;
    if
    :: cbs & CB_SD ->                          /* sync_done_committed() */
        if
        :: N[n].sd_pending -> printf("MSC: n%d sync_done_committed: ACK SYNC_DONE\n", n);
            N[n].sd_pending = 0; SEND(PEER(n), ACK, SEQ_SD, 0, 0)
        :: else -> skip
        fi
    :: else -> skip
    fi;
#ifdef FIX_SD_DURABLE
    if
    :: (cbs & CB_SDSRC) && N[n].sdwait == 1 && N[n].rs == RS_SOURCE ->   /* the ticket is durable */
        N[n].sdwait = 2; rs_pump(n)
    :: else -> skip
    fi;
#endif
#ifdef FIX_OUTDATE_DURABLE
    if
    :: (cbs & CB_OUTDATE) && N[PEER(n)].fence == 2 ->   /* the handler's `outdate` answers: exit 0 */
        N[PEER(n)].fence = 0; N[PEER(n)].fenced = (N[PEER(n)].ps != PS_CONN); thaw(PEER(n))
    :: else -> skip
    fi;
#endif
    /* a flush again if anything parked meanwhile */
    pk = 0;
    fk = 0;
    do
    :: fk < N[n].nr -> if :: N[n].r[fk].st == S_ALW -> pk = 1 :: else -> skip fi; fk++
    :: else -> break
    od;
    fk = 1;
    do
    :: fk <= nw -> if :: wst[fk] == W_MWAIT && wnode[fk] == n -> pk = 1 :: else -> skip fi; fk++
    :: else -> break
    od;
    if
    :: pk || N[n].again -> N[n].again = 0; meta_flush_start(n)
    :: else -> skip
    fi
}

/* ------------------------------------------------------------ operator, crash (roles.c, main.c) */

/* rv_peer_role_changed() */
inline role_changed(n) {
    if :: N[n].ps == PS_REFUSED -> N[n].ps = PS_DISC :: else -> skip fi;
    if :: N[n].pc != PC_NONE -> pc_close(n, 1) :: else -> skip fi
}

/* rv_role_promote() */
inline promote(n, force) {
    printf("MSC: n%d rv_role_promote force=%d (data %d,%d)\n", n, force, N[n].data[0], N[n].data[1]);
    nops++;
    if
    :: force -> N[n].m.dstate = UPTD; lossy = 1; N[n].incons = 0   /* the operator takes this data as it is */
    :: else ->
        check_a(n);
        c_ok = !N[n].incons;            /* (c) never promote a half-resynced copy */
        assert(c_ok)
    fi;
    N[n].role = PRI; N[n].m.role = PRI;
    meta_commit(n, 0);
    role_changed(n)
}

/* rv_role_demote() */
inline demote(n) {
    printf("MSC: n%d rv_role_demote\n", n);
    nops++;
    N[n].role = SEC; N[n].m.role = SEC;
    meta_commit(n, 0);
    role_changed(n)
}

/* rv_peer_connect() */
inline peer_connect(n, disc) {
    printf("MSC: n%d rv_peer_connect discard-my-data=%d\n", n, disc);
    nops++;
    N[n].discard = disc;
    if
    :: N[n].ps == PS_REFUSED || N[n].ps == PS_SB -> N[n].ps = PS_DISC
    :: else -> skip
    fi
}

/* rv_volume_submit() of a client WRITE of block b (a new write id) */
inline client_write(n, b) {
    nw++;
    printf("MSC: n%d rv_volume_submit: client WRITE w%d to block %d\n", n, nw, b);
    wblk[nw] = b; wnode[nw] = n; wst[nw] = W_LIST;
    N[n].ninfl++;
    N[n].r[N[n].nr].kind = K_CW; N[n].r[N[n].nr].blk = b; N[n].r[N[n].nr].val = nw;
    N[n].r[N[n].nr].st = S_WAIT;
    N[n].nr++;
    if
    :: MAY_START(n, N[n].nr - 1) -> req_start(n, N[n].nr - 1)
    :: else -> skip
    fi
}

/* the process dies: only durable state survives */
inline crash(n) {
    printf("MSC: n%d CRASH (durable: data %d,%d gen=%d bmgen=%d %e %e, bitmap %d%d)\n", n, N[n].data[0], N[n].data[1],
           N[n].dm.gen, N[n].dm.bmgen, DSNAME(N[n].dm.dstate),
           ROLENAME(N[n].dm.role), N[n].dbm[0], N[n].dbm[1]);
    ncrash++;
    /* the kernel resets the connection: what either side had not read is lost */
    if
    :: N[n].pc != PC_NONE -> linkup = 0; DRAIN(PEER(n))
    :: else -> skip
    fi;
    DRAIN(n);
    fk = 1;
    do
    :: fk <= nw ->
        if
        :: wnode[fk] == n && wst[fk] != W_ACKED && wst[fk] != W_LOST && wst[fk] != W_NONE -> wst[fk] = W_LOST
        :: else -> skip
        fi;
        if :: wnode[fk] == n -> wun[fk] = 0 :: else -> skip fi;
        fk++
    :: else -> break
    od;
    if
    :: N[PEER(n)].pc == PC_NONE -> HS_CLEAR()
    :: else -> skip
    fi;
    N[n].up = 0; N[n].role = 0; MZERO(N[n].m);
    N[n].bm[0] = 0; N[n].bm[1] = 0; N[n].hot[0] = 0; N[n].hot[1] = 0;
    N[n].alinf[0] = 0; N[n].alinf[1] = 0;
    N[n].ahead = 0; N[n].gbump = 0; N[n].busy = 0; N[n].again = 0; N[n].cb = 0; N[n].cbn = 0;
    MZERO(N[n].fm); N[n].fbm[0] = 0; N[n].fbm[1] = 0;
    N[n].frozen = 0; N[n].fence = 0; N[n].fenced = 0; N[n].tconf = 0; N[n].hold = 0;
    N[n].ps = 0; N[n].pc = PC_NONE; N[n].outgoing = 0; N[n].discard = 0;
    N[n].sync = 0; N[n].sfull = 0; N[n].sb = 0; N[n].await = 0; N[n].paused = 0; N[n].rrole = 0;
    N[n].rs = 0; N[n].aborting = 0; N[n].cursor = 0;
    N[n].ck[0].st = 0; N[n].ck[0].blk = 0; N[n].ck[1].st = 0; N[n].ck[1].blk = 0;
    N[n].done_busy = 0; N[n].sd_pending = 0; N[n].pump_timer = 0; N[n].ninfl = 0; N[n].sdwait = 0;
    fk = 0;
    do
    :: fk < NSLOT -> RZERO(N[n].r[fk]); fk++
    :: else -> break
    od;
    N[n].nr = 0
}

/* rv_volume_open() after an unclean stop: the bitmap is the disk view */
inline restart(n) {
    printf("MSC: n%d restart (rv_volume_open): role %e\n", n, ROLENAME(N[n].dm.role));
    N[n].up = 1;
    MCOPY(N[n].m, N[n].dm);
    N[n].role = N[n].dm.role;
    if
    :: N[n].role == PRI && N[n].dm.dstate != UPTD ->
        /* main.c: "refusing to serve an Inconsistent/Outdated copy as primary":
         * the operator starts it with --role secondary */
        N[n].role = SEC; N[n].m.role = SEC
    :: else -> skip
    fi;
#ifdef FIX_START_SECONDARY
    N[n].role = SEC; N[n].m.role = SEC;
#endif
    N[n].bm[0] = N[n].dbm[0]; N[n].bm[1] = N[n].dbm[1];
    N[n].ahead = (N[n].dm.bmgen != 0);
    N[n].ps = PS_DISC;
    /* (c) a copy holding an unfinished resync is marked so durably */
    c_ok = (!N[n].incons || N[n].dm.dstate != UPTD);
    assert(c_ok);
    if
    :: N[n].role == PRI -> check_a(n)       /* comes back serving as primary */
    :: else -> skip
    fi
}

/* ------------------------------------------------------------ guards */

#define CW_OK(n, b)   (N[n].up && N[n].role == PRI && nw < MAXW && N[n].ninfl < MAXINFL && N[n].nr < NSLOT)
#define IS_REQ_HEAD(n) (q[n]?[WRITE, ma, mb, mc] || q[n]?[RESYNC_WRITE, ma, mb, mc] || q[n]?[SYNC_DONE, ma, mb, mc])
#define RECV_OK(n)    (N[n].up && N[n].pc != PC_NONE && !N[n].paused && nempty(q[n]) && \
                       (N[n].nr < NSLOT || !IS_REQ_HEAD(n)))
#define LOCAL_OK(n, i) (N[n].up && (i) < N[n].nr && N[n].r[i].kind == K_CW && \
                        N[n].r[i].st == S_ISSUED && !N[n].r[i].ldone)
#define APPLY_OK(n, i) (N[n].up && (i) < N[n].nr && N[n].r[i].kind >= K_RR && MAY_START(n, i))
#define DIAL_OK(n)    (N[n].up && N[n].pc == PC_NONE && WANT(n) && N[PEER(n)].up && \
                       N[PEER(n)].pc == PC_NONE && !linkup)
#define PROMOTE_OK(n) (N[n].up && N[n].role == SEC && nops < MAXOPS && \
                       !(N[n].ps == PS_CONN && N[n].rrole == PRI))
#define DEMOTE_OK(n)  (N[n].up && N[n].role == PRI && nops < MAXOPS && N[n].ninfl == 0 && N[n].nr == 0)
/* the fence-peer handler's `repvol outdate` on the peer succeeds (cmd_outdate) */
#define OUTDATE_OK(n) (N[PEER(n)].up && N[PEER(n)].role != PRI && N[PEER(n)].ps != PS_CONN)

/* local_end_io() of a client write; req_join() once the peer leg is done too */
inline local_end_io(n, i) {
    printf("MSC: n%d local_end_io: w%d written to block %d\n", n, N[n].r[i].val, N[n].r[i].blk);
    N[n].data[N[n].r[i].blk] = N[n].r[i].val;
    N[n].r[i].ldone = 1;
    if
    :: !N[n].r[i].ppend -> req_join(n, i)
    :: else -> skip
    fi
}

/* fence_done(): the handler exits */
inline fence_done(n) {
    printf("MSC: n%d fence_done: 'repvol outdate' on the peer succeeded=%d\n", n, OUTDATE_OK(n));
    if
    :: OUTDATE_OK(n) ->
        /* cmd_outdate() on the peer: Outdated in memory, commit, answer */
        if
        :: N[PEER(n)].m.dstate == UPTD -> N[PEER(n)].m.dstate = OUTD
        :: else -> skip
        fi;
#ifdef FIX_OUTDATE_DURABLE
        N[n].fence = 2;
        meta_commit(PEER(n), CB_OUTDATE)
#else
        meta_commit(PEER(n), 0);
        N[n].fence = 0; N[n].fenced = (N[n].ps != PS_CONN);   /* a stale success: not for a newer connection */
        thaw(n)                                 /* exit 0 */
#endif
    :: else ->
        N[n].fence = 0                          /* exit 1: stay frozen */
    fi
}

proctype node(byte n)
{
end:
    do
    /* pc_process(): one frame, by type */
    :: d_step { RECV_OK(n) && N[n].pc == PC_HELLO && q[n]?[HELLO, ma, mb, mc] ->
                q[n]?mt, ma, mb, mc; handle_hello(n) }
    :: d_step { RECV_OK(n) && N[n].pc == PC_HELLO && q[n]?[REFUSE, ma, mb, mc] ->
                q[n]?mt, ma, mb, mc;
                printf("MSC: n%d handle_hello: REFUSE (split brain=%d)\n", n, mb);
                N[n].ps = (mb -> PS_SB : PS_REFUSED);   /* handle_hello() with a REFUSE */
                pc_close(n, 0) }
    :: d_step { RECV_OK(n) && N[n].pc == PC_HELLO &&
                (IS_REQ_HEAD(n) || q[n]?[ACK, ma, mb, mc] || q[n]?[BITMAP, ma, mb, mc]) ->
                q[n]?<mt, ma, mb, mc>; printf("MSC: n%d MODEL ERROR: %e before HELLO\n", n, mt); assert(false) }     /* nothing else comes before a HELLO */
    :: d_step { RECV_OK(n) && N[n].pc == PC_CONN && IS_REQ_HEAD(n) ->
                q[n]?mt, ma, mb, mc;
                if
                :: N[n].rrole != PRI || N[n].role == PRI -> pc_close(n, 0)   /* write from a non-primary */
                :: else -> start_remote(n)
                fi }
    :: d_step { RECV_OK(n) && N[n].pc == PC_CONN && q[n]?[ACK, ma, mb, mc] ->
                q[n]?mt, ma, mb, mc; handle_answer(n) }
    :: d_step { RECV_OK(n) && N[n].pc == PC_CONN && q[n]?[BITMAP, ma, mb, mc] ->
                q[n]?mt, ma, mb, mc; handle_bitmap(n) }
    :: d_step { RECV_OK(n) && N[n].pc == PC_CONN && (q[n]?[HELLO, ma, mb, mc] || q[n]?[REFUSE, ma, mb, mc]) ->
                q[n]?mt, ma, mb, mc; pc_close(n, 0) }   /* unexpected frame */
    :: d_step { LOCAL_OK(n, 0) -> local_end_io(n, 0) }
    :: d_step { LOCAL_OK(n, 1) -> local_end_io(n, 1) }
    :: d_step { LOCAL_OK(n, 2) -> local_end_io(n, 2) }
    :: d_step { LOCAL_OK(n, 3) -> local_end_io(n, 3) }
    :: d_step { APPLY_OK(n, 0) -> apply(n, 0) }
    :: d_step { APPLY_OK(n, 1) -> apply(n, 1) }
    :: d_step { APPLY_OK(n, 2) -> apply(n, 2) }
    :: d_step { APPLY_OK(n, 3) -> apply(n, 3) }
    :: d_step { N[n].up && N[n].busy -> meta_flush_done(n) }
    /* pc_on_eof / peer_tick's timeout: the other end is gone */
    :: d_step { N[n].up && N[n].pc != PC_NONE && !linkup -> pc_close(n, 0) }
    /* peer_tick(): dial */
    :: d_step { DIAL_OK(n) -> dial(n) }
    /* resync timer_cb() */
    :: d_step { N[n].up && N[n].pump_timer && N[n].nr < NSLOT -> N[n].pump_timer = 0; rs_pump(n) }
#if FENCE
    :: d_step { N[n].up && N[n].fence == 1 -> fence_done(n) }
    /* FIX_OUTDATE_DURABLE: the peer died before the Outdated state was durable */
    :: d_step { N[n].up && N[n].fence == 2 && !N[PEER(n)].up -> N[n].fence = 0 }
#endif
    od;
    skip
}

proctype environment()
{
end:
    do
    /* clients */
    :: d_step { CW_OK(0, 0) -> client_write(0, 0) }
    :: d_step { CW_OK(0, 1) -> client_write(0, 1) }
    :: d_step { CW_OK(1, 0) -> client_write(1, 0) }
    :: d_step { CW_OK(1, 1) -> client_write(1, 1) }
    /* crash (an in-flight metadata flush may or may not have reached the disk) */
    :: d_step { N[0].up && ncrash < MAXCRASH -> crash(0) }
    :: d_step { N[0].up && ncrash < MAXCRASH && N[0].busy ->   /* the flush in flight reached the disk */
        MCOPY(N[0].dm, N[0].fm); N[0].dbm[0] = N[0].fbm[0]; N[0].dbm[1] = N[0].fbm[1];
        crash(0) }
    :: d_step { N[1].up && ncrash < MAXCRASH -> crash(1) }
    :: d_step { N[1].up && ncrash < MAXCRASH && N[1].busy ->   /* the flush in flight reached the disk */
        MCOPY(N[1].dm, N[1].fm); N[1].dbm[0] = N[1].fbm[0]; N[1].dbm[1] = N[1].fbm[1];
        crash(1) }
    :: d_step { !N[0].up -> restart(0) }
    :: d_step { !N[1].up -> restart(1) }
    /* the network */
    :: d_step { linkup && ncut < MAXCUT -> printf("MSC: LINK CUT\n"); ncut++; linkup = 0; DRAIN(0); DRAIN(1) }
    /* the operator */
    :: d_step { PROMOTE_OK(0) && N[0].m.dstate == UPTD -> promote(0, 0) }
    :: d_step { PROMOTE_OK(1) && N[1].m.dstate == UPTD -> promote(1, 0) }
#if ALLOW_FORCE
    :: d_step { PROMOTE_OK(0) && N[0].m.dstate != UPTD -> promote(0, 1) }
    :: d_step { PROMOTE_OK(1) && N[1].m.dstate != UPTD -> promote(1, 1) }
#endif
    :: d_step { DEMOTE_OK(0) -> demote(0) }
    :: d_step { DEMOTE_OK(1) -> demote(1) }
#if ALLOW_DISCARD
    :: d_step { N[0].up && N[0].role != PRI && N[0].ps != PS_CONN && !N[0].discard && nops < MAXOPS ->
                peer_connect(0, 1) }
    :: d_step { N[1].up && N[1].role != PRI && N[1].ps != PS_CONN && !N[1].discard && nops < MAXOPS ->
                peer_connect(1, 1) }
#endif
    :: d_step { N[0].up && (N[0].ps == PS_SB || N[0].ps == PS_REFUSED) && nops < MAXOPS -> peer_connect(0, 0) }
    :: d_step { N[1].up && (N[1].ps == PS_SB || N[1].ps == PS_REFUSED) && nops < MAXOPS -> peer_connect(1, 0) }
#if FENCE
    :: d_step { N[0].up && N[0].frozen && N[0].fence == 0 && nops < MAXOPS -> printf("MSC: n0 rv_peer_resume_io\n"); nops++; lossy = 1; N[0].fenced = 1; thaw(0) }
    :: d_step { N[1].up && N[1].frozen && N[1].fence == 0 && nops < MAXOPS -> printf("MSC: n1 rv_peer_resume_io\n"); nops++; lossy = 1; N[1].fenced = 1; thaw(1) }
#endif
    od;
    skip
}

/* (d)/(e) when nothing can move any more: a connected pair has finished
 * its resync and holds the same data */
proctype quiescent()
{
    timeout ->
    d_step {
        if
        :: N[0].up && N[1].up && N[0].pc == PC_CONN && N[1].pc == PC_CONN ->
            e_ok = (N[0].rs == RS_IDLE && N[1].rs == RS_IDLE && !N[0].await && !N[1].await &&
                    !N[0].paused && !N[1].paused && empty(q[0]) && empty(q[1]));
            assert(e_ok);
            e_ok = (N[0].m.dstate == UPTD && N[1].m.dstate == UPTD);
            assert(e_ok);
            d_ok = (N[0].data[0] == N[1].data[0] && N[0].data[1] == N[1].data[1]);
            assert(d_ok)
        :: else -> skip
        fi
    }
}

init {
    d_step {
        N[0].up = 1; N[1].up = 1;
        N[0].role = PRI; N[1].role = SEC;
        N[0].m.gen = 1; N[1].m.gen = 1;
        N[0].m.dstate = UPTD; N[1].m.dstate = UPTD;
        N[0].m.role = PRI; N[1].m.role = SEC;
        MCOPY(N[0].dm, N[0].m); MCOPY(N[1].dm, N[1].m);
        N[0].ps = PS_DISC; N[1].ps = PS_DISC;
#if INIT_CONNECTED
        linkup = 1;
        N[0].pc = PC_CONN; N[0].ps = PS_CONN; N[0].rrole = SEC; N[0].outgoing = 1;
        N[1].pc = PC_CONN; N[1].ps = PS_CONN; N[1].rrole = PRI;
#endif
        skip
    };
    atomic {
        run node(0);
        run node(1);
        run environment();
        run quiescent()
    }
}
