/* ack-checker - has every write the server acknowledged reached the disk?
 *
 *   ack-checker write --uri URI --log FILE [--region-mb N] [--depth N]
 *                     [--seconds S] [--seed N] [--rate N]
 *   ack-checker verify --log FILE --image IMG [--offset-base BYTES]
 *                      [--unacked-later-ok]
 *
 * write: writes 4 KiB blocks through libnbd (asynchronous, --depth requests
 * in flight) at the offsets of a random permutation of the first
 * --region-mb MiB of the export, so each offset is written at most once per
 * run (--rate: at most N writes per second, so a run lasts its --seconds
 * instead of using up a small region at once).  Every block describes itself:
 *
 *   off  size  field
 *     0     8  magic "ACKCHK01"
 *     8     8  run id (random per run, big-endian)
 *    16     8  sequence number (1, 2, ... in submission order)
 *    24     8  volume offset of the block
 *    32  4064  fill: a PRNG stream seeded from (run id, sequence number)
 *
 * Only once the server has acknowledged a write is "OFFSET SEQ\n" appended to
 * the log, with a single write(2) on an O_APPEND descriptor, so the log is
 * consistent whenever the server dies.  The log starts with a line
 * "# ack-checker run RUNID ..." naming the run the following lines belong
 * to.  The run stops when --seconds are up, the region is used up, or the
 * connection dies (the server was killed): that is a normal end, exit 0.
 * Exit 1 only if the checker itself could not work (no connection, log not
 * writable, bad options: 2).
 *
 * verify: reads the image file directly (pread at --offset-base + OFFSET) and
 * checks every logged block byte for byte.  If an offset was logged more
 * than once (several runs appended to one log) the last entry is the one
 * expected.  A truncated last line is ignored.  Prints
 * "N acknowledged writes checked, M missing/corrupt" and exits 1 if M > 0,
 * 2 on usage or I/O errors.
 *
 * --unacked-later-ok: where a block holds, instead of the last acknowledged
 * write of its offset, a complete block written to that offset by a run that
 * started later in the log (a write that run never saw acknowledged: the
 * server died or failed over with it in flight), that is not a loss: the
 * in-doubt later write may or may not survive.  Counted and printed as
 * "in doubt".  For logs that several runs, each ended by a crash, append
 * to (tests/chaos/soak.sh). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libnbd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "repvol/wire.h"

#define BLOCK          4096u
#define MAGIC          "ACKCHK01"
#define HDR_BYTES      32u
#define DRAIN_MS       30000        /* bound on waiting for in-flight writes at the end */
#define MAX_BAD_SHOWN  10

static const char *prog = "ack-checker";

__attribute__((format(printf, 1, 2)))
static void err(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* The expected contents of the block written as (run, seq) at off. */
static void fill_block(uint8_t *b, uint64_t run, uint64_t seq, uint64_t off)
{
    memcpy(b, MAGIC, 8);
    rv_put_be64(b + 8, run);
    rv_put_be64(b + 16, seq);
    rv_put_be64(b + 24, off);
    uint64_t s = run ^ (seq * UINT64_C(0xd6e8feb86659fd93));
    for (unsigned i = HDR_BYTES; i < BLOCK; i += 8)
        rv_put_be64(b + i, splitmix64(&s));
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || *s == '-')
        return false;
    *out = v;
    return true;
}

/* ------------------------------------------------------------ write */

struct slot {
    uint8_t *buf;
    uint64_t off, seq;
    struct wctx *w;
    struct slot *next_free;
};

struct wctx {
    int logfd;
    struct slot *free_slots;
    unsigned inflight;
    uint64_t acked, failed;
    int first_error;
    bool log_failed;
};

static int write_done(void *user_data, int *error)
{
    struct slot *s = user_data;
    struct wctx *w = s->w;
    if (*error == 0) {
        char line[64];
        int n = snprintf(line, sizeof line, "%" PRIu64 " %" PRIu64 "\n", s->off, s->seq);
        ssize_t r = write(w->logfd, line, (size_t)n);
        if (r != n) {
            if (!w->log_failed)
                err("writing the log: %s", r < 0 ? strerror(errno) : "short write");
            w->log_failed = true;
        }
        w->acked++;
    } else {
        w->failed++;
        if (!w->first_error)
            w->first_error = *error;
    }
    s->next_free = w->free_slots;
    w->free_slots = s;
    w->inflight--;
    return 1;   /* retire the command */
}

static int cmd_write(int argc, char **argv)
{
    const char *uri = NULL, *logpath = NULL;
    uint64_t region_mb = 64, depth = 32, seconds = 10, seed = 0, rate = 0;
    bool have_seed = false;
    static const struct option opts[] = {
        { "uri", required_argument, NULL, 'u' },
        { "log", required_argument, NULL, 'l' },
        { "region-mb", required_argument, NULL, 'r' },
        { "depth", required_argument, NULL, 'd' },
        { "seconds", required_argument, NULL, 't' },
        { "seed", required_argument, NULL, 's' },
        { "rate", required_argument, NULL, 'R' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        uint64_t *dst = NULL;
        const char *name = "";
        switch (c) {
        case 'u': uri = optarg; continue;
        case 'l': logpath = optarg; continue;
        case 'r': dst = &region_mb; name = "region-mb"; break;
        case 'd': dst = &depth; name = "depth"; break;
        case 't': dst = &seconds; name = "seconds"; break;
        case 's': dst = &seed; name = "seed"; have_seed = true; break;
        case 'R': dst = &rate; name = "rate"; break;
        default: return 2;
        }
        if (!parse_u64(optarg, dst)) {
            err("--%s: '%s' is not a number", name, optarg);
            return 2;
        }
    }
    if (!uri || !logpath || optind != argc) {
        err("usage: ack-checker write --uri URI --log FILE [--region-mb N] [--depth N] [--seconds S] [--seed N] "
            "[--rate N]");
        return 2;
    }
    if (region_mb < 1 || region_mb > (UINT64_C(1) << 20) || depth < 1 || depth > 1024 || seconds < 1 ||
        seconds > 3600) {
        err("out of range: --region-mb 1..1048576, --depth 1..1024, --seconds 1..3600");
        return 2;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t entropy = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + ((uint64_t)getpid() << 40);
    if (!have_seed)
        seed = splitmix64(&entropy) % 1000000000u;
    /* The run id is new every run, even with the same seed: blocks of an
     * earlier run never pass for this one. */
    uint64_t run = splitmix64(&entropy);

    struct nbd_handle *h = nbd_create();
    if (!h) {
        err("nbd_create: %s", nbd_get_error());
        return 1;
    }
    if (nbd_connect_uri(h, uri) == -1) {
        err("connect %s: %s", uri, nbd_get_error());
        nbd_close(h);
        return 1;
    }
    int64_t size = nbd_get_size(h);
    if (size < (int64_t)BLOCK) {
        err("export size %" PRId64 ": %s", size, size < 0 ? nbd_get_error() : "too small");
        nbd_close(h);
        return 1;
    }
    uint64_t region = region_mb << 20;
    if (region > (uint64_t)size) {
        region = (uint64_t)size / BLOCK * BLOCK;
        fprintf(stderr, "%s: export is only %" PRId64 " bytes: region cut to %" PRIu64 "\n", prog, size, region);
    }
    uint64_t nblocks = region / BLOCK;

    int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        err("%s: %s", logpath, strerror(errno));
        nbd_close(h);
        return 1;
    }
    char hdr[512];
    int hn = snprintf(hdr, sizeof hdr, "# ack-checker run %016" PRIx64 " seed %" PRIu64 " region %" PRIu64
                      " depth %" PRIu64 " uri %s\n", run, seed, region, depth, uri);
    if (hn >= (int)sizeof hdr) {
        hn = (int)sizeof hdr - 1;
        hdr[hn - 1] = '\n';
    }
    if (write(logfd, hdr, (size_t)hn) != hn) {
        err("%s: %s", logpath, strerror(errno));
        close(logfd);
        nbd_close(h);
        return 1;
    }

    /* Offsets: a random permutation of the region's blocks. */
    uint32_t *perm = malloc(nblocks * sizeof *perm);
    struct slot *slots = calloc(depth, sizeof *slots);
    if (!perm || !slots) {
        err("out of memory");
        return 1;
    }
    uint64_t ps = seed;
    for (uint64_t i = 0; i < nblocks; i++)
        perm[i] = (uint32_t)i;
    for (uint64_t i = nblocks - 1; i > 0; i--) {
        uint64_t j = splitmix64(&ps) % (i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    struct wctx w = { .logfd = logfd };
    for (uint64_t i = 0; i < depth; i++) {
        if (posix_memalign((void **)&slots[i].buf, BLOCK, BLOCK)) {
            err("out of memory");
            return 1;
        }
        slots[i].w = &w;
        slots[i].next_free = w.free_slots;
        w.free_slots = &slots[i];
    }

    double t0 = now_s(), deadline = t0 + (double)seconds;
    uint64_t next = 0, submitted = 0;
    bool dead = false;
    const char *why = "time is up";
    char dead_msg[256] = "";
    for (;;) {
        bool stop = false;
        if (now_s() >= deadline)
            stop = true;
        else if (next >= nblocks) {
            why = "region used up";
            stop = true;
        }
        /* --rate: submissions so far may not run ahead of rate * elapsed. */
        uint64_t allowed = rate ? (uint64_t)((now_s() - t0) * (double)rate) + 1 : UINT64_MAX;
        while (!stop && !dead && w.free_slots && next < nblocks && submitted < allowed) {
            struct slot *s = w.free_slots;
            s->seq = next + 1;
            s->off = (uint64_t)perm[next] * BLOCK;
            fill_block(s->buf, run, s->seq, s->off);
            nbd_completion_callback cb = { .callback = write_done, .user_data = s };
            if (nbd_aio_pwrite(h, s->buf, BLOCK, s->off, cb, 0) == -1) {
                dead = true;
                snprintf(dead_msg, sizeof dead_msg, "%s", nbd_get_error());
                break;
            }
            w.free_slots = s->next_free;
            w.inflight++;
            next++;
            submitted++;
        }
        if (w.log_failed)
            break;
        if (dead || stop)
            break;
        int poll_ms = rate && w.free_slots && next < nblocks ? 2 : 1000;
        if (nbd_poll(h, poll_ms) == -1 || nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
            dead = true;
            snprintf(dead_msg, sizeof dead_msg, "%s", nbd_get_error() ? nbd_get_error() : "connection closed");
        }
    }
    /* Collect the answers to what is still in flight (bounded). */
    double drain_end = now_s() + DRAIN_MS / 1000.0;
    while (!dead && w.inflight > 0 && now_s() < drain_end) {
        if (nbd_poll(h, 1000) == -1 || nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
            dead = true;
            snprintf(dead_msg, sizeof dead_msg, "%s", nbd_get_error() ? nbd_get_error() : "connection closed");
        }
    }
    double elapsed = now_s() - t0;
    unsigned left = w.inflight;
    if (!dead && left == 0)
        nbd_shutdown(h, 0);
    nbd_close(h);           /* fails whatever is left in flight (not logged) */
    if (dead)
        why = "the connection died";
    printf("ack-checker: run %016" PRIx64 " seed %" PRIu64 ": %" PRIu64 " writes submitted, %" PRIu64
           " acknowledged, %" PRIu64 " failed, %u unanswered; stopped after %.2f s: %s%s%s\n",
           run, seed, submitted, w.acked, w.failed + left, left, elapsed, why,
           dead_msg[0] ? ": " : "", dead_msg);
    if (w.first_error)
        printf("ack-checker: first failed write: %s\n", strerror(w.first_error));
    for (uint64_t i = 0; i < depth; i++)
        free(slots[i].buf);
    free(slots);
    free(perm);
    if (close(logfd) < 0 || w.log_failed) {
        err("%s: the log is incomplete", logpath);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ verify */

struct entry {
    uint64_t off, seq, run;
    size_t idx;             /* position in the log: later wins */
    unsigned runidx;        /* ordinal of its run in the log (0, 1, ...) */
};

/* The ordinal of run id `run` among the log's runs, or -1. */
static int run_ordinal(const uint64_t *runids, unsigned nruns, uint64_t run)
{
    for (unsigned i = 0; i < nruns; i++)
        if (runids[i] == run)
            return (int)i;
    return -1;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        errno = bad ? EIO : ENOMEM;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int cmd_verify(int argc, char **argv)
{
    const char *logpath = NULL, *image = NULL;
    uint64_t base = 0;
    bool later_ok = false;
    static const struct option opts[] = {
        { "log", required_argument, NULL, 'l' },
        { "image", required_argument, NULL, 'i' },
        { "offset-base", required_argument, NULL, 'b' },
        { "unacked-later-ok", no_argument, NULL, 'u' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'l': logpath = optarg; break;
        case 'i': image = optarg; break;
        case 'u': later_ok = true; break;
        case 'b':
            if (!parse_u64(optarg, &base)) {
                err("--offset-base: '%s' is not a number", optarg);
                return 2;
            }
            break;
        default: return 2;
        }
    }
    if (!logpath || !image || optind != argc) {
        err("usage: ack-checker verify --log FILE --image IMG [--offset-base BYTES] [--unacked-later-ok]");
        return 2;
    }
    size_t len;
    char *text = read_file(logpath, &len);
    if (!text) {
        err("%s: %s", logpath, strerror(errno));
        return 2;
    }
    size_t n = 0, cap = 1024, lineno = 0;
    struct entry *e = malloc(cap * sizeof *e);
    uint64_t run = 0;
    bool have_run = false;
    unsigned runs = 0, runs_cap = 64;
    uint64_t *runids = malloc(runs_cap * sizeof *runids);
    if (!runids) {
        err("out of memory");
        free(text);
        free(e);
        return 2;
    }
    char *p = text, *end = text + len;
    while (p < end && e) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        lineno++;
        if (!nl) {
            fprintf(stderr, "%s: %s:%zu: ignoring a truncated last line\n", prog, logpath, lineno);
            break;
        }
        *nl = '\0';
        if (p[0] == '#') {
            const char *r = strstr(p, " run ");
            if (r) {
                char *rend;
                run = strtoull(r + 5, &rend, 16);
                if (rend == r + 5) {
                    err("%s:%zu: bad run line: %s", logpath, lineno, p);
                    free(text);
                    free(e);
                    free(runids);
                    return 2;
                }
                have_run = true;
                if (runs == runs_cap) {
                    uint64_t *nr = realloc(runids, 2 * runs_cap * sizeof *runids);
                    if (!nr) {
                        err("out of memory");
                        free(text);
                        free(e);
                        free(runids);
                        return 2;
                    }
                    runids = nr;
                    runs_cap *= 2;
                }
                runids[runs++] = run;
            }
        } else if (p[0] != '\0') {
            uint64_t off, seq;
            char extra;
            if (sscanf(p, "%" SCNu64 " %" SCNu64 " %c", &off, &seq, &extra) != 2 || !have_run ||
                off % BLOCK) {
                err("%s:%zu: malformed line%s: %s", logpath, lineno, have_run ? "" : " (no run line before it)", p);
                free(text);
                free(e);
                free(runids);
                return 2;
            }
            if (n == cap) {
                cap *= 2;
                struct entry *ne = realloc(e, cap * sizeof *e);
                if (!ne)
                    free(e);
                e = ne;
                if (!e)
                    break;
            }
            e[n] = (struct entry){ .off = off, .seq = seq, .run = run, .idx = n, .runidx = runs - 1 };
            n++;
        }
        p = nl + 1;
    }
    free(text);
    if (!e) {
        err("out of memory");
        free(runids);
        return 2;
    }
    qsort(e, n, sizeof *e, cmp_entry);

    int fd = open(image, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err("%s: %s", image, strerror(errno));
        free(e);
        free(runids);
        return 2;
    }
    uint8_t got[BLOCK], want[BLOCK];
    uint64_t checked = 0, bad = 0, superseded = 0, in_doubt = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && e[i + 1].off == e[i].off) {
            superseded++;
            continue;           /* a later entry for the same offset wins */
        }
        checked++;
        fill_block(want, e[i].run, e[i].seq, e[i].off);
        ssize_t r = pread(fd, got, BLOCK, (off_t)(base + e[i].off));
        if (r < 0) {
            err("%s: pread at %" PRIu64 ": %s", image, base + e[i].off, strerror(errno));
            close(fd);
            free(e);
            free(runids);
            return 2;
        }
        if (r == (ssize_t)BLOCK && !memcmp(got, want, BLOCK))
            continue;
        if (later_ok && r == (ssize_t)BLOCK && !memcmp(got, MAGIC, 8) && rv_get_be64(got + 24) == e[i].off) {
            int o = run_ordinal(runids, runs, rv_get_be64(got + 8));
            if (o > (int)e[i].runidx) {
                fill_block(want, rv_get_be64(got + 8), rv_get_be64(got + 16), e[i].off);
                if (!memcmp(got, want, BLOCK)) {
                    in_doubt++;
                    continue;
                }
            }
        }
        bad++;
        if (bad > MAX_BAD_SHOWN)
            continue;
        char what[160];
        static const uint8_t zero[BLOCK];
        if (r < (ssize_t)BLOCK)
            snprintf(what, sizeof what, "short read (%zd bytes): past the end of the image", r);
        else if (!memcmp(got, zero, BLOCK))
            snprintf(what, sizeof what, "missing: the block is all zeroes");
        else if (memcmp(got, MAGIC, 8))
            snprintf(what, sizeof what, "missing: not an ack-checker block");
        else if (rv_get_be64(got + 8) != e[i].run || rv_get_be64(got + 16) != e[i].seq ||
                 rv_get_be64(got + 24) != e[i].off)
            snprintf(what, sizeof what, "stale: holds run %016" PRIx64 " seq %" PRIu64 " offset %" PRIu64,
                     rv_get_be64(got + 8), rv_get_be64(got + 16), rv_get_be64(got + 24));
        else {
            unsigned k = 0;
            while (k < BLOCK && got[k] == want[k])
                k++;
            snprintf(what, sizeof what, "corrupt: header right, first differing byte at +%u", k);
        }
        printf("BAD offset %" PRIu64 " (image offset %" PRIu64 ") seq %" PRIu64 " run %016" PRIx64 ": %s\n",
               e[i].off, base + e[i].off, e[i].seq, e[i].run, what);
    }
    close(fd);
    free(e);
    free(runids);
    if (bad > MAX_BAD_SHOWN)
        printf("... and %" PRIu64 " more\n", bad - MAX_BAD_SHOWN);
    if (superseded)
        printf("(%" PRIu64 " log entries superseded by later writes of the same offset)\n", superseded);
    if (in_doubt)
        printf("(%" PRIu64 " blocks hold a later run's unacknowledged write instead: in doubt, not lost)\n",
               in_doubt);
    printf("%" PRIu64 " acknowledged writes checked, %" PRIu64 " missing/corrupt (%u run%s, image %s)\n",
           checked, bad, runs, runs == 1 ? "" : "s", image);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "write"))
        return cmd_write(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "verify"))
        return cmd_verify(argc - 1, argv + 1);
    fprintf(stderr,
            "usage: ack-checker write --uri URI --log FILE [--region-mb N] [--depth N] [--seconds S] [--seed N]\n"
            "                         [--rate N]\n"
            "       ack-checker verify --log FILE --image IMG [--offset-base BYTES] [--unacked-later-ok]\n");
    return 2;
}
