/* tls.c - TLS 1.3 sessions over memory buffers (see include/repvol/tls.h).
 *
 * Each session's SSL object talks to a BIO of our own that reads from the
 * session's input buffer and appends to its output buffer, so OpenSSL never
 * sees a socket and never blocks, and both buffers have caps we enforce. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "repvol/log.h"
#include "repvol/tls.h"

#define PSK_KEY_MIN 16              /* below 128 bits we refuse the key */
#define PSK_KEY_MAX 512             /* OpenSSL's limit for a TLS 1.3 PSK, and psktool's */
#define PSK_ID_MAX 128              /* GnuTLS servers refuse longer identities */
#define SECRET_FILE_MAX (1u << 20)
#define TLS_RECORD_MAX 16384u
#define TLS_RECORD_OVERHEAD 22u     /* header, content type, AEAD tag */

/* PSK sessions use SHA-256 suites only: GnuTLS computes external-PSK binders
 * with SHA-256, and OpenSSL drops a PSK whose hash differs from the suite's. */
static const char psk_suites[] = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";
static const unsigned char psk_suite_id[2] = { 0x13, 0x01 };   /* TLS_AES_128_GCM_SHA256 */

struct psk_entry {
    unsigned char *id;
    size_t id_len;
    unsigned char key[PSK_KEY_MAX];
    size_t key_len;
};

struct rv_tls_ctx {
    atomic_uint refs;
    SSL_CTX *ssl_ctx;
    enum rv_tls_kind kind;
    bool server;
    char *source;                   /* the PSK file or certificate directory */
    char *peer_name;                /* X.509: expected peer name */
    bool peer_is_ip;
    struct psk_entry *psk;
    size_t npsk;
    /* Unknown identities get this key, so a client learns nothing from
     * the failure about which identities exist. */
    unsigned char decoy[32];
};

struct tls_buf {
    unsigned char *p;
    size_t off, len, cap;
};

enum tls_state { ST_HANDSHAKE, ST_OPEN, ST_FAILED };

/* Ciphertext to send: a ring allocated with the session, so that a chunk
 * handed out by rv_tls_get_ciphertext() stays put while the socket sends
 * from it, however much more OpenSSL appends meanwhile (no copy, no
 * allocation per record). */
#define OUT_RING_SIZE RV_TLS_OUT_HARD
struct out_ring {
    unsigned char *p;
    size_t head, len;           /* pending bytes start at head, wrapping */
};

struct rv_tls {
    struct rv_tls_ctx *ctx;
    SSL *ssl;
    struct tls_buf in;
    struct out_ring out;
    enum tls_state state;
    int fail_err;
    bool peer_closed, we_closed;
    bool out_overflow;
    uint64_t records;               /* sent since the last key update */
    /* What the callbacks saw, for messages. */
    bool psk_offered, psk_unknown;
    int verify_err, verify_depth;
    char verify_cert[96];           /* the certificate that failed */
    char verify_leaf[96], verify_issuer[96];
    char verify_time[40];
    char peer[RV_TLS_PEER_MAX];
    char err[RV_TLS_ERR_MAX];
};

static void msgf(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void msgf(char *msg, size_t len, const char *fmt, ...)
{
    if (!msg || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
}

/* Peer-supplied or file-supplied text made safe to print. */
static void sanitize(char *dst, size_t dstlen, const void *src, size_t n)
{
    const unsigned char *s = src;
    size_t o = 0;
    if (!dstlen)
        return;
    for (size_t i = 0; i < n && o + 1 < dstlen; i++) {
        if (o + 4 >= dstlen && i + 1 < n) {
            snprintf(dst + o, dstlen - o, "...");
            return;
        }
        dst[o++] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    }
    dst[o] = '\0';
}

/* The first queued OpenSSL error as text, clearing the queue (it is per
 * thread, and a stale entry would be blamed on the next connection). */
static unsigned long take_ssl_error(char *buf, size_t len)
{
    unsigned long first = ERR_get_error();
    if (buf && len) {
        if (first)
            ERR_error_string_n(first, buf, len);
        else
            snprintf(buf, len, "unknown error");
    }
    ERR_clear_error();
    return first;
}

/* ------------------------------------------------------------ buffers */

/* Room for n more bytes; the caller keeps len + n within its cap. */
static int buf_reserve(struct tls_buf *b, size_t n)
{
    if (b->off + b->len + n <= b->cap)
        return 0;
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len);
        b->off = 0;
        if (b->len + n <= b->cap)
            return 0;
    }
    size_t want = b->cap ? b->cap : 16384;
    while (want < b->len + n)
        want *= 2;
    unsigned char *p = realloc(b->p, want);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = want;
    return 0;
}

static void buf_consume(struct tls_buf *b, size_t n)
{
    if (n > b->len)
        n = b->len;
    b->off += n;
    b->len -= n;
    if (b->len == 0) {
        b->off = 0;
        if (b->cap > 4 * 16384) {   /* a burst is over: give the memory back */
            free(b->p);
            b->p = NULL;
            b->cap = 0;
        }
    }
}

static void buf_free(struct tls_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------ the BIO */

static int bio_write_ex(BIO *b, const char *data, size_t n, size_t *written)
{
    struct rv_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    /* Never a retry: OpenSSL would then insist on the same write again.
     * Over the hard cap the session fails instead. */
    if (t->out.len + n > RV_TLS_OUT_HARD) {
        t->out_overflow = true;
        return 0;
    }
    size_t tail = (t->out.head + t->out.len) % OUT_RING_SIZE;
    size_t first = n < OUT_RING_SIZE - tail ? n : OUT_RING_SIZE - tail;
    memcpy(t->out.p + tail, data, first);
    memcpy(t->out.p, data + first, n - first);
    t->out.len += n;
    *written = n;
    return 1;
}

static int bio_read_ex(BIO *b, char *data, size_t n, size_t *readbytes)
{
    struct rv_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (t->in.len == 0) {
        BIO_set_retry_read(b);
        return 0;
    }
    size_t k = n < t->in.len ? n : t->in.len;
    memcpy(data, t->in.p + t->in.off, k);
    buf_consume(&t->in, k);
    *readbytes = k;
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct rv_tls *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return t ? (long)t->in.len : 0;
    case BIO_CTRL_WPENDING:
        return t ? (long)t->out.len : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_meth;
static CRYPTO_ONCE bio_once = CRYPTO_ONCE_STATIC_INIT;

/* One method for the process: BIO type indexes are a small global pool. */
static void bio_meth_init(void)
{
    int type = BIO_get_new_index();
    BIO_METHOD *m = type > 0 ? BIO_meth_new(type | BIO_TYPE_SOURCE_SINK, "repvol tls buffers") : NULL;
    if (!m)
        return;
    if (!BIO_meth_set_write_ex(m, bio_write_ex) || !BIO_meth_set_read_ex(m, bio_read_ex) ||
        !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create)) {
        BIO_meth_free(m);
        return;
    }
    bio_meth = m;
}

static BIO_METHOD *get_bio_meth(void)
{
    if (!CRYPTO_THREAD_run_once(&bio_once, bio_meth_init))
        return NULL;
    return bio_meth;
}

/* ------------------------------------------------------------ secret files */

/* Read a file holding a secret, after checking that nobody else can read or
 * change it.  Checks the opened file (fstat), so a swap after the check
 * can't slip through.  *out is NUL-terminated; free it with
 * OPENSSL_clear_free(*out, *outlen). */
static int read_secret_file(const char *path, char **out, size_t *outlen, char *msg, size_t msglen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        msgf(msg, msglen, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    int ret;
    if (fstat(fd, &st) < 0) {
        ret = -errno;
        msgf(msg, msglen, "%s: %s", path, strerror(-ret));
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        msgf(msg, msglen, "%s: not a regular file", path);
        ret = -EINVAL;
        goto out_close;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        msgf(msg, msglen, "%s holds a secret but belongs to uid %u; it must belong to root or to uid %u",
             path, (unsigned)st.st_uid, (unsigned)geteuid());
        ret = -EPERM;
        goto out_close;
    }
    if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) {
        msgf(msg, msglen, "%s holds a secret but has mode %04o (group or others may read or write it); "
             "chmod 600 it", path, (unsigned)(st.st_mode & 07777));
        ret = -EPERM;
        goto out_close;
    }
    if (st.st_size > (off_t)SECRET_FILE_MAX) {
        msgf(msg, msglen, "%s: larger than %u bytes", path, SECRET_FILE_MAX);
        ret = -EFBIG;
        goto out_close;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        ret = -ENOMEM;
        msgf(msg, msglen, "%s: out of memory", path);
        goto out_close;
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret = -errno;
            msgf(msg, msglen, "%s: %s", path, strerror(-ret));
            OPENSSL_clear_free(buf, cap);
            goto out_close;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == cap) {           /* grew since fstat */
            msgf(msg, msglen, "%s: changed while being read", path);
            OPENSSL_clear_free(buf, cap);
            ret = -EAGAIN;
            goto out_close;
        }
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = cap;
    ret = 0;
out_close:
    close(fd);
    return ret;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode n hex digits into out (at most max bytes); length or -1. */
static long hex_decode(const char *s, size_t n, unsigned char *out, size_t max)
{
    if (n % 2 || n / 2 > max)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval((unsigned char)s[i]), lo = hexval((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

static void psk_free_table(struct psk_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].id);
        OPENSSL_cleanse(e[i].key, sizeof e[i].key);
    }
    free(e);
}

/* Parse psktool's format: "identity:hexkey" per line, or "#hexidentity:hexkey"
 * (GnuTLS's form for identities that aren't plain text).  Messages name the
 * line, never its contents: it holds a key. */
static int psk_parse(struct rv_tls_ctx *c, char *text, const char *path, char *msg, size_t msglen)
{
    size_t cap = 0;
    unsigned lineno = 0;
    char *line = text;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        char *next = nl ? nl + 1 : NULL;
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        lineno++;
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
            len--;
        if (len == 0) {
            line = next;
            continue;
        }
        char *colon = memchr(line, ':', len);
        if (!colon) {
            msgf(msg, msglen, "%s line %u: expected identity:hexkey", path, lineno);
            return -EINVAL;
        }
        if (c->npsk == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct psk_entry *e = realloc(c->psk, ncap * sizeof *e);
            if (!e)
                return -ENOMEM;
            c->psk = e;
            cap = ncap;
        }
        struct psk_entry *e = &c->psk[c->npsk];
        memset(e, 0, sizeof *e);
        size_t idl = (size_t)(colon - line);
        e->id = malloc(idl + 1);
        if (!e->id)
            return -ENOMEM;
        c->npsk++;                  /* owned by the table from here on */
        if (line[0] == '#') {
            long n = hex_decode(line + 1, idl - 1, e->id, idl);
            if (n <= 0) {
                msgf(msg, msglen, "%s line %u: '#' must be followed by a hex identity", path, lineno);
                return -EINVAL;
            }
            e->id_len = (size_t)n;
        } else {
            memcpy(e->id, line, idl);
            e->id_len = idl;
        }
        e->id[e->id_len] = '\0';
        if (e->id_len == 0 || e->id_len > PSK_ID_MAX) {
            msgf(msg, msglen, "%s line %u: identity must be 1 to %d bytes", path, lineno, PSK_ID_MAX);
            return -EINVAL;
        }
        const char *hex = colon + 1;
        size_t hexlen = len - idl - 1;
        long kl = hex_decode(hex, hexlen, e->key, sizeof e->key);
        if (kl < 0 && hexlen % 2 == 0 && hexlen / 2 > PSK_KEY_MAX) {
            msgf(msg, msglen, "%s line %u: key longer than %d bytes (OpenSSL's limit)", path, lineno,
                 PSK_KEY_MAX);
            return -EINVAL;
        }
        if (kl < 0) {
            msgf(msg, msglen, "%s line %u: the key is not an even number of hex digits", path, lineno);
            return -EINVAL;
        }
        if (kl < PSK_KEY_MIN) {
            msgf(msg, msglen, "%s line %u: key shorter than %d bytes; make one with psktool -u NAME -p FILE",
                 path, lineno, PSK_KEY_MIN);
            return -EINVAL;
        }
        e->key_len = (size_t)kl;
        for (size_t i = 0; i + 1 < c->npsk; i++)
            if (c->psk[i].id_len == e->id_len && !memcmp(c->psk[i].id, e->id, e->id_len)) {
                char id[64];
                sanitize(id, sizeof id, e->id, e->id_len);
                msgf(msg, msglen, "%s line %u: identity '%s' appears twice", path, lineno, id);
                return -EINVAL;
            }
        line = next;
    }
    if (c->npsk == 0) {
        msgf(msg, msglen, "%s: no identity:hexkey lines", path);
        return -EINVAL;
    }
    return 0;
}

/* Keep only the entry for identity (a client's own, or the one a server
 * was told to accept). */
static int psk_select(struct rv_tls_ctx *c, const char *identity, char *msg, size_t msglen)
{
    size_t il = strlen(identity);
    for (size_t i = 0; i < c->npsk; i++) {
        if (c->psk[i].id_len == il && !memcmp(c->psk[i].id, identity, il)) {
            if (i != 0) {           /* move it to the front, leaving no copy of the key */
                free(c->psk[0].id);
                c->psk[0] = c->psk[i];
                c->psk[i].id = NULL;
            }
            for (size_t j = 1; j < c->npsk; j++) {
                free(c->psk[j].id);
                OPENSSL_cleanse(c->psk[j].key, sizeof c->psk[j].key);
            }
            c->npsk = 1;
            return 0;
        }
    }
    char id[64];
    sanitize(id, sizeof id, identity, il);
    msgf(msg, msglen, "PSK identity '%s' is not in %s", id, c->source);
    return -ENOENT;
}

/* ------------------------------------------------------------ callbacks */

static SSL_SESSION *psk_session(SSL *ssl, const unsigned char *key, size_t len)
{
    const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, psk_suite_id);
    SSL_SESSION *s = cipher ? SSL_SESSION_new() : NULL;
    if (!s)
        return NULL;
    if (!SSL_SESSION_set1_master_key(s, key, len) || !SSL_SESSION_set_cipher(s, cipher) ||
        !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
        SSL_SESSION_free(s);
        return NULL;
    }
    return s;
}

/* Client: offer our identity.  OpenSSL owns each session we hand over. */
static int psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
                      SSL_SESSION **sess)
{
    struct rv_tls *t = SSL_get_app_data(ssl);
    struct psk_entry *e = &t->ctx->psk[0];
    *sess = NULL;
    if (md && !EVP_MD_is_a(md, "SHA256"))
        return 1;                   /* can't match the suite: offer nothing */
    *sess = psk_session(ssl, e->key, e->key_len);
    if (!*sess)
        return 0;
    *id = e->id;
    *idlen = e->id_len;
    return 1;
}

/* Server: the key for the identity the client offers. */
static int psk_find_cb(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
    struct rv_tls *t = SSL_get_app_data(ssl);
    struct rv_tls_ctx *c = t->ctx;
    const struct psk_entry *e = NULL;
    for (size_t i = 0; i < c->npsk && !e; i++)
        if (c->psk[i].id_len == idlen && !memcmp(c->psk[i].id, id, idlen))
            e = &c->psk[i];
    t->psk_offered = true;
    t->psk_unknown = !e;
    sanitize(t->peer, sizeof t->peer, id, idlen);
    *sess = e ? psk_session(ssl, e->key, e->key_len) : psk_session(ssl, c->decoy, sizeof c->decoy);
    return *sess != NULL;
}

static void describe_name(X509_NAME *name, char *buf, size_t len)
{
    char raw[256];
    int n = name ? X509_NAME_get_text_by_NID(name, NID_commonName, raw, sizeof raw) : -1;
    if (n < 0 && name) {
        X509_NAME_oneline(name, raw, sizeof raw);
        n = (int)strlen(raw);
    }
    if (n < 0)
        snprintf(buf, len, "(no subject)");
    else
        sanitize(buf, len, raw, (size_t)n);
}

static void describe_cert(X509 *cert, char *buf, size_t len)
{
    describe_name(cert ? X509_get_subject_name(cert) : NULL, buf, len);
}

static void describe_time(const ASN1_TIME *tm, char *buf, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    buf[0] = '\0';
    if (!b)
        return;
    if (ASN1_TIME_print(b, tm)) {
        int n = BIO_read(b, buf, (int)len - 1);
        buf[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
}

/* Remember the first reason a peer certificate was refused. */
static int verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct rv_tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
    if (ok || !t || t->verify_err)
        return ok;
    t->verify_err = X509_STORE_CTX_get_error(xs);
    t->verify_depth = X509_STORE_CTX_get_error_depth(xs);
    X509 *cert = X509_STORE_CTX_get_current_cert(xs);
    describe_cert(cert, t->verify_cert, sizeof t->verify_cert);
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    describe_cert(leaf, t->verify_leaf, sizeof t->verify_leaf);
    describe_name(leaf ? X509_get_issuer_name(leaf) : NULL, t->verify_issuer, sizeof t->verify_issuer);
    if (cert && t->verify_err == X509_V_ERR_CERT_HAS_EXPIRED)
        describe_time(X509_get0_notAfter(cert), t->verify_time, sizeof t->verify_time);
    else if (cert && t->verify_err == X509_V_ERR_CERT_NOT_YET_VALID)
        describe_time(X509_get0_notBefore(cert), t->verify_time, sizeof t->verify_time);
    return 0;
}

/* ------------------------------------------------------------ contexts */

static void ctx_release(struct rv_tls_ctx *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    SSL_CTX_free(c->ssl_ctx);
    psk_free_table(c->psk, c->npsk);
    OPENSSL_cleanse(c->decoy, sizeof c->decoy);
    free(c->source);
    free(c->peer_name);
    free(c);
}

void rv_tls_ctx_free(struct rv_tls_ctx *ctx)
{
    ctx_release(ctx);
}

static int no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
    return -1;                      /* never prompt on a terminal */
}

static int load_key(SSL_CTX *sc, const char *path, char *msg, size_t msglen)
{
    char *text = NULL;
    size_t cap = 0;
    int ret = read_secret_file(path, &text, &cap, msg, msglen);
    if (ret < 0)
        return ret;
    BIO *b = BIO_new_mem_buf(text, (int)strlen(text));
    EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase_cb, NULL) : NULL;
    BIO_free(b);
    OPENSSL_clear_free(text, cap);
    if (!pk) {
        take_ssl_error(NULL, 0);
        msgf(msg, msglen, "%s: not a PEM private key, or encrypted (passphrases are not supported)", path);
        return -EINVAL;
    }
    int ok = SSL_CTX_use_PrivateKey(sc, pk);
    EVP_PKEY_free(pk);
    if (!ok || !SSL_CTX_check_private_key(sc)) {
        char e[160];
        take_ssl_error(e, sizeof e);
        msgf(msg, msglen, "%s: does not match the certificate (%s)", path, e);
        return -EINVAL;
    }
    return 0;
}

static int setup_x509(struct rv_tls_ctx *c, const struct rv_tls_config *cfg, char *msg, size_t msglen)
{
    SSL_CTX *sc = c->ssl_ctx;
    const char *who = cfg->server ? "server" : "client";
    char path[4096], e[160];
    int ret;

    snprintf(path, sizeof path, "%s/ca-cert.pem", cfg->x509_dir);
    if (!SSL_CTX_load_verify_file(sc, path)) {
        take_ssl_error(e, sizeof e);
        msgf(msg, msglen, "%s: can't load CA certificates (%s)", path, e);
        return -EINVAL;
    }
    if (cfg->server) {
        /* Tells clients which CA we accept, for those with several certificates. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(path);
        if (names)
            SSL_CTX_set_client_CA_list(sc, names);
        take_ssl_error(NULL, 0);
    }
    snprintf(path, sizeof path, "%s/ca-crl.pem", cfg->x509_dir);
    if (access(path, F_OK) == 0) {
        X509_STORE *st = SSL_CTX_get_cert_store(sc);
        X509_LOOKUP *lu = X509_STORE_add_lookup(st, X509_LOOKUP_file());
        if (!lu || X509_load_crl_file(lu, path, X509_FILETYPE_PEM) <= 0) {
            take_ssl_error(e, sizeof e);
            msgf(msg, msglen, "%s: can't load the revocation list (%s)", path, e);
            return -EINVAL;
        }
        X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
    }

    snprintf(path, sizeof path, "%s/%s-cert.pem", cfg->x509_dir, who);
    if (!SSL_CTX_use_certificate_chain_file(sc, path)) {
        take_ssl_error(e, sizeof e);
        msgf(msg, msglen, "%s: can't load the certificate (%s)", path, e);
        return -EINVAL;
    }
    X509 *own = SSL_CTX_get0_certificate(sc);
    if (own && X509_cmp_current_time(X509_get0_notAfter(own)) < 0)
        rv_warn("TLS: our certificate %s has expired: peers will refuse it", path);
    else if (own && X509_cmp_current_time(X509_get0_notBefore(own)) > 0)
        rv_warn("TLS: our certificate %s is not valid yet: peers will refuse it", path);
    snprintf(path, sizeof path, "%s/%s-key.pem", cfg->x509_dir, who);
    if ((ret = load_key(sc, path, msg, msglen)) < 0)
        return ret;

    if (cfg->peer_name) {
        X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(sc);
        unsigned char addr[16];
        c->peer_is_ip = inet_pton(AF_INET, cfg->peer_name, addr) == 1 ||
                        inet_pton(AF_INET6, cfg->peer_name, addr) == 1;
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (!(c->peer_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, cfg->peer_name)
                            : X509_VERIFY_PARAM_set1_host(vp, cfg->peer_name, 0))) {
            take_ssl_error(NULL, 0);
            msgf(msg, msglen, "peer name '%s' is not a valid host name or address", cfg->peer_name);
            return -EINVAL;
        }
        if (!(c->peer_name = strdup(cfg->peer_name)))
            return -ENOMEM;
    }
    SSL_CTX_set_verify(sc, SSL_VERIFY_PEER | (cfg->server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), verify_cb);
    SSL_CTX_set_verify_depth(sc, 8);
    return 0;
}

static int setup_psk(struct rv_tls_ctx *c, const struct rv_tls_config *cfg, char *msg, size_t msglen)
{
    char *text = NULL;
    size_t cap = 0;
    int ret = read_secret_file(cfg->psk_file, &text, &cap, msg, msglen);
    if (ret < 0)
        return ret;
    ret = psk_parse(c, text, cfg->psk_file, msg, msglen);
    OPENSSL_clear_free(text, cap);
    if (ret < 0)
        return ret;
    if (cfg->psk_identity && (ret = psk_select(c, cfg->psk_identity, msg, msglen)) < 0)
        return ret;
    if (RAND_bytes(c->decoy, sizeof c->decoy) != 1) {
        take_ssl_error(NULL, 0);
        msgf(msg, msglen, "no randomness");
        return -EIO;
    }
    if (!SSL_CTX_set_ciphersuites(c->ssl_ctx, psk_suites)) {
        take_ssl_error(NULL, 0);
        msgf(msg, msglen, "OpenSSL lacks %s", psk_suites);
        return -ENOTSUP;
    }
    if (cfg->server) {
        /* We have no certificate, so a client that offers no PSK fails. */
        SSL_CTX_set_psk_find_session_callback(c->ssl_ctx, psk_find_cb);
    } else {
        SSL_CTX_set_psk_use_session_callback(c->ssl_ctx, psk_use_cb);
        /* Should a server answer with a certificate instead of taking the
         * PSK, verifying it against an empty trust store fails. */
        SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
    }
    return 0;
}

int rv_tls_ctx_new(const struct rv_tls_config *cfg, struct rv_tls_ctx **out, char *msg, size_t msglen)
{
    *out = NULL;
    if (msg && msglen)
        msg[0] = '\0';
    if (cfg->kind == RV_TLS_PSK) {
        if (!cfg->psk_file) {
            msgf(msg, msglen, "TLS with pre-shared keys needs a PSK file");
            return -EINVAL;
        }
        if (cfg->psk_identity && (!*cfg->psk_identity || strlen(cfg->psk_identity) > PSK_ID_MAX)) {
            msgf(msg, msglen, "PSK identity must be 1 to %d bytes", PSK_ID_MAX);
            return -EINVAL;
        }
    } else if (cfg->kind == RV_TLS_X509) {
        if (!cfg->x509_dir) {
            msgf(msg, msglen, "TLS with certificates needs a certificate directory");
            return -EINVAL;
        }
        if (!cfg->server && (!cfg->peer_name || !*cfg->peer_name)) {
            msgf(msg, msglen, "a TLS client needs the peer's name to check its certificate against");
            return -EINVAL;
        }
        if (strlen(cfg->x509_dir) > 3000) {
            msgf(msg, msglen, "certificate directory name too long");
            return -ENAMETOOLONG;
        }
    } else {
        msgf(msg, msglen, "unknown TLS credential kind %d", (int)cfg->kind);
        return -EINVAL;
    }
    if (!get_bio_meth()) {
        take_ssl_error(NULL, 0);
        msgf(msg, msglen, "OpenSSL: can't create the buffer BIO");
        return -ENOMEM;
    }

    struct rv_tls_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        msgf(msg, msglen, "out of memory");
        return -ENOMEM;
    }
    atomic_init(&c->refs, 1);
    c->kind = cfg->kind;
    c->server = cfg->server;
    c->source = strdup(cfg->kind == RV_TLS_PSK ? cfg->psk_file : cfg->x509_dir);
    c->ssl_ctx = SSL_CTX_new(cfg->server ? TLS_server_method() : TLS_client_method());
    int ret = -ENOMEM;
    if (!c->source || !c->ssl_ctx) {
        take_ssl_error(NULL, 0);
        msgf(msg, msglen, "out of memory");
        goto fail;
    }
    SSL_CTX *sc = c->ssl_ctx;
    if (!SSL_CTX_set_min_proto_version(sc, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(sc, TLS1_3_VERSION)) {
        take_ssl_error(NULL, 0);
        msgf(msg, msglen, "OpenSSL lacks TLS 1.3");
        ret = -ENOTSUP;
        goto fail;
    }
    /* One handshake per connection: no tickets, no resumption, no early data. */
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(sc, 0);
    SSL_CTX_set_options(sc, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(sc, SSL_MODE_AUTO_RETRY);

    ret = cfg->kind == RV_TLS_PSK ? setup_psk(c, cfg, msg, msglen) : setup_x509(c, cfg, msg, msglen);
    if (ret < 0) {
        if (ret == -ENOMEM && msg && msglen && !msg[0])
            msgf(msg, msglen, "out of memory");
        goto fail;
    }
    rv_debug("TLS: %s %s context from %s", cfg->kind == RV_TLS_PSK ? "PSK" : "X.509",
             cfg->server ? "server" : "client", c->source);
    *out = c;
    return 0;
fail:
    take_ssl_error(NULL, 0);
    ctx_release(c);
    return ret;
}

/* ------------------------------------------------------------ sessions */

struct rv_tls *rv_tls_new(struct rv_tls_ctx *ctx)
{
    struct rv_tls *t = calloc(1, sizeof *t);
    BIO_METHOD *m = get_bio_meth();
    if (!t || !m) {
        free(t);
        return NULL;
    }
    t->ssl = SSL_new(ctx->ssl_ctx);
    BIO *b = BIO_new(m);
    if (!t->ssl || !b) {
        BIO_free(b);
        SSL_free(t->ssl);
        free(t);
        take_ssl_error(NULL, 0);
        return NULL;
    }
    BIO_set_data(b, t);
    SSL_set_bio(t->ssl, b, b);      /* one reference serves both directions */
    SSL_set_app_data(t->ssl, t);
    if (ctx->server)
        SSL_set_accept_state(t->ssl);
    else
        SSL_set_connect_state(t->ssl);
    if (!ctx->server && ctx->kind == RV_TLS_X509 && !ctx->peer_is_ip &&
        !SSL_set_tlsext_host_name(t->ssl, ctx->peer_name)) {
        take_ssl_error(NULL, 0);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    t->out.p = malloc(OUT_RING_SIZE);
    if (!t->out.p) {
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    atomic_fetch_add(&ctx->refs, 1);
    t->ctx = ctx;
    return t;
}

void rv_tls_free(struct rv_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    buf_free(&t->in);
    free(t->out.p);
    ctx_release(t->ctx);
    free(t);
}

ssize_t rv_tls_put_ciphertext(struct rv_tls *t, const void *in, size_t n)
{
    if (t->state == ST_FAILED)
        return -EPIPE;
    size_t room = RV_TLS_IN_MAX - t->in.len;
    size_t k = n < room ? n : room;
    if (k == 0)
        return 0;
    if (buf_reserve(&t->in, k) < 0)
        return -ENOMEM;
    memcpy(t->in.p + t->in.off + t->in.len, in, k);
    t->in.len += k;
    return (ssize_t)k;
}

size_t rv_tls_get_ciphertext(struct rv_tls *t, const void **ptr)
{
    if (!t->out.len) {
        *ptr = NULL;
        return 0;
    }
    *ptr = t->out.p + t->out.head;
    size_t to_end = OUT_RING_SIZE - t->out.head;
    return t->out.len < to_end ? t->out.len : to_end;
}

void rv_tls_ciphertext_consumed(struct rv_tls *t, size_t n)
{
    if (n > t->out.len)
        n = t->out.len;
    t->out.head = (t->out.head + n) % OUT_RING_SIZE;
    t->out.len -= n;
    if (t->out.len == 0)
        t->out.head = 0;    /* next chunk starts contiguous */
}

size_t rv_tls_ciphertext_pending(const struct rv_tls *t)
{
    return t->out.len;
}

const char *rv_tls_error(const struct rv_tls *t)
{
    return t->err;
}

const char *rv_tls_peer(const struct rv_tls *t)
{
    return t->state == ST_OPEN || (t->state == ST_FAILED && t->peer[0]) ? t->peer : "";
}

/* What a fatal alert from the peer most likely means. */
static const char *alert_hint(const struct rv_tls *t, int alert)
{
    bool psk = t->ctx->kind == RV_TLS_PSK;
    switch (alert) {
    case SSL_AD_DECRYPT_ERROR:
    case SSL_AD_ILLEGAL_PARAMETER:
        return psk ? "the peer refused our pre-shared key: wrong key, or an identity it doesn't know"
                   : NULL;
    case 115:   /* unknown_psk_identity */
        return "the peer does not know our PSK identity";
    case SSL_AD_UNKNOWN_CA:
        return "the peer does not trust our certificate: it is not signed by the peer's CA";
    case SSL_AD_CERTIFICATE_EXPIRED:
        return "the peer refused our certificate: expired or not yet valid";
    case SSL_AD_CERTIFICATE_REVOKED:
        return "the peer refused our certificate: revoked";
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
        return "the peer refused our certificate (wrong name or purpose?)";
    case 116:   /* certificate_required */
        return "the peer requires a client certificate";
    case SSL_AD_PROTOCOL_VERSION:
        return "the peer does not accept TLS 1.3";
    case SSL_AD_HANDSHAKE_FAILURE:
        return psk ? "the peer found nothing in common with us (is it set up for pre-shared keys?)"
                   : "the peer found nothing in common with us, or refused our certificate";
    default:
        return NULL;
    }
}

static void verify_message(struct rv_tls *t)
{
    const char *whose = t->ctx->server ? "client" : "server";
    char cert[140];
    if (t->verify_depth > 0)
        snprintf(cert, sizeof cert, "certificate '%s' in the %s's chain", t->verify_cert, whose);
    else
        snprintf(cert, sizeof cert, "%s certificate '%s'", whose, t->verify_cert);
    switch (t->verify_err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        msgf(t->err, sizeof t->err, "%s has expired (notAfter %s)", cert, t->verify_time);
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        msgf(t->err, sizeof t->err, "%s is not valid yet (notBefore %s; is the clock right?)",
             cert, t->verify_time);
        break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        msgf(t->err, sizeof t->err, "%s is not for '%s' (name mismatch: subjectAltName/CN)",
             cert, t->ctx->peer_name ? t->ctx->peer_name : "?");
        break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        /* Name the peer's own certificate, whichever link of its chain broke. */
        msgf(t->err, sizeof t->err, "%s certificate '%s' (issued by '%s') is not signed by our CA "
             "(%s/ca-cert.pem): %s", whose, t->verify_leaf, t->verify_issuer, t->ctx->source,
             X509_verify_cert_error_string(t->verify_err));
        break;
    case X509_V_ERR_CERT_REVOKED:
        msgf(t->err, sizeof t->err, "%s has been revoked", cert);
        break;
    case X509_V_ERR_INVALID_PURPOSE:
        msgf(t->err, sizeof t->err, "%s is not for TLS %s use (extendedKeyUsage)", cert,
             t->ctx->server ? "client" : "server");
        break;
    default:
        msgf(t->err, sizeof t->err, "%s refused: %s", cert, X509_verify_cert_error_string(t->verify_err));
        break;
    }
}

/* The session is dead: say why, once, and drop OpenSSL's error queue. */
static int fail(struct rv_tls *t, int ssl_err, const char *during)
{
    if (t->state == ST_FAILED)
        return t->fail_err;
    unsigned long first = 0, first_ssl = 0, e;
    /* The earliest SSL-library error is the cause; later ones are fallout. */
    while ((e = ERR_get_error()) != 0) {
        if (!first)
            first = e;
        if (!first_ssl && ERR_GET_LIB(e) == ERR_LIB_SSL)
            first_ssl = e;
    }
    if (first_ssl)
        first = first_ssl;
    int reason = first ? ERR_GET_REASON(first) : 0;
    const char *reason_text = first ? ERR_reason_error_string(first) : NULL;
    if (!reason_text)
        reason_text = "unknown reason";
    bool psk_server = t->ctx->kind == RV_TLS_PSK && t->ctx->server;
    t->fail_err = -EPROTO;
    if (t->out_overflow) {
        t->fail_err = -ENOBUFS;
        msgf(t->err, sizeof t->err, "more than %u bytes queued to send (peer not reading?)", RV_TLS_OUT_HARD);
    } else if (t->verify_err) {
        verify_message(t);
    } else if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
        int alert = reason - SSL_AD_REASON_OFFSET;
        const char *hint = alert_hint(t, alert);
        if (hint && t->ctx->kind == RV_TLS_PSK && !t->ctx->server) {
            char id[64];
            sanitize(id, sizeof id, t->ctx->psk[0].id, t->ctx->psk[0].id_len);
            msgf(t->err, sizeof t->err, "%s (our identity: '%s'; alert: %s)", hint, id,
                 SSL_alert_desc_string_long(alert));
        }
        else if (hint)
            msgf(t->err, sizeof t->err, "%s (alert: %s)", hint, SSL_alert_desc_string_long(alert));
        else
            msgf(t->err, sizeof t->err, "the peer ended the session %s with alert '%s'", during,
                 SSL_alert_desc_string_long(alert));
    } else if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_NO_PROTOCOLS_AVAILABLE) {
        msgf(t->err, sizeof t->err, "the peer does not offer TLS 1.3");
    } else if (psk_server && t->state == ST_HANDSHAKE && t->psk_unknown) {
        msgf(t->err, sizeof t->err, "client offered unknown PSK identity '%s'", t->peer);
    } else if (reason == SSL_R_BINDER_DOES_NOT_VERIFY) {
        msgf(t->err, sizeof t->err, "client's key for PSK identity '%s' is wrong", t->peer);
    } else if (psk_server && t->state == ST_HANDSHAKE && !t->psk_offered && first) {
        /* OpenSSL skips a PSK it can't use before asking us about it. */
        msgf(t->err, sizeof t->err, "client offered no usable pre-shared key (%s); we take TLS 1.3 PSK "
             "with (EC)DHE and a SHA-256 cipher suite", reason_text);
    } else if (t->ctx->kind == RV_TLS_PSK && !t->ctx->server && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        msgf(t->err, sizeof t->err, "the server sent a certificate instead of taking our pre-shared key "
             "(is it set up for certificates?)");
    } else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        msgf(t->err, sizeof t->err, "the client presented no certificate (we require one)");
    } else if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
               reason == SSL_R_RECORD_LENGTH_MISMATCH || reason == SSL_R_HTTP_REQUEST ||
               reason == SSL_R_UNEXPECTED_RECORD || reason == SSL_R_DATA_LENGTH_TOO_LONG ||
               reason == SSL_R_ENCRYPTED_LENGTH_TOO_LONG) {
        msgf(t->err, sizeof t->err, "received something that is not TLS %s (%s)", during, reason_text);
    } else if (reason == SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC) {
        msgf(t->err, sizeof t->err, "received a corrupt or forged record %s", during);
    } else if (first) {
        char s[160];
        ERR_error_string_n(first, s, sizeof s);
        msgf(t->err, sizeof t->err, "TLS failed %s: %s", during, s);
    } else {
        msgf(t->err, sizeof t->err, "TLS failed %s (OpenSSL error %d)", during, ssl_err);
    }
    ERR_clear_error();
    t->state = ST_FAILED;
    return t->fail_err;
}

/* Checks OpenSSL leaves to us once it calls the handshake good. */
static bool established_ok(struct rv_tls *t)
{
    SSL *ssl = t->ssl;
    if (t->ctx->kind == RV_TLS_PSK) {
        /* A server could have answered with a certificate; only the PSK
         * authenticates it. */
        if (!SSL_session_reused(ssl)) {
            msgf(t->err, sizeof t->err, "the peer did not use the pre-shared key");
            return false;
        }
        if (SSL_get_negotiated_group(ssl) == 0) {
            msgf(t->err, sizeof t->err, "the peer negotiated a PSK without (EC)DHE (no forward secrecy)");
            return false;
        }
        if (!t->ctx->server)
            sanitize(t->peer, sizeof t->peer, t->ctx->psk[0].id, t->ctx->psk[0].id_len);
        return true;
    }
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (!cert || SSL_get_verify_result(ssl) != X509_V_OK) {
        msgf(t->err, sizeof t->err, "the peer presented no acceptable certificate");
        return false;
    }
    describe_cert(cert, t->peer, sizeof t->peer);
    return true;
}

enum rv_tls_status rv_tls_handshake(struct rv_tls *t)
{
    if (t->state == ST_FAILED)
        return RV_TLS_ERROR;
    if (t->state == ST_OPEN)
        return RV_TLS_DONE;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        if (!established_ok(t)) {
            SSL_set_quiet_shutdown(t->ssl, 1);
            t->fail_err = -EPROTO;
            t->state = ST_FAILED;
            return RV_TLS_ERROR;
        }
        t->state = ST_OPEN;
        rv_debug("TLS: handshake done with '%s' (%s, %s)", t->peer, SSL_get_version(t->ssl),
                 SSL_get_cipher_name(t->ssl));
        return RV_TLS_DONE;
    }
    int e = SSL_get_error(t->ssl, r);
    if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && !t->out_overflow)
        return RV_TLS_AGAIN;
    fail(t, e, "during the handshake");
    return RV_TLS_ERROR;
}

ssize_t rv_tls_read(struct rv_tls *t, void *buf, size_t n)
{
    if (t->state == ST_FAILED)
        return t->fail_err;
    if (t->state != ST_OPEN)
        return -EINVAL;
    if (t->peer_closed)
        return -ESHUTDOWN;
    if (n == 0)
        return 0;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    ERR_clear_error();
    size_t got = 0;
    int r = SSL_read_ex(t->ssl, buf, n, &got);
    if (r == 1)
        return (ssize_t)got;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ && !t->out_overflow)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN) {
        t->peer_closed = true;
        ERR_clear_error();
        return -ESHUTDOWN;
    }
    return fail(t, e, "while reading");
}

ssize_t rv_tls_write(struct rv_tls *t, const void *buf, size_t n)
{
    if (t->state == ST_FAILED)
        return t->fail_err;
    if (t->state != ST_OPEN)
        return -EINVAL;
    if (t->we_closed)
        return -EPIPE;
    if (t->out.len >= RV_TLS_OUT_MAX)
        return 0;
    /* Take only what fits under the cap once framed into records. */
    size_t room = RV_TLS_OUT_MAX - t->out.len;
    size_t framing = 128 + (room / TLS_RECORD_MAX + 1) * TLS_RECORD_OVERHEAD;
    if (room <= framing)
        return 0;
    size_t k = n < room - framing ? n : room - framing;
    if (k < n && k > TLS_RECORD_MAX)
        k -= k % TLS_RECORD_MAX;    /* whole records: no runt at each call's end */
    if (k > SSIZE_MAX)
        k = SSIZE_MAX;
    if (k == 0)
        return 0;
    ERR_clear_error();
    if (t->records >= RV_TLS_KEY_UPDATE_RECORDS) {
        /* AES-GCM keys wear out (RFC 8446 5.5); rekey long before. */
        if (!SSL_key_update(t->ssl, SSL_KEY_UPDATE_NOT_REQUESTED))
            return fail(t, SSL_ERROR_SSL, "starting a key update");
        t->records = 0;
    }
    size_t w = 0;
    if (SSL_write_ex(t->ssl, buf, k, &w) != 1)
        return fail(t, SSL_get_error(t->ssl, 0), "while writing");
    t->records += (w + TLS_RECORD_MAX - 1) / TLS_RECORD_MAX;
    return (ssize_t)w;
}

int rv_tls_shutdown(struct rv_tls *t)
{
    if (t->state == ST_FAILED)
        return t->fail_err;
    if (t->state != ST_OPEN)
        return -ENOTCONN;
    if (t->we_closed)
        return 0;
    ERR_clear_error();
    int r = SSL_shutdown(t->ssl);
    if (r < 0)
        return fail(t, SSL_get_error(t->ssl, r), "sending close_notify");
    t->we_closed = true;
    return 0;
}

int rv_tls_key_update(struct rv_tls *t)
{
    if (t->state == ST_FAILED)
        return t->fail_err;
    if (t->state != ST_OPEN || t->we_closed)
        return -ENOTCONN;
    ERR_clear_error();
    if (!SSL_key_update(t->ssl, SSL_KEY_UPDATE_NOT_REQUESTED))
        return fail(t, SSL_ERROR_SSL, "starting a key update");
    /* Sends the KeyUpdate now rather than with the next write. */
    int r = SSL_do_handshake(t->ssl);
    if (r != 1)
        return fail(t, SSL_get_error(t->ssl, r), "sending a key update");
    t->records = 0;
    return 0;
}

int rv_tls_eof(struct rv_tls *t)
{
    if (t->state == ST_FAILED)
        return t->fail_err;
    if (t->peer_closed)
        return 0;
    if (t->state == ST_HANDSHAKE)
        msgf(t->err, sizeof t->err, "the peer hung up during the TLS handshake (%s)",
             t->ctx->kind == RV_TLS_PSK ? "did it refuse our pre-shared key?"
                                        : "did it refuse our certificate?");
    else
        msgf(t->err, sizeof t->err, "the connection ended without close_notify (data may be cut short)");
    t->fail_err = -ECONNRESET;
    t->state = ST_FAILED;
    return t->fail_err;
}
