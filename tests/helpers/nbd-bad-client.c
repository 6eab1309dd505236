/* nbd-bad-client - an NBD client that misbehaves on purpose.
 *
 *   nbd-bad-client (--unix PATH | --tcp HOST:PORT) SCENARIO
 *
 * Exits 0 if the server reacted as the NBD spec requires, 1 (with a message)
 * otherwise, 2 on usage errors.  Every scenario ends by checking, on a fresh
 * connection, that the server still serves reads.  Every wait is bounded by
 * poll() with a 5 s timeout, so a hung server fails the test instead of
 * hanging it.  Plain POSIX sockets; the wire format comes from nbd_proto.h.
 * The client never negotiates structured replies, so all replies are simple. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "repvol/nbd_proto.h"
#include "repvol/wire.h"

#define TIMEOUT_MS 5000
#define MAX_OPT_REPLY (64 * 1024)   /* larger option replies are a server bug here */

/* Where to connect: set once from argv in main() before any connection. */
static const char *target_unix;
static const char *target_tcp;
/* The scenario name, for messages; set once in main(). */
static const char *scenario = "";

__attribute__((format(printf, 1, 2)))
static int fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "nbd-bad-client: %s: FAIL: ", scenario);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

__attribute__((format(printf, 1, 2)))
static void note(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "nbd-bad-client: %s: ", scenario);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Fixed-seed PRNG: the "random" garbage is the same on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15;
static uint8_t rng_byte(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint8_t)((rng_state * UINT64_C(2685821657736338717)) >> 56);
}

/* ------------------------------------------------------------- socket I/O */

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
        /* MSG_NOSIGNAL: a server that hangs up must not kill us with SIGPIPE. */
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

static enum io recv_exact(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        int r = wait_fd(fd, POLLIN, TIMEOUT_MS);
        if (r == 0)
            return IO_TIMEOUT;
        if (r < 0)
            return IO_ERR;
        ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
        if (n == 0)
            return IO_EOF;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return errno == ECONNRESET ? IO_EOF : IO_ERR;
        }
        p += n;
        len -= (size_t)n;
    }
    return IO_OK;
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Wait (at most 5 s in all) for the server to close, discarding anything it
 * sends first.  Returns IO_EOF if it closed; *got counts the bytes seen. */
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
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
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

static int connect_unix(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "nbd-bad-client: socket path too long: %s\n", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "nbd-bad-client: connect %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* HOST:PORT, HOST may be [v6addr]. */
static int connect_tcp(const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host)) {
        fprintf(stderr, "nbd-bad-client: bad HOST:PORT: %s\n", hostport);
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
        fprintf(stderr, "nbd-bad-client: %s: %s\n", hostport, gai_strerror(e));
        return -1;
    }
    int fd = -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "nbd-bad-client: connect %s: %s\n", hostport, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  /* spec SHOULD */
    return fd;
}

static int connect_server(void)
{
    return target_unix ? connect_unix(target_unix) : connect_tcp(target_tcp);
}

/* ------------------------------------------------------------- handshake */

struct conn {
    int fd;
    uint16_t hs_flags;
    uint64_t size;
    uint16_t tflags;
    bool have_block_size;
    uint32_t min_block, pref_block, max_block;
    uint64_t next_cookie;
};

static void close_conn(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Connect and read the greeting.  Returns 0 or 1 (failed, message printed). */
static int connect_and_greet(struct conn *c)
{
    uint8_t g[18];
    enum io r;

    memset(c, 0, sizeof(*c));
    c->next_cookie = 0x1000;
    c->fd = connect_server();
    if (c->fd < 0)
        return fail("cannot connect to the server");
    if ((r = recv_exact(c->fd, g, sizeof(g))) != IO_OK)
        return fail("reading the greeting: %s", io_str(r));
    if (rv_get_be64(g) != NBD_MAGIC || rv_get_be64(g + 8) != NBD_IHAVEOPT)
        return fail("greeting is not NBDMAGIC IHAVEOPT (oldstyle server?)");
    c->hs_flags = rv_get_be16(g + 16);
    if (!(c->hs_flags & NBD_FLAG_FIXED_NEWSTYLE))
        return fail("server does not offer fixed newstyle");
    return 0;
}

static int open_conn(struct conn *c)
{
    int rc = connect_and_greet(c);
    if (rc)
        close_conn(c);
    return rc;
}

static int send_client_flags(struct conn *c)
{
    uint8_t f[4];
    uint32_t flags = NBD_FLAG_C_FIXED_NEWSTYLE;
    if (c->hs_flags & NBD_FLAG_NO_ZEROES)
        flags |= NBD_FLAG_C_NO_ZEROES;
    rv_put_be32(f, flags);
    enum io r = send_all(c->fd, f, sizeof(f));
    return r == IO_OK ? 0 : fail("sending client flags: %s", io_str(r));
}

static int send_option(struct conn *c, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t h[NBD_OPT_HEADER_SIZE];
    enum io r;
    nbd_encode_option(h, opt, len);
    if ((r = send_all(c->fd, h, sizeof(h))) != IO_OK ||
        (len && (r = send_all(c->fd, data, len)) != IO_OK))
        return fail("sending option %s: %s", nbd_opt_name(opt), io_str(r));
    return 0;
}

/* One option reply: header, then up to cap bytes of data (the whole reply
 * must fit).  Returns IO_OK, or why not (IO_ERR also for protocol errors,
 * with *why set). */
static enum io read_opt_reply(struct conn *c, uint32_t expect_opt, uint32_t *type,
                              uint8_t *data, size_t cap, uint32_t *len, const char **why)
{
    uint8_t h[NBD_OPT_REPLY_HEADER_SIZE];
    uint32_t opt;
    enum io r;

    *why = NULL;
    if ((r = recv_exact(c->fd, h, sizeof(h))) != IO_OK)
        return r;
    if (nbd_decode_opt_reply(h, sizeof(h), &opt, type, len) < 0) {
        *why = "option reply with a bad magic";
        return IO_ERR;
    }
    if (opt != expect_opt) {
        *why = "option reply for a different option";
        return IO_ERR;
    }
    if (*len > cap) {
        *why = "option reply too long";
        return IO_ERR;
    }
    return *len ? recv_exact(c->fd, data, *len) : IO_OK;
}

/* NBD_OPT_GO on the default export, asking for NBD_INFO_BLOCK_SIZE. */
static int do_go(struct conn *c)
{
    static uint8_t data[MAX_OPT_REPLY];
    uint8_t req[8];
    bool have_export = false;

    rv_put_be32(req, 0);                    /* name length: default export */
    rv_put_be16(req + 4, 1);
    rv_put_be16(req + 6, NBD_INFO_BLOCK_SIZE);
    if (send_option(c, NBD_OPT_GO, req, sizeof(req)))
        return 1;
    for (int i = 0; i < 64; i++) {
        uint32_t type, len;
        const char *why;
        enum io r = read_opt_reply(c, NBD_OPT_GO, &type, data, sizeof(data), &len, &why);
        if (r != IO_OK)
            return fail("NBD_OPT_GO: %s", why ? why : io_str(r));
        if (type == NBD_REP_ACK) {
            if (!have_export)
                return fail("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT");
            return 0;
        }
        if (type & NBD_REP_FLAG_ERROR)
            return fail("NBD_OPT_GO failed: %s", nbd_rep_name(type));
        if (type != NBD_REP_INFO || len < 2)
            return fail("NBD_OPT_GO: unexpected reply %s", nbd_rep_name(type));
        uint16_t info = rv_get_be16(data);
        if (info == NBD_INFO_EXPORT) {
            if (len != 12)
                return fail("NBD_INFO_EXPORT with length %u", len);
            c->size = rv_get_be64(data + 2);
            c->tflags = rv_get_be16(data + 10);
            have_export = true;
        } else if (info == NBD_INFO_BLOCK_SIZE) {
            if (len != 14)
                return fail("NBD_INFO_BLOCK_SIZE with length %u", len);
            c->min_block = rv_get_be32(data + 2);
            c->pref_block = rv_get_be32(data + 6);
            c->max_block = rv_get_be32(data + 10);
            c->have_block_size = true;
        }
    }
    return fail("NBD_OPT_GO: no final reply after 64 replies");
}

/* A connection in the transmission phase. */
static int open_go(struct conn *c)
{
    if (open_conn(c))
        return 1;
    if (send_client_flags(c) || do_go(c)) {
        close_conn(c);
        return 1;
    }
    if (!(c->tflags & NBD_FLAG_HAS_FLAGS)) {
        close_conn(c);
        return fail("transmission flags lack NBD_FLAG_HAS_FLAGS");
    }
    return 0;
}

/* ---------------------------------------------------------- transmission */

static int send_request(struct conn *c, uint16_t type, uint16_t flags, uint64_t off,
                        uint32_t count, const void *payload, size_t payload_len,
                        uint64_t *cookie)
{
    struct nbd_request rq = { .type = type, .flags = flags, .cookie = c->next_cookie++,
                              .offset = off, .count = count };
    uint8_t h[NBD_REQUEST_SIZE];
    enum io r;

    nbd_encode_request(h, &rq);
    *cookie = rq.cookie;
    if ((r = send_all(c->fd, h, sizeof(h))) != IO_OK ||
        (payload_len && (r = send_all(c->fd, payload, payload_len)) != IO_OK))
        return fail("sending %s request: %s", nbd_cmd_name(type), io_str(r));
    return 0;
}

/* Read a simple reply.  If it reports success and data_len > 0, read that
 * much data into data (a successful READ).  Returns IO_OK or why not. */
static enum io read_reply(struct conn *c, uint64_t cookie, uint32_t *error,
                          void *data, uint32_t data_len, const char **why)
{
    uint8_t h[NBD_SIMPLE_REPLY_SIZE];
    struct nbd_reply rep;
    enum io r;

    *why = NULL;
    if ((r = recv_exact(c->fd, h, 4)) != IO_OK)
        return r;
    if (rv_get_be32(h) != NBD_SIMPLE_REPLY_MAGIC) {
        *why = rv_get_be32(h) == NBD_STRUCTURED_REPLY_MAGIC
            ? "structured reply although structured replies were not negotiated"
            : "reply with a bad magic";
        return IO_ERR;
    }
    if ((r = recv_exact(c->fd, h + 4, sizeof(h) - 4)) != IO_OK)
        return r;
    nbd_decode_reply(h, sizeof(h), &rep);
    if (rep.cookie != cookie) {
        *why = "reply cookie does not match the request";
        return IO_ERR;
    }
    *error = rep.error;
    if (rep.error == 0 && data_len)
        return recv_exact(c->fd, data, data_len);
    return IO_OK;
}

/* Expect an error reply (one of the allowed values, or any if allowed is
 * NULL) to the request with this cookie. */
static int expect_error(struct conn *c, uint64_t cookie, const char *what,
                        const uint32_t *allowed, size_t n_allowed)
{
    uint32_t err;
    const char *why;
    enum io r = read_reply(c, cookie, &err, NULL, 0, &why);
    if (r != IO_OK)
        return fail("%s: %s", what, why ? why : io_str(r));
    if (err == 0)
        return fail("%s: server reported success", what);
    if (!allowed) {
        note("%s: %s (ok)", what, nbd_err_name(err));
        return 0;
    }
    for (size_t i = 0; i < n_allowed; i++)
        if (err == allowed[i]) {
            note("%s: %s (ok)", what, nbd_err_name(err));
            return 0;
        }
    return fail("%s: got %s (%u)", what, nbd_err_name(err), err);
}

/* The connection still works: a small valid read at offset 0 succeeds. */
static int check_read_works(struct conn *c, const char *after)
{
    static uint8_t buf[4096];
    uint32_t len = 512, err;
    uint64_t cookie;
    const char *why;

    if (c->have_block_size && c->min_block > len)
        len = c->min_block;
    if (len > sizeof(buf))
        return fail("minimum block size %u too large for this client", len);
    if (c->size < len)
        return fail("export too small (%llu bytes) to test", (unsigned long long)c->size);
    if (send_request(c, NBD_CMD_READ, 0, 0, len, NULL, 0, &cookie))
        return 1;
    enum io r = read_reply(c, cookie, &err, buf, len, &why);
    if (r != IO_OK)
        return fail("valid READ after %s: %s", after, why ? why : io_str(r));
    if (err)
        return fail("valid READ after %s failed: %s", after, nbd_err_name(err));
    return 0;
}

/* Soft disconnect. */
static void disconnect(struct conn *c)
{
    uint64_t cookie;
    if (c->fd >= 0)
        send_request(c, NBD_CMD_DISC, 0, 0, 0, NULL, 0, &cookie);
    close_conn(c);
}

/* The server survived: a new connection negotiates and reads. */
static int check_server_alive(void)
{
    struct conn c;
    int rc = open_go(&c);
    if (!rc)
        rc = check_read_works(&c, "reconnecting");
    disconnect(&c);
    if (rc)
        return fail("server no longer serves new connections");
    return 0;
}

/* The server must close this connection (anything sent before is ignored). */
static int expect_closed(struct conn *c, const char *what)
{
    size_t got;
    enum io r = wait_close(c->fd, &got);
    if (r != IO_EOF)
        return fail("%s: server did not close the connection (%s)", what, io_str(r));
    note("%s: server closed the connection (ok%s)", what, got ? ", after sending some bytes" : "");
    return 0;
}

/* -------------------------------------------------------------- scenarios */

/* Random bytes instead of client flags: unknown flags, server MUST close. */
static int sc_garbage_handshake(void)
{
    struct conn c;
    uint8_t junk[64];

    if (open_conn(&c))
        return 1;
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = rng_byte();
    junk[0] |= 0x80;            /* guarantee an unknown client flag */
    send_all(c.fd, junk, sizeof(junk));     /* may fail once the server hung up */
    int rc = expect_closed(&c, "garbage client flags");
    close_conn(&c);
    return rc;
}

/* An option header whose magic is not IHAVEOPT: the stream cannot be framed. */
static int sc_bad_option_magic(void)
{
    struct conn c;
    uint8_t h[16];

    if (open_conn(&c) || send_client_flags(&c))
        return 1;
    memcpy(h, "IHAVEOPX", 8);
    rv_put_be32(h + 8, NBD_OPT_GO);
    rv_put_be32(h + 12, 0);
    send_all(c.fd, h, sizeof(h));
    int rc = expect_closed(&c, "bad option magic");
    close_conn(&c);
    return rc;
}

/* An option the server cannot know: NBD_REP_ERR_UNSUP, and GO still works. */
static int sc_unknown_option(void)
{
    struct conn c;
    uint8_t data[MAX_OPT_REPLY];
    const uint32_t opt = 0x4f4b4242;
    uint32_t type, len;
    const char *why;

    if (open_conn(&c) || send_client_flags(&c) || send_option(&c, opt, "whatever", 8))
        return 1;
    enum io r = read_opt_reply(&c, opt, &type, data, sizeof(data), &len, &why);
    if (r != IO_OK)
        return fail("unknown option: %s", why ? why : io_str(r));
    if (type != NBD_REP_ERR_UNSUP)
        return fail("unknown option answered %s, want ERR_UNSUP", nbd_rep_name(type));
    note("unknown option: ERR_UNSUP (ok)");
    int rc = do_go(&c) || check_read_works(&c, "an unknown option");
    disconnect(&c);
    return rc;
}

/* An option header announcing 1 GiB of data, and no data: the server must
 * answer with an error or close, not wait for the gigabyte. */
static int sc_huge_option(void)
{
    struct conn c;
    uint8_t h[16];
    uint8_t data[MAX_OPT_REPLY];
    uint32_t type, len;
    const char *why;

    if (open_conn(&c) || send_client_flags(&c))
        return 1;
    nbd_encode_option(h, NBD_OPT_INFO, UINT32_C(1) << 30);
    if (send_all(c.fd, h, sizeof(h)) != IO_OK)
        return fail("sending the option header");
    enum io r = read_opt_reply(&c, NBD_OPT_INFO, &type, data, sizeof(data), &len, &why);
    int rc = 0;
    if (r == IO_EOF)
        note("1 GiB option: server closed the connection (ok)");
    else if (r != IO_OK)
        rc = fail("1 GiB option: %s", why ? why : io_str(r));
    else if (!(type & NBD_REP_FLAG_ERROR))
        rc = fail("1 GiB option answered %s, want an error", nbd_rep_name(type));
    else
        note("1 GiB option: %s (ok)", nbd_rep_name(type));
    close_conn(&c);
    return rc;
}

/* READ at offset == size: NBD_EINVAL (spec SHOULD), connection still usable. */
static int sc_read_past_end(void)
{
    struct conn c;
    uint64_t cookie;
    static const uint32_t einval[] = { NBD_EINVAL };

    if (open_go(&c))
        return 1;
    uint32_t len = c.have_block_size && c.min_block > 512 ? c.min_block : 512;
    int rc = send_request(&c, NBD_CMD_READ, 0, c.size, len, NULL, 0, &cookie) ||
             expect_error(&c, cookie, "READ at the end of the export", einval, 1) ||
             send_request(&c, NBD_CMD_READ, 0, UINT64_MAX - 100, len, NULL, 0, &cookie) ||
             expect_error(&c, cookie, "READ with offset+count overflowing", einval, 1) ||
             check_read_works(&c, "a READ past the end");
    disconnect(&c);
    return rc;
}

/* WRITE past the end, with its payload: the server must consume the payload,
 * answer NBD_ENOSPC (spec SHOULD; NBD_EINVAL tolerated, NBD_EPERM if read-only)
 * and stay usable. */
static int sc_write_past_end(void)
{
    struct conn c;
    uint64_t cookie;
    static uint8_t payload[8192];
    static const uint32_t allowed[] = { NBD_ENOSPC, NBD_EINVAL, NBD_EPERM };

    if (open_go(&c))
        return 1;
    /* Payload bytes that are not a valid request: a server that forgets to
     * skip them will misparse them and (should) hang up. */
    memset(payload, 0xaa, sizeof(payload));
    uint32_t len = c.have_block_size && c.min_block > 4096 ? c.min_block : 4096;
    if (len > sizeof(payload) / 2 || c.size < 2 * (uint64_t)len) {
        disconnect(&c);
        return fail("minimum block size %u or export size unsuitable", len);
    }
    int rc = send_request(&c, NBD_CMD_WRITE, 0, c.size, len, payload, len, &cookie) ||
             expect_error(&c, cookie, "WRITE at the end of the export", allowed, 3) ||
             send_request(&c, NBD_CMD_WRITE, 0, c.size - len, 2 * len, payload, 2 * len,
                          &cookie) ||
             expect_error(&c, cookie, "WRITE straddling the end", allowed, 3) ||
             check_read_works(&c, "a WRITE past the end");
    disconnect(&c);
    return rc;
}

/* READ larger than the advertised maximum payload: an error reply without
 * data, after which the connection works; or a hard disconnect, which the
 * spec only allows above 32 MiB. */
static int sc_oversized_read(void)
{
    struct conn c;
    uint64_t cookie;

    if (open_go(&c))
        return 1;
    if (!c.have_block_size || c.max_block == UINT32_MAX) {
        note("SKIP: server advertises no maximum payload; nothing is oversized");
        disconnect(&c);
        return 0;
    }
    uint32_t count = c.max_block + 1;
    if (count > c.size)
        note("export (%llu bytes) smaller than the request: the error may be for the bounds",
             (unsigned long long)c.size);
    if (send_request(&c, NBD_CMD_READ, 0, 0, count, NULL, 0, &cookie))
        return 1;
    uint32_t err;
    const char *why;
    int rc;
    enum io r = read_reply(&c, cookie, &err, NULL, 0, &why);
    if (r == IO_EOF) {
        if (count <= NBD_DOS_PAYLOAD_FLOOR)
            rc = fail("server hung up on a %u-byte READ (spec: <= 32 MiB is not DoS)", count);
        else {
            note("server hung up on a %u-byte READ (allowed above 32 MiB)", count);
            rc = 0;
        }
    } else if (r != IO_OK) {
        rc = fail("oversized READ: %s", why ? why : io_str(r));
    } else if (err == 0) {
        rc = fail("oversized READ of %u bytes (max %u) succeeded", count, c.max_block);
    } else {
        note("oversized READ: %s (ok)", nbd_err_name(err));
        rc = check_read_works(&c, "an oversized READ");
    }
    disconnect(&c);
    return rc;
}

/* A request header with the wrong magic: the server must hang up. */
static int sc_bad_request_magic(void)
{
    struct conn c;
    struct nbd_request rq = { .type = NBD_CMD_READ, .cookie = 1, .offset = 0, .count = 512 };
    uint8_t h[NBD_REQUEST_SIZE];

    if (open_go(&c))
        return 1;
    nbd_encode_request(h, &rq);
    rv_put_be32(h, 0x25609514);     /* reserved, never a request */
    send_all(c.fd, h, sizeof(h));
    int rc = expect_closed(&c, "bad request magic");
    close_conn(&c);
    return rc;
}

/* A command number nobody defines: NBD_EINVAL, connection usable. */
static int sc_unknown_command(void)
{
    struct conn c;
    uint64_t cookie;
    static const uint32_t einval[] = { NBD_EINVAL };

    if (open_go(&c))
        return 1;
    int rc = send_request(&c, 0x42, 0, 0, 512, NULL, 0, &cookie) ||
             expect_error(&c, cookie, "unknown command 0x42", einval, 1) ||
             check_read_works(&c, "an unknown command");
    disconnect(&c);
    return rc;
}

/* A WRITE header promising 64 KiB, 100 bytes of it, then EOF: the server
 * must not report success, must close, and must survive. */
static int sc_truncated_write(void)
{
    struct conn c;
    uint64_t cookie;
    uint8_t part[100];

    if (open_go(&c))
        return 1;
    memset(part, 0x5a, sizeof(part));
    if (send_request(&c, NBD_CMD_WRITE, 0, 0, 65536, part, sizeof(part), &cookie))
        return 1;
    shutdown(c.fd, SHUT_WR);
    /* No reply can be a success; an error reply is tolerated if a close follows. */
    uint32_t err;
    const char *why;
    size_t got;
    int rc = 0;
    enum io r = read_reply(&c, cookie, &err, NULL, 0, &why);
    if (r == IO_OK && err == 0)
        rc = fail("truncated WRITE reported success");
    else if (r == IO_OK && wait_close(c.fd, &got) != IO_EOF)
        rc = fail("truncated WRITE: server did not close after the client's EOF");
    else if (r == IO_TIMEOUT)
        rc = fail("truncated WRITE: server neither replied nor closed within 5 s");
    else if (r == IO_ERR)
        rc = fail("truncated WRITE: %s", why ? why : io_str(r));
    else
        note("truncated WRITE: server closed (ok)");
    close_conn(&c);
    return rc;
}

/* Flags the client may not use: DF without structured replies (SEND_DF
 * cannot be set then), REQ_ONE on a READ, FUA if not advertised, an
 * undefined bit.  Each: NBD_EINVAL, connection usable. */
static int sc_flags_not_negotiated(void)
{
    struct conn c;
    uint64_t cookie;
    static const uint32_t einval[] = { NBD_EINVAL };
    static uint8_t payload[512];

    if (open_go(&c))
        return 1;
    if (c.tflags & NBD_FLAG_SEND_DF)
        return fail("NBD_FLAG_SEND_DF advertised without structured replies (spec MUST NOT)");
    int rc = send_request(&c, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, NULL, 0, &cookie) ||
             expect_error(&c, cookie, "READ with DF, no structured replies", einval, 1) ||
             send_request(&c, NBD_CMD_READ, NBD_CMD_FLAG_REQ_ONE, 0, 512, NULL, 0, &cookie) ||
             expect_error(&c, cookie, "READ with REQ_ONE", einval, 1) ||
             send_request(&c, NBD_CMD_READ, 1u << 14, 0, 512, NULL, 0, &cookie) ||
             expect_error(&c, cookie, "READ with an undefined flag", einval, 1);
    if (!rc && !(c.tflags & NBD_FLAG_SEND_FUA) && !(c.tflags & NBD_FLAG_READ_ONLY))
        rc = send_request(&c, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 512, payload, 512, &cookie) ||
             expect_error(&c, cookie, "WRITE with FUA not advertised", einval, 1);
    if (!rc)
        rc = check_read_works(&c, "requests with bad flags");
    disconnect(&c);
    return rc;
}

static const struct {
    const char *name;
    int (*fn)(void);
} scenarios[] = {
    { "garbage-handshake", sc_garbage_handshake },
    { "bad-option-magic", sc_bad_option_magic },
    { "unknown-option", sc_unknown_option },
    { "huge-option", sc_huge_option },
    { "read-past-end", sc_read_past_end },
    { "write-past-end", sc_write_past_end },
    { "oversized-read", sc_oversized_read },
    { "bad-request-magic", sc_bad_request_magic },
    { "unknown-command", sc_unknown_command },
    { "truncated-write", sc_truncated_write },
    { "flags-not-negotiated", sc_flags_not_negotiated },
};

static int run_one(size_t i)
{
    scenario = scenarios[i].name;
    int rc = scenarios[i].fn();
    if (!rc)
        rc = check_server_alive();
    if (!rc)
        fprintf(stderr, "nbd-bad-client: %s: PASS\n", scenario);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: nbd-bad-client (--unix PATH | --tcp HOST:PORT) SCENARIO\n"
               "scenarios (or \"all\"):\n");
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        fprintf(f, "  %s\n", scenarios[i].name);
}

int main(int argc, char **argv)
{
    const char *name = NULL;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--unix") && i + 1 < argc)
            target_unix = argv[++i];
        else if (!strcmp(argv[i], "--tcp") && i + 1 < argc)
            target_tcp = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else {
            usage(stderr);
            return 2;
        }
    }
    if (!name || !target_unix == !target_tcp) {
        usage(stderr);
        return 2;
    }

    if (!strcmp(name, "all")) {
        int failed = 0;
        for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
            failed |= run_one(i);
        return failed ? 1 : 0;
    }
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        if (!strcmp(name, scenarios[i].name))
            return run_one(i);
    fprintf(stderr, "nbd-bad-client: unknown scenario \"%s\"\n", name);
    usage(stderr);
    return 2;
}
