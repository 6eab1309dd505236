/* repl-bad-peer - a replication peer that misbehaves on purpose.
 *
 *   repl-bad-peer --connect HOST:PORT [--image IMG | --uuid U --size BYTES
 *                 --gen HEX] [--node-id N] [--role primary|secondary]
 *                 [--mode A|B|C] [--expect WHAT] SCENARIO
 *
 * Dials a repvold replication listener, plays SCENARIO, prints what the
 * daemon answered and exits 0 if that was the expected reaction, 1 if not,
 * 2 on usage errors.  The hello describes the volume given by --image (its
 * superblock) or by --uuid/--size/--gen; without either, a random volume.
 * Default node id 7, role primary, mode C.
 *
 * Scenarios (expected reaction in brackets; "refuse R" = a REFUSE frame with
 * reason R followed by the daemon closing the connection; "close" = the
 * daemon closes the connection, a REFUSE PROTOCOL first is fine too):
 *   hello-wrong-version   header version 2, good body     [refuse VERSION or close]
 *   hello-proto-2         proto_min = proto_max = 2       [refuse VERSION]
 *   hello-wrong-uuid      another volume's uuid           [refuse UUID]
 *   hello-wrong-size      data_size + 1 MiB               [refuse SIZE]
 *   hello-both-primary    role primary (daemon primary)   [refuse BOTH_PRIMARY]
 *   hello-secondary       role secondary (daemon too)     [refuse NO_PRIMARY]
 *   hello-short-body      HELLO with a 100-byte body      [refuse PROTOCOL or close]
 *   truncated-header      20 bytes of a header, then shutdown(SHUT_WR)  [close]
 *   length-past-bound     good HELLO (must be accepted), then a WRITE header
 *                         with length = payload_len = 64 MiB and 64 KiB of
 *                         its payload                     [close]
 *   unknown-type          a type-99 frame instead of HELLO [refuse PROTOCOL or close]
 *   unknown-type-after-hello  good HELLO, then a type-99 frame [close]
 *   write-past-end        good HELLO, then a 4 KiB WRITE at offset data_size
 *                         (the bitmap area)               [NACK, or close; never ACK]
 *   trim-past-end         good HELLO, then a TRIM of the 1 MiB after the data
 *                         (bitmap and superblock)         [NACK, or close; never ACK]
 *   write-oversized       good HELLO, then a 2 MiB WRITE at offset 0 with its
 *                         payload; for a daemon started with --max-request
 *                         below 2 MiB                     [NACK, or close; never ACK]
 *   truncated-write       good HELLO, then a 4 KiB WRITE (offset 0) with only
 *                         1000 bytes of its payload, then shutdown(SHUT_WR)
 *                         (the link dies in the middle of a payload)  [close]
 *   garbage               4 KiB of random bytes           [refuse PROTOCOL or close]
 *   write-before-hello    a WRITE (offset 0, 4 KiB) first [refuse PROTOCOL or close]
 * --expect overrides the expectation: refuse:REASON (e.g. refuse:BUSY),
 * refuse-or-close:REASON, close, or accept (the daemon answers with a HELLO).
 *
 * Every wait is bounded (poll, 5 s).  Plain sockets; the frames come from
 * repl_proto.h's encoders, patched by hand where a scenario needs it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "repvol/meta_format.h"
#include "repvol/repl_proto.h"
#include "repvol/util.h"
#include "repvol/wire.h"

#define TIMEOUT_MS 5000

static const char *scenario = "";

__attribute__((format(printf, 1, 2)))
static void say(const char *fmt, ...)
{
    va_list ap;
    printf("repl-bad-peer: %s: ", scenario);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* Fixed-seed PRNG: the garbage is the same on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15;
static uint8_t rng_byte(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint8_t)((rng_state * UINT64_C(2685821657736338717)) >> 56);
}

/* ------------------------------------------------------------ socket I/O */

enum io { IO_OK, IO_EOF, IO_TIMEOUT, IO_ERR };

static const char *io_str(enum io r)
{
    switch (r) {
    case IO_OK: return "ok";
    case IO_EOF: return "connection closed";
    case IO_TIMEOUT: return "timed out after 5 s";
    default: return "socket error";
    }
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static int wait_fd(int fd, short events, int ms)
{
    struct pollfd p = { .fd = fd, .events = events };
    int r;
    do
        r = poll(&p, 1, ms);
    while (r < 0 && errno == EINTR);
    return r;
}

static enum io send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        int r = wait_fd(fd, POLLOUT, TIMEOUT_MS);
        if (r == 0)
            return IO_TIMEOUT;
        if (r < 0)
            return IO_ERR;
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return (errno == EPIPE || errno == ECONNRESET) ? IO_EOF : IO_ERR;
        }
        p += n;
        len -= (size_t)n;
    }
    return IO_OK;
}

/* Read exactly len bytes; *got says how many arrived (also on failure). */
static enum io recv_exact(int fd, void *buf, size_t len, size_t *got)
{
    uint8_t *p = buf;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    *got = 0;
    while (*got < len) {
        long left = TIMEOUT_MS - elapsed_ms(&t0);
        if (left <= 0)
            return IO_TIMEOUT;
        int r = wait_fd(fd, POLLIN, (int)left);
        if (r == 0)
            return IO_TIMEOUT;
        if (r < 0)
            return IO_ERR;
        ssize_t n = recv(fd, p + *got, len - *got, MSG_DONTWAIT);
        if (n == 0)
            return IO_EOF;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return errno == ECONNRESET ? IO_EOF : IO_ERR;
        }
        *got += (size_t)n;
    }
    return IO_OK;
}

/* Wait (at most 5 s) for the daemon to close, discarding what it sends. */
static enum io wait_close(int fd, size_t *got)
{
    struct timespec t0;
    uint8_t buf[4096];
    clock_gettime(CLOCK_MONOTONIC, &t0);
    *got = 0;
    for (;;) {
        long left = TIMEOUT_MS - elapsed_ms(&t0);
        if (left <= 0)
            return IO_TIMEOUT;
        int r = wait_fd(fd, POLLIN, (int)left);
        if (r == 0)
            return IO_TIMEOUT;
        if (r < 0)
            return IO_ERR;
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0)
            return IO_EOF;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return errno == ECONNRESET ? IO_EOF : IO_ERR;
        }
        *got += (size_t)n;
    }
}

/* HOST:PORT (HOST may be [v6]); the connect itself is bounded too. */
static int connect_tcp(const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof host) {
        fprintf(stderr, "repl-bad-peer: bad HOST:PORT: %s\n", hostport);
        return -1;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h[strlen(h) - 1] = 0;
        h++;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
    int e = getaddrinfo(h, colon + 1, &hints, &res);
    if (e) {
        fprintf(stderr, "repl-bad-peer: %s: %s\n", hostport, gai_strerror(e));
        return -1;
    }
    int fd = -1, saved = 0;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, TIMEOUT_MS) > 0) {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            if (soerr == 0)
                break;
            errno = soerr;
        } else if (errno == EINPROGRESS) {
            errno = ETIMEDOUT;
        }
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "repl-bad-peer: connect %s: %s\n", hostport, strerror(saved));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* ------------------------------------------------------------ frames */

static size_t build_hello(uint8_t *buf, const struct rv_repl_hello *h)
{
    struct rv_repl_hdr hdr = { .type = RV_REPL_T_HELLO, .payload_len = RV_REPL_HELLO_SIZE };
    rv_repl_encode_hdr(buf, &hdr);
    if (rv_repl_encode_hello(buf + RV_REPL_HDR_SIZE, RV_REPL_HELLO_SIZE, h) < 0) {
        char why[RV_REPL_MSG_LEN];
        rv_repl_hello_check(h, why, sizeof why);
        fprintf(stderr, "repl-bad-peer: cannot encode our hello: %s\n", why);
        exit(2);
    }
    return RV_REPL_HDR_SIZE + RV_REPL_HELLO_SIZE;
}

/* What the daemon did. */
enum kind { A_REFUSE, A_HELLO, A_CLOSE, A_TIMEOUT, A_OTHER };

struct answer {
    enum kind kind;
    uint32_t reason;            /* REFUSE */
    char msg[RV_REPL_REFUSE_MSG_MAX + 1];
    struct rv_repl_hello hello; /* HELLO */
    uint16_t type;              /* OTHER */
    char text[RV_REPL_REFUSE_MSG_MAX + 256];
};

/* Read the daemon's first frame. */
static void read_answer(int fd, struct answer *a)
{
    uint8_t hb[RV_REPL_HDR_SIZE];
    size_t got;
    memset(a, 0, sizeof *a);
    enum io r = recv_exact(fd, hb, sizeof hb, &got);
    if (r != IO_OK) {
        a->kind = r == IO_TIMEOUT ? A_TIMEOUT : A_CLOSE;
        if (r == IO_TIMEOUT)
            snprintf(a->text, sizeof a->text, "nothing (%s; %zu bytes)", io_str(r), got);
        else
            snprintf(a->text, sizeof a->text, "closed the connection (%s%s, after %zu bytes)", io_str(r),
                     r == IO_ERR ? ": unexpected" : "", got);
        if (r == IO_ERR || got)
            a->kind = A_OTHER;      /* half a header, or a socket error: not a clean close */
        return;
    }
    struct rv_repl_hdr h;
    int d = rv_repl_decode_hdr(hb, sizeof hb, &h);
    if (d < 0) {
        a->kind = A_OTHER;
        snprintf(a->text, sizeof a->text, "an undecodable frame header: %s", rv_repl_strerror(d));
        return;
    }
    uint8_t body[RV_REPL_HELLO_MAX];
    if (h.payload_len > sizeof body) {
        a->kind = A_OTHER;
        a->type = h.type;
        snprintf(a->text, sizeof a->text, "a %s frame with a %" PRIu32 "-byte payload", rv_repl_type_name(h.type),
                 h.payload_len);
        return;
    }
    r = recv_exact(fd, body, h.payload_len, &got);
    if (r != IO_OK) {
        a->kind = A_OTHER;
        snprintf(a->text, sizeof a->text, "a %s header, then %s after %zu of %" PRIu32 " payload bytes",
                 rv_repl_type_name(h.type), io_str(r), got, h.payload_len);
        return;
    }
    if (h.type == RV_REPL_T_REFUSE) {
        a->kind = A_REFUSE;
        a->reason = h.status;
        rv_repl_decode_refuse_msg(body, h.payload_len, a->msg, sizeof a->msg);
        snprintf(a->text, sizeof a->text, "REFUSE %s (%" PRIu32 "): \"%s\"", rv_repl_refuse_name(h.status),
                 h.status, a->msg);
    } else if (h.type == RV_REPL_T_HELLO) {
        char why[RV_REPL_MSG_LEN];
        if (rv_repl_decode_hello_ex(body, h.payload_len, &a->hello, why, sizeof why) < 0) {
            a->kind = A_OTHER;
            snprintf(a->text, sizeof a->text, "a malformed HELLO: %s", why);
            return;
        }
        a->kind = A_HELLO;
        snprintf(a->text, sizeof a->text, "HELLO from node %" PRIu32 " (%s, %s, protocol %" PRIu32 "..%" PRIu32 ")",
                 a->hello.node_id, a->hello.name, rv_role_name(a->hello.role), a->hello.proto_min,
                 a->hello.proto_max);
    } else {
        a->kind = A_OTHER;
        a->type = h.type;
        a->reason = h.status;
        snprintf(a->text, sizeof a->text, "a %s frame (seq %" PRIu64 ", status %" PRIu32 ")",
                 rv_repl_type_name(h.type), h.seq, h.status);
    }
}

/* ------------------------------------------------------------ expectations */

enum exp_kind { E_REFUSE, E_REFUSE_OR_CLOSE, E_CLOSE, E_ACCEPT };

struct expect {
    enum exp_kind kind;
    uint32_t reason;
};

static bool parse_reason(const char *s, uint32_t *out)
{
    for (uint32_t r = 1; r < 64; r++) {
        if (!strcasecmp(s, rv_repl_refuse_name(r))) {
            *out = r;
            return true;
        }
    }
    return false;
}

static bool parse_expect(const char *s, struct expect *e)
{
    if (!strcmp(s, "close")) {
        e->kind = E_CLOSE;
        return true;
    }
    if (!strcmp(s, "accept")) {
        e->kind = E_ACCEPT;
        return true;
    }
    if (!strncmp(s, "refuse:", 7)) {
        e->kind = E_REFUSE;
        return parse_reason(s + 7, &e->reason);
    }
    if (!strncmp(s, "refuse-or-close:", 16)) {
        e->kind = E_REFUSE_OR_CLOSE;
        return parse_reason(s + 16, &e->reason);
    }
    return false;
}

static const char *expect_str(const struct expect *e, char *buf, size_t len)
{
    switch (e->kind) {
    case E_REFUSE: snprintf(buf, len, "REFUSE %s, then close", rv_repl_refuse_name(e->reason)); break;
    case E_REFUSE_OR_CLOSE: snprintf(buf, len, "REFUSE %s or close", rv_repl_refuse_name(e->reason)); break;
    case E_CLOSE: snprintf(buf, len, "close (REFUSE PROTOCOL first is fine)"); break;
    case E_ACCEPT: snprintf(buf, len, "HELLO (accepted)"); break;
    }
    return buf;
}

/* Judge the answer; after a refusal the daemon must also close. */
static int judge(int fd, const struct answer *a, const struct expect *e)
{
    char eb[96];
    say("daemon answered: %s", a->text);
    bool ok = false;
    switch (e->kind) {
    case E_REFUSE: ok = a->kind == A_REFUSE && a->reason == e->reason; break;
    case E_REFUSE_OR_CLOSE: ok = a->kind == A_CLOSE || (a->kind == A_REFUSE && a->reason == e->reason); break;
    case E_CLOSE: ok = a->kind == A_CLOSE || (a->kind == A_REFUSE && a->reason == RV_REPL_REFUSE_PROTOCOL); break;
    case E_ACCEPT: ok = a->kind == A_HELLO; break;
    }
    if (ok && a->kind == A_REFUSE) {
        size_t got;
        enum io r = wait_close(fd, &got);
        if (r != IO_EOF) {
            say("FAIL: after the refusal the daemon did not close the connection: %s", io_str(r));
            return 1;
        }
        say("... and closed the connection%s", got ? " (after sending more bytes)" : "");
        if (got) {
            say("FAIL: %zu unexpected bytes after the REFUSE", got);
            return 1;
        }
    }
    if (!ok) {
        say("FAIL: expected %s", expect_str(e, eb, sizeof eb));
        return 1;
    }
    say("OK: expected %s", expect_str(e, eb, sizeof eb));
    return 0;
}

/* After the daemon accepted our hello and we sent something bad: it must
 * close the link within 5 s of *t0 (keepalives on the way are fine; a
 * REFUSE PROTOCOL too). */
static int expect_drop(int fd, const struct timespec *t0)
{
    for (;;) {
        struct answer a;
        read_answer(fd, &a);
        long ms = elapsed_ms(t0);
        if (a.kind == A_OTHER && (a.type == RV_REPL_T_PING || a.type == RV_REPL_T_PONG) && ms < TIMEOUT_MS)
            continue;
        if (ms > TIMEOUT_MS) {
            say("daemon answered after %ld ms: %s", ms, a.text);
            say("FAIL: expected the daemon to close the link within %d ms", TIMEOUT_MS);
            return 1;
        }
        struct expect e = { .kind = E_CLOSE };
        return judge(fd, &a, &e);
    }
}

/* After a request the daemon must not carry out: a NACK, or it closes the
 * link, within 5 s of *t0 (when we started sending); an ACK is a failure. */
static int expect_nack(int fd, const struct timespec *t0)
{
    for (;;) {
        struct answer a;
        read_answer(fd, &a);
        long ms = elapsed_ms(t0);
        if (a.kind == A_OTHER && (a.type == RV_REPL_T_PING || a.type == RV_REPL_T_PONG) && ms < TIMEOUT_MS)
            continue;           /* keepalives: still waiting for the answer */
        say("daemon answered after %ld ms: %s", ms, a.text);
        if (ms > TIMEOUT_MS) {
            say("FAIL: expected a NACK or a close within %d ms of the request", TIMEOUT_MS);
            return 1;
        }
        if (a.kind == A_OTHER && a.type == RV_REPL_T_NACK) {
            say("OK: expected NACK or close (NACK status %" PRIu32 ": %s)", a.reason, strerror((int)a.reason));
            return 0;
        }
        if (a.kind == A_CLOSE || (a.kind == A_REFUSE && a.reason == RV_REPL_REFUSE_PROTOCOL)) {
            say("OK: expected NACK or close");
            return 0;
        }
        say("FAIL: expected NACK or close%s", a.type == RV_REPL_T_ACK ? ": the daemon ACKed it" : "");
        return 1;
    }
}

/* ------------------------------------------------------------ main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: repl-bad-peer --connect HOST:PORT [--image IMG | --uuid U --size BYTES --gen HEX]\n"
            "                     [--node-id N] [--role primary|secondary] [--mode A|B|C]\n"
            "                     [--expect refuse:REASON|refuse-or-close:REASON|close|accept] SCENARIO\n"
            "scenarios: hello-wrong-version hello-proto-2 hello-wrong-uuid hello-wrong-size\n"
            "           hello-both-primary hello-secondary hello-short-body truncated-header\n"
            "           length-past-bound unknown-type unknown-type-after-hello write-past-end\n"
            "           trim-past-end write-oversized truncated-write garbage write-before-hello\n");
}

int main(int argc, char **argv)
{
    const char *target = NULL, *image = NULL, *expect_arg = NULL;
    struct rv_repl_hello hello = {
        .proto_min = RV_REPL_PROTO_VERSION, .proto_max = RV_REPL_PROTO_VERSION,
        .data_size = UINT64_C(1) << 30, .block_size = 4096, .node_id = 7,
        .role = RV_ROLE_PRIMARY, .disk_state = RV_DISK_UPTODATE, .current_gen = 1,
        .mode = RV_REPL_MODE_C, .name = "repl-bad-peer",
    };
    bool have_uuid = false;
    static const struct option opts[] = {
        { "connect", required_argument, NULL, 'c' },
        { "image", required_argument, NULL, 'i' },
        { "uuid", required_argument, NULL, 'u' },
        { "size", required_argument, NULL, 's' },
        { "gen", required_argument, NULL, 'g' },
        { "node-id", required_argument, NULL, 'n' },
        { "role", required_argument, NULL, 'r' },
        { "mode", required_argument, NULL, 'm' },
        { "expect", required_argument, NULL, 'e' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'c': target = optarg; break;
        case 'i': image = optarg; break;
        case 'u':
            if (rv_uuid_parse(optarg, hello.uuid) < 0) {
                fprintf(stderr, "repl-bad-peer: --uuid: bad UUID '%s'\n", optarg);
                return 2;
            }
            have_uuid = true;
            break;
        case 's':
            errno = 0;
            hello.data_size = strtoull(optarg, &end, 0);
            if (errno || *end || end == optarg) {
                fprintf(stderr, "repl-bad-peer: --size: '%s' is not a number of bytes\n", optarg);
                return 2;
            }
            break;
        case 'g':
            errno = 0;
            hello.current_gen = strtoull(optarg, &end, 16);
            if (errno || *end || end == optarg) {
                fprintf(stderr, "repl-bad-peer: --gen: '%s' is not a hex number\n", optarg);
                return 2;
            }
            break;
        case 'n':
            hello.node_id = (uint32_t)strtoul(optarg, &end, 10);
            if (*end || end == optarg) {
                fprintf(stderr, "repl-bad-peer: --node-id: '%s' is not a number\n", optarg);
                return 2;
            }
            break;
        case 'r':
            if (!strcmp(optarg, "primary"))
                hello.role = RV_ROLE_PRIMARY;
            else if (!strcmp(optarg, "secondary"))
                hello.role = RV_ROLE_SECONDARY;
            else {
                fprintf(stderr, "repl-bad-peer: --role: '%s' is not primary or secondary\n", optarg);
                return 2;
            }
            break;
        case 'm':
            if (rv_repl_mode_parse(optarg, &hello.mode) < 0) {
                fprintf(stderr, "repl-bad-peer: --mode: '%s' is not A, B or C\n", optarg);
                return 2;
            }
            break;
        case 'e': expect_arg = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!target || optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    scenario = argv[optind];
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (image) {
        int fd = open(image, O_RDONLY | O_CLOEXEC);
        struct rv_meta m;
        int r = fd < 0 ? -errno : rv_meta_read_fd(fd, &m);
        if (fd >= 0)
            close(fd);
        if (r < 0) {
            fprintf(stderr, "repl-bad-peer: %s: %s\n", image, rv_meta_strerror(r));
            return 2;
        }
        memcpy(hello.uuid, m.uuid, sizeof hello.uuid);
        hello.data_size = m.data_size;
        hello.block_size = m.block_size;
        hello.current_gen = m.current_gen;
        hello.bitmap_gen = m.bitmap_gen;
        memcpy(hello.history_gen, m.history_gen, sizeof hello.history_gen);
        hello.disk_state = m.disk_state;
        have_uuid = true;
    }
    if (!have_uuid)
        rv_uuid_generate(hello.uuid);

    /* The scenario's hello and expectation. */
    struct expect exp = { .kind = E_REFUSE_OR_CLOSE, .reason = RV_REPL_REFUSE_PROTOCOL };
    enum { S_HELLO, S_TRUNC, S_PAST_BOUND, S_UNKNOWN, S_UNKNOWN_AFTER, S_TRUNC_WRITE, S_WRITE_PAST_END,
           S_TRIM_PAST_END, S_WRITE_OVERSIZED, S_GARBAGE, S_WRITE_FIRST } kind = S_HELLO;
    bool wrong_version = false, short_body = false;
    if (!strcmp(scenario, "hello-wrong-version")) {
        wrong_version = true;
        exp = (struct expect){ E_REFUSE_OR_CLOSE, RV_REPL_REFUSE_VERSION };
    } else if (!strcmp(scenario, "hello-proto-2")) {
        hello.proto_min = hello.proto_max = 2;
        exp = (struct expect){ E_REFUSE, RV_REPL_REFUSE_VERSION };
    } else if (!strcmp(scenario, "hello-wrong-uuid")) {
        for (int i = 0; i < RV_UUID_LEN; i++)
            hello.uuid[i] ^= 0x5a;
        exp = (struct expect){ E_REFUSE, RV_REPL_REFUSE_UUID };
    } else if (!strcmp(scenario, "hello-wrong-size")) {
        hello.data_size += UINT64_C(1) << 20;
        exp = (struct expect){ E_REFUSE, RV_REPL_REFUSE_SIZE };
    } else if (!strcmp(scenario, "hello-both-primary")) {
        hello.role = RV_ROLE_PRIMARY;
        exp = (struct expect){ E_REFUSE, RV_REPL_REFUSE_BOTH_PRIMARY };
    } else if (!strcmp(scenario, "hello-secondary")) {
        hello.role = RV_ROLE_SECONDARY;
        exp = (struct expect){ E_REFUSE, RV_REPL_REFUSE_NO_PRIMARY };
    } else if (!strcmp(scenario, "hello-short-body")) {
        short_body = true;
    } else if (!strcmp(scenario, "truncated-header")) {
        kind = S_TRUNC;
        exp = (struct expect){ E_CLOSE, 0 };
    } else if (!strcmp(scenario, "length-past-bound")) {
        kind = S_PAST_BOUND;
    } else if (!strcmp(scenario, "unknown-type")) {
        kind = S_UNKNOWN;
    } else if (!strcmp(scenario, "unknown-type-after-hello")) {
        kind = S_UNKNOWN_AFTER;
    } else if (!strcmp(scenario, "write-past-end")) {
        kind = S_WRITE_PAST_END;
    } else if (!strcmp(scenario, "trim-past-end")) {
        kind = S_TRIM_PAST_END;
    } else if (!strcmp(scenario, "write-oversized")) {
        kind = S_WRITE_OVERSIZED;
    } else if (!strcmp(scenario, "truncated-write")) {
        kind = S_TRUNC_WRITE;
    } else if (!strcmp(scenario, "garbage")) {
        kind = S_GARBAGE;
    } else if (!strcmp(scenario, "write-before-hello")) {
        kind = S_WRITE_FIRST;
    } else {
        fprintf(stderr, "repl-bad-peer: unknown scenario '%s'\n", scenario);
        usage(stderr);
        return 2;
    }
    if (expect_arg && !parse_expect(expect_arg, &exp)) {
        fprintf(stderr, "repl-bad-peer: --expect: '%s' is not refuse:REASON, refuse-or-close:REASON, close or accept\n",
                expect_arg);
        return 2;
    }

    int fd = connect_tcp(target);
    if (fd < 0)
        return 1;
    char uuid[RV_UUID_STR_LEN];
    rv_uuid_format(hello.uuid, uuid);
    say("connected to %s; our hello: uuid %s size %" PRIu64 " gen %016" PRIx64 " node %" PRIu32 " %s mode %s",
        target, uuid, hello.data_size, hello.current_gen, hello.node_id, rv_role_name(hello.role),
        rv_repl_mode_name(hello.mode));

    uint8_t frame[RV_REPL_HDR_SIZE + 4096];
    size_t n;
    enum io r;
    struct answer a;
    int rc;
    switch (kind) {
    case S_HELLO:
        n = build_hello(frame, &hello);
        if (wrong_version)
            rv_put_be16(frame + 4, 2);      /* the encoder always writes version 1 */
        if (short_body) {
            rv_put_be32(frame + 36, 100);
            n = RV_REPL_HDR_SIZE + 100;
        }
        r = send_all(fd, frame, n);
        say("sent a HELLO%s%s (%zu bytes): %s", wrong_version ? " with header version 2" : "",
            short_body ? " with a 100-byte body" : "", n, io_str(r));
        read_answer(fd, &a);
        rc = judge(fd, &a, &exp);
        break;
    case S_TRUNC:
        n = build_hello(frame, &hello);
        r = send_all(fd, frame, 20);
        shutdown(fd, SHUT_WR);
        say("sent 20 bytes of a HELLO header, then shut down our side: %s", io_str(r));
        read_answer(fd, &a);
        rc = judge(fd, &a, &exp);
        break;
    case S_UNKNOWN: {
        struct rv_repl_hdr h = { .type = 99, .seq = 1 };
        rv_repl_encode_hdr(frame, &h);
        r = send_all(fd, frame, RV_REPL_HDR_SIZE);
        say("sent a type-99 frame instead of a HELLO: %s", io_str(r));
        read_answer(fd, &a);
        rc = judge(fd, &a, &exp);
        break;
    }
    case S_GARBAGE:
        for (size_t i = 0; i < 4096; i++)
            frame[i] = rng_byte();
        frame[0] = 'G';     /* never the magic */
        r = send_all(fd, frame, 4096);
        say("sent 4096 random bytes: %s", io_str(r));
        read_answer(fd, &a);
        rc = judge(fd, &a, &exp);
        break;
    case S_WRITE_FIRST: {
        struct rv_repl_hdr h = { .type = RV_REPL_T_WRITE, .seq = 1, .offset = 0, .length = 4096,
                                 .payload_len = 4096 };
        rv_repl_encode_hdr(frame, &h);
        memset(frame + RV_REPL_HDR_SIZE, 0xab, 4096);
        r = send_all(fd, frame, RV_REPL_HDR_SIZE + 4096);
        say("sent a 4 KiB WRITE at offset 0 before any HELLO: %s", io_str(r));
        read_answer(fd, &a);
        rc = judge(fd, &a, &exp);
        break;
    }
    case S_PAST_BOUND:
    case S_UNKNOWN_AFTER:
    case S_TRUNC_WRITE:
    case S_WRITE_PAST_END:
    case S_TRIM_PAST_END:
    case S_WRITE_OVERSIZED: {
        n = build_hello(frame, &hello);
        r = send_all(fd, frame, n);
        say("sent a good HELLO: %s", io_str(r));
        read_answer(fd, &a);
        if (expect_arg) {
            rc = judge(fd, &a, &exp);   /* e.g. refuse:BUSY: the bad frame is never sent */
            break;
        }
        if (a.kind != A_HELLO) {
            say("daemon answered: %s", a.text);
            say("FAIL: the daemon did not accept our HELLO, so the scenario could not run "
                "(pass --image or --uuid/--size/--gen of the daemon's volume, --role primary to a secondary)");
            rc = 1;
            break;
        }
        say("daemon answered: %s", a.text);
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (kind == S_UNKNOWN_AFTER) {
            struct rv_repl_hdr h = { .type = 99, .seq = 1 };
            rv_repl_encode_hdr(frame, &h);
            r = send_all(fd, frame, RV_REPL_HDR_SIZE);
            say("sent a type-99 frame: %s", io_str(r));
        } else if (kind == S_WRITE_PAST_END || kind == S_TRIM_PAST_END) {
            bool w = kind == S_WRITE_PAST_END;
            struct rv_repl_hdr h = { .type = w ? RV_REPL_T_WRITE : RV_REPL_T_TRIM, .seq = 1,
                                     .offset = hello.data_size, .length = w ? 4096 : 1u << 20,
                                     .payload_len = w ? 4096 : 0 };
            rv_repl_encode_hdr(frame, &h);
            memset(frame + RV_REPL_HDR_SIZE, 0xab, 4096);
            r = send_all(fd, frame, RV_REPL_HDR_SIZE + h.payload_len);
            say("sent a %s of %" PRIu32 " bytes at offset %" PRIu64 " (the end of the data): %s",
                rv_repl_type_name(h.type), h.length, h.offset, io_str(r));
            rc = expect_nack(fd, &t0);
            break;
        } else if (kind == S_WRITE_OVERSIZED) {
            const uint32_t len = 2u << 20;
            struct rv_repl_hdr h = { .type = RV_REPL_T_WRITE, .seq = 1, .offset = 0, .length = len,
                                     .payload_len = len };
            rv_repl_encode_hdr(frame, &h);
            r = send_all(fd, frame, RV_REPL_HDR_SIZE);
            memset(frame, 0xab, 4096);
            for (uint32_t done = 0; done < len && r == IO_OK; done += 4096)
                r = send_all(fd, frame, 4096);
            say("sent a WRITE of %" PRIu32 " bytes at offset 0 with its payload: %s%s", len, io_str(r),
                r == IO_TIMEOUT ? " (the daemon stopped reading)" : "");
            rc = expect_nack(fd, &t0);
            break;
        } else if (kind == S_TRUNC_WRITE) {
            struct rv_repl_hdr h = { .type = RV_REPL_T_WRITE, .seq = 1, .offset = 0, .length = 4096,
                                     .payload_len = 4096 };
            rv_repl_encode_hdr(frame, &h);
            memset(frame + RV_REPL_HDR_SIZE, 0xab, 1000);
            r = send_all(fd, frame, RV_REPL_HDR_SIZE + 1000);
            shutdown(fd, SHUT_WR);
            say("sent a 4 KiB WRITE at offset 0 with 1000 bytes of its payload, then shut down our side: %s",
                io_str(r));
        } else {
            struct rv_repl_hdr h = { .type = RV_REPL_T_WRITE, .seq = 1, .offset = 0, .length = 64u << 20,
                                     .payload_len = 64u << 20 };
            rv_repl_encode_hdr(frame, &h);
            memset(frame + RV_REPL_HDR_SIZE, 0xab, 4096);
            r = send_all(fd, frame, RV_REPL_HDR_SIZE + 4096);
            for (int i = 1; i < 16 && r == IO_OK; i++)
                r = send_all(fd, frame + RV_REPL_HDR_SIZE, 4096);
            say("sent a WRITE header with length = payload_len = 64 MiB and 64 KiB of payload: %s", io_str(r));
        }
        rc = expect_drop(fd, &t0);
        break;
    }
    default:
        rc = 2;
    }
    close(fd);
    return rc;
}
