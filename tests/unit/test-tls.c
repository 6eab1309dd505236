/* test-tls.c - unit tests for server/tls.c: client and server sessions
 * pumped against each other in memory.  Certificates are made at run time
 * with the OpenSSL API in a temporary directory. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <CUnit/Basic.h>

#include "unit-main.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "repvol/log.h"
#include "repvol/tls.h"
#include "repvol/util.h"

/* For set-up code, which runs outside any test. */
#define MUST(x) do { \
        if (!(x)) { \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #x); \
            exit(1); \
        } \
    } while (0)

static char tmpdir[64];
static char path_buf[512];

static const char *tpath(const char *name)
{
    snprintf(path_buf, sizeof path_buf, "%s/%s", tmpdir, name);
    return path_buf;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    unlink(path);
    FILE *f = fopen(path, "w");
    MUST(f != NULL);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

/* Keys as psktool writes them. */
#define KEY_ALICE "4f3c6ad1b4c5e0e2d9a1726bc3a7d04e0e3f0cbd9c2b1a34c8e0f9b7a6d5c4b3"
#define KEY_BOB   "00112233445566778899aabbccddeeff"
#define KEY_WRONG "5f3c6ad1b4c5e0e2d9a1726bc3a7d04e0e3f0cbd9c2b1a34c8e0f9b7a6d5c4b3"

/* ------------------------------------------------------------ certificates */

static EVP_PKEY *ca1_key, *ca2_key;
static X509 *ca1, *ca2;

static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *san, const char *eku,
                       X509 *issuer, EVP_PKEY *issuer_key, long from, long to)
{
    static long serial = 1;
    X509 *x = X509_new();
    MUST(x != NULL);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), from);
    X509_gmtime_adj(X509_getm_notAfter(x), to);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"repvol test", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    struct { int nid; const char *val; } ext[] = {
        { NID_basic_constraints, issuer ? "critical,CA:FALSE" : "critical,CA:TRUE" },
        { NID_key_usage, issuer ? "critical,digitalSignature" : "critical,keyCertSign,cRLSign" },
        { NID_subject_key_identifier, "hash" },
        { NID_subject_alt_name, san },
        { NID_ext_key_usage, eku },
    };
    for (size_t i = 0; i < RV_ARRAY_SIZE(ext); i++) {
        if (!ext[i].val)
            continue;
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, ext[i].nid, ext[i].val);
        MUST(e != NULL);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    MUST(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static void write_pem_cert(const char *dir, const char *name, X509 *x)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s/%s", tmpdir, dir, name);
    FILE *f = fopen(p, "w");
    MUST(f != NULL);
    PEM_write_X509(f, x);
    fclose(f);
}

static void write_pem_key(const char *dir, const char *name, EVP_PKEY *k)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s/%s", tmpdir, dir, name);
    FILE *f = fopen(p, "w");
    MUST(f != NULL);
    fchmod(fileno(f), 0600);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

/* A certificate directory in nbdkit's layout: ca-cert.pem plus one
 * ROLE-cert.pem / ROLE-key.pem pair. */
static void make_dir(const char *dir, X509 *trust, const char *role, const char *cn, const char *san,
                     X509 *issuer, EVP_PKEY *issuer_key, long from, long to)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, dir);
    MUST(mkdir(p, 0700) == 0);
    write_pem_cert(dir, "ca-cert.pem", trust);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    MUST(k != NULL);
    bool server = !strcmp(role, "server");
    X509 *x = make_cert(k, cn, san, server ? "serverAuth" : "clientAuth", issuer, issuer_key, from, to);
    char name[64];
    snprintf(name, sizeof name, "%s-cert.pem", role);
    write_pem_cert(dir, name, x);
    snprintf(name, sizeof name, "%s-key.pem", role);
    write_pem_key(dir, name, k);
    X509_free(x);
    EVP_PKEY_free(k);
}

static const long DAY = 86400;

static int suite_init(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/repvol-test-tls-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    ca1_key = EVP_EC_gen("P-256");
    ca2_key = EVP_EC_gen("P-256");
    if (!ca1_key || !ca2_key)
        return -1;
    ca1 = make_cert(ca1_key, "repvol test CA", NULL, NULL, NULL, NULL, -DAY, 30 * DAY);
    ca2 = make_cert(ca2_key, "some other CA", NULL, NULL, NULL, NULL, -DAY, 30 * DAY);

    make_dir("srv", ca1, "server", "node-a", "DNS:node-a,IP:127.0.0.1", ca1, ca1_key, -DAY, 30 * DAY);
    make_dir("cli", ca1, "client", "node-b", "DNS:node-b", ca1, ca1_key, -DAY, 30 * DAY);
    /* Trusts another CA / signed by another CA. */
    make_dir("cli-ca2", ca2, "client", "node-b", "DNS:node-b", ca1, ca1_key, -DAY, 30 * DAY);
    make_dir("cli-by-ca2", ca1, "client", "node-b", "DNS:node-b", ca2, ca2_key, -DAY, 30 * DAY);
    make_dir("srv-expired", ca1, "server", "node-a", "DNS:node-a", ca1, ca1_key, -3 * DAY, -DAY);
    make_dir("cli-expired", ca1, "client", "node-b", "DNS:node-b", ca1, ca1_key, -3 * DAY, -DAY);
    /* No subjectAltName: the name check falls back to the CN. */
    make_dir("srv-cn", ca1, "server", "node-c", NULL, ca1, ca1_key, -DAY, 30 * DAY);

    write_file(tpath("keys.psk"), "alice:" KEY_ALICE "\nbob:" KEY_BOB "\n", 0600);
    write_file(tpath("alice-wrong.psk"), "alice:" KEY_WRONG "\n", 0600);
    write_file(tpath("mallory.psk"), "mallory:" KEY_ALICE "\n", 0600);
    /* GnuTLS's hex identity form, CRLF and blank lines. */
    write_file(tpath("hexid.psk"), "\r\n#616c696365:" KEY_ALICE "  \r\n\n", 0600);
    return 0;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(p);
}

static int suite_cleanup(void)
{
    X509_free(ca1);
    X509_free(ca2);
    EVP_PKEY_free(ca1_key);
    EVP_PKEY_free(ca2_key);
    if (tmpdir[0])
        nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ------------------------------------------------------------ pumping */

static struct rv_tls_ctx *ctx_psk(bool server, const char *file, const char *identity)
{
    char path[512], msg[RV_TLS_ERR_MAX];
    snprintf(path, sizeof path, "%s/%s", tmpdir, file);
    struct rv_tls_config cfg = { .kind = RV_TLS_PSK, .psk_file = path, .psk_identity = identity,
                                 .server = server };
    struct rv_tls_ctx *c = NULL;
    int r = rv_tls_ctx_new(&cfg, &c, msg, sizeof msg);
    if (r < 0)
        fprintf(stderr, "\n  rv_tls_ctx_new(%s): %d %s\n", file, r, msg);
    CU_ASSERT_FATAL(r == 0 && c);
    return c;
}

static struct rv_tls_ctx *ctx_x509(bool server, const char *dir, const char *peer)
{
    char path[512], msg[RV_TLS_ERR_MAX];
    snprintf(path, sizeof path, "%s/%s", tmpdir, dir);
    struct rv_tls_config cfg = { .kind = RV_TLS_X509, .x509_dir = path, .peer_name = peer,
                                 .server = server };
    struct rv_tls_ctx *c = NULL;
    int r = rv_tls_ctx_new(&cfg, &c, msg, sizeof msg);
    if (r < 0)
        fprintf(stderr, "\n  rv_tls_ctx_new(%s): %d %s\n", dir, r, msg);
    CU_ASSERT_FATAL(r == 0 && c);
    return c;
}

/* Move ciphertext from one session to the other, at most max bytes. */
static size_t pump_max(struct rv_tls *from, struct rv_tls *to, size_t max)
{
    size_t moved = 0;
    const void *p;
    size_t n;
    while (moved < max && (n = rv_tls_get_ciphertext(from, &p)) > 0) {
        if (n > max - moved)
            n = max - moved;
        ssize_t k = rv_tls_put_ciphertext(to, p, n);
        if (k <= 0)
            break;
        rv_tls_ciphertext_consumed(from, (size_t)k);
        moved += (size_t)k;
    }
    return moved;
}

static size_t pump(struct rv_tls *from, struct rv_tls *to)
{
    return pump_max(from, to, SIZE_MAX);
}

/* Run both handshakes until neither can progress; step bytes at a time. */
static void handshake_step(struct rv_tls *c, struct rv_tls *s, size_t step,
                           enum rv_tls_status *cs, enum rv_tls_status *ss)
{
    *cs = *ss = RV_TLS_AGAIN;
    for (int idle = 0, i = 0; idle < 3 && i < 100000; i++) {
        *cs = rv_tls_handshake(c);
        size_t moved = pump_max(c, s, step);
        *ss = rv_tls_handshake(s);
        moved += pump_max(s, c, step);
        idle = moved ? 0 : idle + 1;
    }
}

static void handshake(struct rv_tls *c, struct rv_tls *s, enum rv_tls_status *cs, enum rv_tls_status *ss)
{
    handshake_step(c, s, SIZE_MAX, cs, ss);
}

static void fill_random(uint8_t *p, size_t n)
{
    CU_ASSERT_FATAL(RAND_bytes(p, (int)n) == 1);
}

/* a sends alen bytes to b while b sends blen bytes to a, through the send
 * caps; both arrive intact. */
static void duplex(struct rv_tls *a, struct rv_tls *b, size_t alen, size_t blen)
{
    uint8_t *atx = malloc(alen + 1), *brx = malloc(alen + 1);
    uint8_t *btx = malloc(blen + 1), *arx = malloc(blen + 1);
    CU_ASSERT_FATAL(atx && brx && btx && arx);
    fill_random(atx, alen + 1);
    fill_random(btx, blen + 1);
    size_t asent = 0, bsent = 0, agot = 0, bgot = 0;
    bool saw_short = false;
    for (int idle = 0; (agot < blen || bgot < alen) && idle < 3;) {
        size_t before = asent + bsent + agot + bgot;
        if (asent < alen) {
            ssize_t w = rv_tls_write(a, atx + asent, alen - asent);
            CU_ASSERT_FATAL(w >= 0);
            saw_short |= (size_t)w < alen - asent;
            asent += (size_t)w;
            CU_ASSERT(rv_tls_ciphertext_pending(a) <= RV_TLS_OUT_MAX);
        }
        if (bsent < blen) {
            ssize_t w = rv_tls_write(b, btx + bsent, blen - bsent);
            CU_ASSERT_FATAL(w >= 0);
            bsent += (size_t)w;
        }
        pump(a, b);
        pump(b, a);
        ssize_t rb = 0, ra = 0;
        /* Odd-sized reads: records get split across calls. */
        while (bgot < alen && (rb = rv_tls_read(b, brx + bgot, RV_MIN(alen - bgot, 7001))) > 0)
            bgot += (size_t)rb;
        while (agot < blen && (ra = rv_tls_read(a, arx + agot, RV_MIN(blen - agot, 3333))) > 0)
            agot += (size_t)ra;
        pump(a, b);
        pump(b, a);
        CU_ASSERT(ra >= 0 && rb >= 0);
        if (ra < 0 || rb < 0)
            fprintf(stderr, "\n  read: %zd %zd '%s' '%s'\n", ra, rb, rv_tls_error(a), rv_tls_error(b));
        idle = asent + bsent + agot + bgot == before ? idle + 1 : 0;
    }
    CU_ASSERT_EQUAL(bgot, alen);
    CU_ASSERT_EQUAL(agot, blen);
    CU_ASSERT(memcmp(atx, brx, alen) == 0);
    CU_ASSERT(memcmp(btx, arx, blen) == 0);
    if (alen > 2 * RV_TLS_OUT_MAX)
        CU_ASSERT(saw_short);       /* the send cap pushed back */
    free(atx);
    free(brx);
    free(btx);
    free(arx);
}

static bool contains(const char *hay, const char *needle)
{
    bool ok = strstr(hay, needle) != NULL;
    if (!ok)
        fprintf(stderr, "\n  \"%s\" lacks \"%s\"\n", hay, needle);
    return ok;
}

/* ------------------------------------------------------------ PSK */

static void test_psk_handshake_and_data(void)
{
    struct rv_tls_ctx *cc = ctx_psk(false, "keys.psk", "alice"), *sc = ctx_psk(true, "keys.psk", NULL);
    struct rv_tls *c = rv_tls_new(cc), *s = rv_tls_new(sc);
    CU_ASSERT_FATAL(c && s);
    /* Sessions keep their contexts alive. */
    rv_tls_ctx_free(cc);
    rv_tls_ctx_free(sc);
    CU_ASSERT_STRING_EQUAL(rv_tls_peer(s), "");
    CU_ASSERT_EQUAL(rv_tls_read(s, (char[8]){ 0 }, 8), -EINVAL);   /* not yet */
    enum rv_tls_status cs, ss;
    handshake(c, s, &cs, &ss);
    CU_ASSERT_EQUAL(cs, RV_TLS_DONE);
    CU_ASSERT_EQUAL(ss, RV_TLS_DONE);
    CU_ASSERT_STRING_EQUAL(rv_tls_peer(s), "alice");
    CU_ASSERT_STRING_EQUAL(rv_tls_peer(c), "alice");
    CU_ASSERT_STRING_EQUAL(rv_tls_error(s), "");

    duplex(c, s, 5 * 1000 * 1000 + 17, 3 * 1000 * 1000 + 1);
    duplex(c, s, 1, 0);
    duplex(c, s, 0, 1);

    /* A small record split at every byte boundary. */
    static const char msg[] = "replicate block 42, please";
    for (size_t cut = 1;; cut++) {
        CU_ASSERT_FATAL(rv_tls_write(c, msg, sizeof msg) == (ssize_t)sizeof msg);
        const void *p;
        size_t n = rv_tls_get_ciphertext(c, &p);
        CU_ASSERT_FATAL(n > sizeof msg && n < sizeof msg + 64);
        uint8_t rec[128];
        memcpy(rec, p, n);
        rv_tls_ciphertext_consumed(c, n);
        if (cut > n)
            cut = n;                /* last round: whole, keeping the sequence */
        char out[64];
        CU_ASSERT_EQUAL(rv_tls_put_ciphertext(s, rec, cut), (ssize_t)cut);
        if (cut < n)
            CU_ASSERT_EQUAL(rv_tls_read(s, out, sizeof out), 0);
        CU_ASSERT_EQUAL(rv_tls_put_ciphertext(s, rec + cut, n - cut), (ssize_t)(n - cut));
        CU_ASSERT_EQUAL(rv_tls_read(s, out, sizeof out), (ssize_t)sizeof msg);
        CU_ASSERT(memcmp(out, msg, sizeof msg) == 0);
        CU_ASSERT_EQUAL(rv_tls_read(s, out, sizeof out), 0);
        if (cut == n)
            break;
    }

    /* Fresh keys both ways, then more data. */
    CU_ASSERT_EQUAL(rv_tls_key_update(c), 0);
    CU_ASSERT_EQUAL(rv_tls_key_update(s), 0);
    duplex(c, s, 100000, 100000);

    /* close_notify one way; the other direction still works. */
    CU_ASSERT_EQUAL(rv_tls_shutdown(c), 0);
    CU_ASSERT_EQUAL(rv_tls_write(c, "x", 1), -EPIPE);
    pump(c, s);
    char b[16];
    CU_ASSERT_EQUAL(rv_tls_read(s, b, sizeof b), -ESHUTDOWN);
    CU_ASSERT_EQUAL(rv_tls_read(s, b, sizeof b), -ESHUTDOWN);
    CU_ASSERT_EQUAL(rv_tls_write(s, "bye", 3), 3);
    pump(s, c);
    CU_ASSERT_EQUAL(rv_tls_read(c, b, sizeof b), 3);
    CU_ASSERT_EQUAL(rv_tls_shutdown(s), 0);
    pump(s, c);
    CU_ASSERT_EQUAL(rv_tls_read(c, b, sizeof b), -ESHUTDOWN);
    CU_ASSERT_EQUAL(rv_tls_eof(c), 0);         /* a clean end */
    rv_tls_free(c);
    rv_tls_free(s);
}

/* What a socket EOF means depends on when it comes. */
static void test_eof(void)
{
    struct rv_tls_ctx *cc = ctx_psk(false, "keys.psk", "alice"), *sc = ctx_psk(true, "keys.psk", NULL);
    struct rv_tls *c = rv_tls_new(cc), *s = rv_tls_new(sc);
    CU_ASSERT_EQUAL(rv_tls_handshake(c), RV_TLS_AGAIN);
    CU_ASSERT_EQUAL(rv_tls_eof(c), -ECONNRESET);
    CU_ASSERT(contains(rv_tls_error(c), "hung up during the TLS handshake (did it refuse our pre-shared key?)"));
    CU_ASSERT_EQUAL(rv_tls_handshake(c), RV_TLS_ERROR);
    CU_ASSERT_EQUAL(rv_tls_put_ciphertext(c, "x", 1), -EPIPE);
    rv_tls_free(c);

    c = rv_tls_new(cc);
    enum rv_tls_status cs, ss;
    handshake(c, s, &cs, &ss);
    CU_ASSERT_FATAL(cs == RV_TLS_DONE && ss == RV_TLS_DONE);
    CU_ASSERT_EQUAL(rv_tls_eof(s), -ECONNRESET);
    CU_ASSERT(contains(rv_tls_error(s), "without close_notify"));
    char b[8];
    CU_ASSERT_EQUAL(rv_tls_read(s, b, sizeof b), -ECONNRESET);
    CU_ASSERT_EQUAL(rv_tls_write(s, b, sizeof b), -ECONNRESET);
    CU_ASSERT_EQUAL(rv_tls_shutdown(s), -ECONNRESET);
    rv_tls_free(c);
    rv_tls_free(s);
    rv_tls_ctx_free(cc);
    rv_tls_ctx_free(sc);
}

/* The handshake with ciphertext moving one byte at a time. */
static void test_psk_handshake_bytewise(void)
{
    struct rv_tls_ctx *cc = ctx_psk(false, "hexid.psk", "alice"), *sc = ctx_psk(true, "keys.psk", "alice");
    struct rv_tls *c = rv_tls_new(cc), *s = rv_tls_new(sc);
    CU_ASSERT_FATAL(c && s);
    enum rv_tls_status cs, ss;
    handshake_step(c, s, 1, &cs, &ss);
    CU_ASSERT_EQUAL(cs, RV_TLS_DONE);
    CU_ASSERT_EQUAL(ss, RV_TLS_DONE);
    duplex(s, c, 40000, 40000);
    rv_tls_free(c);
    rv_tls_free(s);
    rv_tls_ctx_free(cc);
    rv_tls_ctx_free(sc);
}

static void expect_refused(struct rv_tls_ctx *cc, struct rv_tls_ctx *sc, const char *cwant, const char *swant)
{
    struct rv_tls *c = rv_tls_new(cc), *s = rv_tls_new(sc);
    CU_ASSERT_FATAL(c && s);
    enum rv_tls_status cs, ss;
    handshake(c, s, &cs, &ss);
    CU_ASSERT_EQUAL(ss, RV_TLS_ERROR);
    if (cs == RV_TLS_DONE) {
        /* TLS 1.3: the client finishes before the server checks it. */
        char b[16];
        CU_ASSERT(rv_tls_read(c, b, sizeof b) < 0);
    } else {
        CU_ASSERT_EQUAL(cs, RV_TLS_ERROR);
    }
    CU_ASSERT(rv_tls_write(s, "x", 1) < 0);
    CU_ASSERT(rv_tls_write(c, "x", 1) < 0);
    CU_ASSERT(rv_tls_put_ciphertext(s, "x", 1) == -EPIPE);
    CU_ASSERT(contains(rv_tls_error(c), cwant));
    CU_ASSERT(contains(rv_tls_error(s), swant));
    CU_ASSERT(strstr(rv_tls_error(c), KEY_ALICE) == NULL && strstr(rv_tls_error(s), KEY_ALICE) == NULL);
    rv_tls_free(c);
    rv_tls_free(s);
    rv_tls_ctx_free(cc);
    rv_tls_ctx_free(sc);
}

static void test_psk_wrong_key(void)
{
    expect_refused(ctx_psk(false, "alice-wrong.psk", "alice"), ctx_psk(true, "keys.psk", NULL),
                   "refused our pre-shared key", "key for PSK identity 'alice' is wrong");
}

static void test_psk_unknown_identity(void)
{
    /* The client can't tell an unknown identity from a wrong key. */
    expect_refused(ctx_psk(false, "mallory.psk", "mallory"), ctx_psk(true, "keys.psk", NULL),
                   "refused our pre-shared key", "unknown PSK identity 'mallory'");
    /* A server limited to one identity refuses the others in its file. */
    expect_refused(ctx_psk(false, "keys.psk", "bob"), ctx_psk(true, "keys.psk", "alice"),
                   "refused our pre-shared key", "unknown PSK identity 'bob'");
}

static void test_psk_vs_x509(void)
{
    expect_refused(ctx_psk(false, "keys.psk", "alice"), ctx_x509(true, "srv", NULL),
                   "server sent a certificate instead of taking our pre-shared key", "");
    expect_refused(ctx_x509(false, "cli", "node-a"), ctx_psk(true, "keys.psk", NULL),
                   "", "offered no usable pre-shared key");
}

static void expect_ctx_error(const struct rv_tls_config *cfg, int want, const char *what)
{
    char msg[RV_TLS_ERR_MAX] = "";
    struct rv_tls_ctx *c = (struct rv_tls_ctx *)1;
    int r = rv_tls_ctx_new(cfg, &c, msg, sizeof msg);
    if (r != want)
        fprintf(stderr, "\n  rv_tls_ctx_new = %d (%s); want %d\n", r, msg, want);
    CU_ASSERT_EQUAL(r, want);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT(contains(msg, what));
    /* Secrets stay out of messages. */
    CU_ASSERT(strstr(msg, KEY_BOB) == NULL && strstr(msg, "abcdef") == NULL);
}

static void test_psk_file_errors(void)
{
    struct rv_tls_config cfg = { .kind = RV_TLS_PSK, .psk_file = tpath("bad.psk"), .server = true };
    struct { const char *text; const char *want; } bad[] = {
        { "alice:" KEY_ALICE "\nbob" KEY_BOB "\n", "line 2: expected identity:hexkey" },
        { "alice:" KEY_BOB "a\n", "line 1: the key is not an even number of hex digits" },
        { "alice:00112233445566778899aabbccddeexx\n", "line 1: the key is not" },
        { "alice:0011223344556677\n", "line 1: key shorter than 16 bytes" },
        { ":" KEY_BOB "\n", "line 1: identity must be" },
        { "#zz:" KEY_BOB "\n", "line 1: '#' must be followed by a hex identity" },
        { "bob:" KEY_BOB "\n\nbob:" KEY_ALICE "\n", "line 3: identity 'bob' appears twice" },
        { "\n\n", "no identity:hexkey lines" },
    };
    for (size_t i = 0; i < RV_ARRAY_SIZE(bad); i++) {
        write_file(cfg.psk_file, bad[i].text, 0600);
        expect_ctx_error(&cfg, -EINVAL, bad[i].want);
    }
    char big[2000] = "alice:";
    for (int i = 0; i < 513; i++)
        strcat(big, "ab");
    write_file(cfg.psk_file, big, 0600);
    expect_ctx_error(&cfg, -EINVAL, "key longer than 512 bytes");

    cfg.psk_file = tpath("keys.psk");
    cfg.psk_identity = "carol";
    expect_ctx_error(&cfg, -ENOENT, "PSK identity 'carol' is not in");
    cfg.server = false;
    cfg.psk_identity = NULL;       /* a client without one uses the file's first */
    {
        struct rv_tls_ctx *c = NULL;
        char m[RV_TLS_ERR_MAX];
        CU_ASSERT_EQUAL(rv_tls_ctx_new(&cfg, &c, m, sizeof m), 0);
        rv_tls_ctx_free(c);
    }
    cfg.psk_file = tpath("does-not-exist.psk");
    cfg.psk_identity = "alice";
    expect_ctx_error(&cfg, -ENOENT, "No such file");
    cfg.psk_file = NULL;
    expect_ctx_error(&cfg, -EINVAL, "needs a PSK file");
}

static void test_secret_file_permissions(void)
{
    struct rv_tls_config cfg = { .kind = RV_TLS_PSK, .psk_file = tpath("perm.psk"), .server = true };
    write_file(cfg.psk_file, "alice:" KEY_ALICE "\n", 0644);
    expect_ctx_error(&cfg, -EPERM, "has mode 0644");
    chmod(cfg.psk_file, 0640);
    expect_ctx_error(&cfg, -EPERM, "has mode 0640");
    chmod(cfg.psk_file, 0602);
    expect_ctx_error(&cfg, -EPERM, "has mode 0602");
    chmod(cfg.psk_file, 0400);
    struct rv_tls_ctx *c = NULL;
    char msg[RV_TLS_ERR_MAX];
    CU_ASSERT_EQUAL(rv_tls_ctx_new(&cfg, &c, msg, sizeof msg), 0);
    rv_tls_ctx_free(c);
    if (geteuid() == 0) {
        CU_ASSERT_EQUAL(chown(cfg.psk_file, 65534, (gid_t)-1), 0);
        expect_ctx_error(&cfg, -EPERM, "belongs to uid 65534");
    }
    cfg.psk_file = tmpdir;
    expect_ctx_error(&cfg, -EINVAL, "not a regular file");

    /* A private key readable by others. */
    char key[512];
    snprintf(key, sizeof key, "%s/srv/server-key.pem", tmpdir);
    CU_ASSERT_EQUAL(chmod(key, 0644), 0);
    struct rv_tls_config x = { .kind = RV_TLS_X509, .x509_dir = tpath("srv"), .server = true };
    expect_ctx_error(&x, -EPERM, "server-key.pem holds a secret but has mode 0644");
    CU_ASSERT_EQUAL(chmod(key, 0600), 0);
    c = NULL;
    CU_ASSERT_EQUAL(rv_tls_ctx_new(&x, &c, msg, sizeof msg), 0);
    rv_tls_ctx_free(c);
}

/* ------------------------------------------------------------ X.509 */

static void test_x509_good(void)
{
    struct rv_tls_ctx *cc = ctx_x509(false, "cli", "node-a"), *sc = ctx_x509(true, "srv", "node-b");
    struct rv_tls *c = rv_tls_new(cc), *s = rv_tls_new(sc);
    CU_ASSERT_FATAL(c && s);
    enum rv_tls_status cs, ss;
    handshake(c, s, &cs, &ss);
    CU_ASSERT_EQUAL(cs, RV_TLS_DONE);
    CU_ASSERT_EQUAL(ss, RV_TLS_DONE);
    CU_ASSERT_STRING_EQUAL(rv_tls_peer(c), "node-a");
    CU_ASSERT_STRING_EQUAL(rv_tls_peer(s), "node-b");
    duplex(c, s, 1000000, 1000000);
    rv_tls_free(c);
    rv_tls_free(s);
    rv_tls_ctx_free(cc);
    rv_tls_ctx_free(sc);

    /* An IP address as the name, a server taking any client of its CA, and
     * a certificate without subjectAltName (matched by CN). */
    const struct { const char *sdir, *peer; } ok[] = {
        { "srv", "127.0.0.1" }, { "srv-cn", "node-c" },
    };
    for (size_t i = 0; i < RV_ARRAY_SIZE(ok); i++) {
        cc = ctx_x509(false, "cli", ok[i].peer);
        sc = ctx_x509(true, ok[i].sdir, NULL);
        c = rv_tls_new(cc);
        s = rv_tls_new(sc);
        handshake(c, s, &cs, &ss);
        CU_ASSERT_EQUAL(cs, RV_TLS_DONE);
        CU_ASSERT_EQUAL(ss, RV_TLS_DONE);
        duplex(s, c, 1000, 1000);
        rv_tls_free(c);
        rv_tls_free(s);
        rv_tls_ctx_free(cc);
        rv_tls_ctx_free(sc);
    }
}

static void test_x509_wrong_ca(void)
{
    /* The client does not trust the server's CA. */
    expect_refused(ctx_x509(false, "cli-ca2", "node-a"), ctx_x509(true, "srv", NULL),
                   "server certificate 'node-a' (issued by 'repvol test CA') is not signed by our CA", "unknown CA");
    /* The server does not trust the client's. */
    expect_refused(ctx_x509(false, "cli-by-ca2", "node-a"), ctx_x509(true, "srv", NULL),
                   "does not trust our certificate",
                   "client certificate 'node-b' (issued by 'some other CA') is not signed by our CA");
}

static void test_x509_expired(void)
{
    expect_refused(ctx_x509(false, "cli", "node-a"), ctx_x509(true, "srv-expired", NULL),
                   "server certificate 'node-a' has expired (notAfter", "expired");
    expect_refused(ctx_x509(false, "cli-expired", "node-a"), ctx_x509(true, "srv", NULL),
                   "expired", "client certificate 'node-b' has expired");
}

static void test_x509_wrong_name(void)
{
    expect_refused(ctx_x509(false, "cli", "node-x"), ctx_x509(true, "srv", NULL),
                   "server certificate 'node-a' is not for 'node-x'", "");
    expect_refused(ctx_x509(false, "cli", "10.9.8.7"), ctx_x509(true, "srv", NULL),
                   "is not for '10.9.8.7'", "");
    expect_refused(ctx_x509(false, "cli", "node-a"), ctx_x509(true, "srv", "node-z"),
                   "", "client certificate 'node-b' is not for 'node-z'");

    struct rv_tls_config cfg = { .kind = RV_TLS_X509, .x509_dir = tpath("cli") };
    expect_ctx_error(&cfg, -EINVAL, "needs the peer's name");
    cfg.x509_dir = tpath("srv");        /* has no client-cert.pem */
    cfg.peer_name = "node-a";
    expect_ctx_error(&cfg, -EINVAL, "client-cert.pem: can't load the certificate");
}

/* Our server against a plain OpenSSL client made from rc; returns whether
 * the client finished its handshake. */
static bool raw_client(struct rv_tls *s, SSL_CTX *rc)
{
    SSL *r = SSL_new(rc);
    BIO *rin = BIO_new(BIO_s_mem()), *rout = BIO_new(BIO_s_mem());
    CU_ASSERT_FATAL(r && rin && rout);
    SSL_set_bio(r, rin, rout);
    SSL_set_connect_state(r);
    for (int i = 0; i < 10; i++) {
        SSL_do_handshake(r);
        char buf[4096];
        int n;
        while ((n = BIO_read(rout, buf, sizeof buf)) > 0)
            rv_tls_put_ciphertext(s, buf, (size_t)n);
        rv_tls_handshake(s);
        const void *p;
        size_t k;
        while ((k = rv_tls_get_ciphertext(s, &p)) > 0) {
            BIO_write(rin, p, (int)k);
            rv_tls_ciphertext_consumed(s, k);
        }
    }
    bool done = SSL_is_init_finished(r);
    ERR_clear_error();
    SSL_free(r);
    SSL_CTX_free(rc);
    return done;
}

/* A TLS 1.2-only client, and a TLS 1.3 client without a certificate, get
 * clear refusals. */
static void test_raw_clients_refused(void)
{
    struct rv_tls_ctx *sc = ctx_x509(true, "srv", NULL);
    struct rv_tls *s = rv_tls_new(sc);
    SSL_CTX *rc = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(rc, TLS1_2_VERSION);
    CU_ASSERT(!raw_client(s, rc));
    CU_ASSERT_EQUAL(rv_tls_handshake(s), RV_TLS_ERROR);
    CU_ASSERT(contains(rv_tls_error(s), "does not offer TLS 1.3"));
    rv_tls_free(s);

    s = rv_tls_new(sc);
    rc = SSL_CTX_new(TLS_client_method());
    CU_ASSERT_FATAL(SSL_CTX_load_verify_file(rc, tpath("srv/ca-cert.pem")) == 1);
    raw_client(s, rc);
    CU_ASSERT_EQUAL(rv_tls_handshake(s), RV_TLS_ERROR);
    CU_ASSERT(contains(rv_tls_error(s), "the client presented no certificate"));
    rv_tls_free(s);
    rv_tls_ctx_free(sc);
}

/* ------------------------------------------------------------ hostile input */

/* Random bytes, and a real ClientHello cut short or corrupted, fed to
 * servers: errors or waiting, never a crash. */
static void test_garbage(void)
{
    struct rv_tls_ctx *sp = ctx_psk(true, "keys.psk", NULL), *sx = ctx_x509(true, "srv", NULL);
    struct rv_tls_ctx *cp = ctx_psk(false, "keys.psk", "alice");
    uint8_t buf[8192];
    for (int i = 0; i < 300; i++) {
        struct rv_tls *s = rv_tls_new(i % 2 ? sp : sx);
        CU_ASSERT_FATAL(s != NULL);
        fill_random(buf, sizeof buf);
        size_t len = 1 + buf[0] * 31 % sizeof buf;
        if (i % 3 == 0) {           /* a plausible record header first */
            buf[0] = 22;
            buf[1] = 3;
            buf[2] = 1;
        }
        for (size_t off = 0; off < len;) {
            size_t chunk = RV_MIN(len - off, (size_t)1 + buf[off] % 200);
            ssize_t k = rv_tls_put_ciphertext(s, buf + off, chunk);
            if (k < 0)
                break;
            off += (size_t)k;
            if (rv_tls_handshake(s) == RV_TLS_ERROR)
                break;
        }
        enum rv_tls_status st = rv_tls_handshake(s);
        CU_ASSERT(st == RV_TLS_ERROR || st == RV_TLS_AGAIN);
        CU_ASSERT(st == RV_TLS_AGAIN || rv_tls_error(s)[0] != '\0');
        rv_tls_free(s);
    }

    /* A genuine ClientHello, truncated at every length, or with one byte
     * flipped. */
    struct rv_tls *c = rv_tls_new(cp);
    CU_ASSERT_EQUAL(rv_tls_handshake(c), RV_TLS_AGAIN);
    const void *p;
    size_t hello_len = rv_tls_get_ciphertext(c, &p);
    CU_ASSERT_FATAL(hello_len > 100 && hello_len < sizeof buf);
    uint8_t hello[2048];
    CU_ASSERT_FATAL(hello_len <= sizeof hello);
    memcpy(hello, p, hello_len);
    rv_tls_free(c);
    for (size_t cut = 0; cut <= hello_len; cut++) {
        struct rv_tls *s = rv_tls_new(sp);
        rv_tls_put_ciphertext(s, hello, cut);
        enum rv_tls_status st = rv_tls_handshake(s);
        CU_ASSERT(cut == hello_len ? st != RV_TLS_DONE : st == RV_TLS_AGAIN);
        rv_tls_free(s);
    }
    for (size_t i = 0; i < hello_len; i += 3) {
        struct rv_tls *s = rv_tls_new(sp);
        memcpy(buf, hello, hello_len);
        buf[i] ^= (uint8_t)(1 + i % 255);
        rv_tls_put_ciphertext(s, buf, hello_len);
        CU_ASSERT(rv_tls_handshake(s) != RV_TLS_DONE);
        rv_tls_free(s);
    }

    /* Garbage after the handshake is a failed read, not a crash. */
    struct rv_tls *s = rv_tls_new(sp);
    c = rv_tls_new(cp);
    enum rv_tls_status cs, ss;
    handshake(c, s, &cs, &ss);
    CU_ASSERT_EQUAL(ss, RV_TLS_DONE);
    fill_random(buf, 64);
    buf[0] = 23;                    /* application_data, TLS 1.2 framing */
    buf[1] = 3;
    buf[2] = 3;
    buf[3] = 0;
    buf[4] = 59;
    rv_tls_put_ciphertext(s, buf, 64);
    char out[64];
    CU_ASSERT_EQUAL(rv_tls_read(s, out, sizeof out), -EPROTO);
    CU_ASSERT(contains(rv_tls_error(s), "corrupt or forged record"));
    CU_ASSERT_EQUAL(rv_tls_read(s, out, sizeof out), -EPROTO);
    rv_tls_free(s);
    rv_tls_free(c);
    rv_tls_ctx_free(sp);
    rv_tls_ctx_free(sx);
    rv_tls_ctx_free(cp);
}

/* A peer can't make a session hold more than the caps. */
static void test_bounds(void)
{
    struct rv_tls_ctx *sc = ctx_psk(true, "keys.psk", NULL), *cc = ctx_psk(false, "keys.psk", "alice");
    struct rv_tls *s = rv_tls_new(sc), *c = rv_tls_new(cc);
    static uint8_t big[1 << 20];
    memset(big, 0x16, sizeof big);
    /* Before anyone reads, input stops at the cap. */
    size_t taken = 0;
    ssize_t k;
    while ((k = rv_tls_put_ciphertext(s, big, sizeof big)) > 0)
        taken += (size_t)k;
    CU_ASSERT_EQUAL(k, 0);
    CU_ASSERT_EQUAL(taken, RV_TLS_IN_MAX);
    rv_tls_free(s);

    s = rv_tls_new(sc);
    enum rv_tls_status cs, ss;
    handshake(c, s, &cs, &ss);
    CU_ASSERT_FATAL(cs == RV_TLS_DONE && ss == RV_TLS_DONE);
    /* Writing without draining stops at the send cap. */
    size_t queued = 0;
    while ((k = rv_tls_write(c, big, sizeof big)) > 0)
        queued += (size_t)k;
    CU_ASSERT_EQUAL(k, 0);
    CU_ASSERT(queued > RV_TLS_OUT_MAX / 2);
    CU_ASSERT(rv_tls_ciphertext_pending(c) <= RV_TLS_OUT_MAX);
    /* A receiver that doesn't read keeps the rest with the sender. */
    pump(c, s);
    CU_ASSERT(rv_tls_ciphertext_pending(c) > 0);
    size_t got = 0;
    char out[5000];
    for (int idle = 0; idle < 3;) {
        size_t before = got;
        while ((k = rv_tls_read(s, out, sizeof out)) > 0)
            got += (size_t)k;
        CU_ASSERT(k == 0);
        pump(c, s);
        idle = got == before ? idle + 1 : 0;
    }
    CU_ASSERT_EQUAL(got, queued);
    rv_tls_free(s);
    rv_tls_free(c);
    rv_tls_ctx_free(sc);
    rv_tls_ctx_free(cc);
}

int main(void)
{
    rv_log_init("test-tls", RV_LOG_ERROR);     /* expected warnings (expired certificates) */
    static const struct unit_test tests[] = {
        { "PSK handshake, data both ways, split records, close", test_psk_handshake_and_data },
        { "PSK handshake one byte at a time, hex identity", test_psk_handshake_bytewise },
        { "socket EOF before and after the handshake", test_eof },
        { "PSK wrong key refused", test_psk_wrong_key },
        { "PSK unknown identity refused", test_psk_unknown_identity },
        { "PSK and certificate peers don't mix", test_psk_vs_x509 },
        { "PSK file errors", test_psk_file_errors },
        { "secret file permissions", test_secret_file_permissions },
        { "X.509 mutual authentication", test_x509_good },
        { "X.509 wrong CA refused", test_x509_wrong_ca },
        { "X.509 expired certificate refused", test_x509_expired },
        { "X.509 wrong peer name refused", test_x509_wrong_name },
        { "TLS 1.2 client, client without certificate", test_raw_clients_refused },
        { "garbage and truncated ciphertext", test_garbage },
        { "bounded buffers", test_bounds },
    };
    return UNIT_RUN("tls", suite_init, suite_cleanup, tests);
}
