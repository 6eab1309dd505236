/* tls.h - TLS 1.3 sessions over memory buffers, for the replication link and
 * NBD STARTTLS.
 *
 * Nothing here touches a socket or blocks: the owner (an event-loop
 * connection) moves ciphertext between the socket and the session, and
 * OpenSSL only transforms bytes.  The driving pattern:
 *
 *   on input:   taken = rv_tls_put_ciphertext(t, buf, len)   (keep the rest)
 *               then rv_tls_handshake(t) until DONE, afterwards
 *               rv_tls_read(t, ...) until it returns 0
 *   to send:    rv_tls_write(t, ...) (may take less than offered)
 *   after ANY call above: send what rv_tls_get_ciphertext() shows and report
 *               it with rv_tls_ciphertext_consumed(); this includes the alert
 *               a failing handshake queues for the peer.
 *   on socket EOF: rv_tls_eof(t) tells a clean close from a cut one.
 *
 * Buffers are bounded: a session holds at most RV_TLS_IN_MAX bytes of
 * received ciphertext (rv_tls_put_ciphertext takes less when full: leave the
 * rest in the socket buffer and stop reading) and queues at most about
 * RV_TLS_OUT_MAX bytes to send (rv_tls_write takes less, or 0, when full);
 * control messages the peer provokes beyond RV_TLS_OUT_HARD fail the session.
 *
 * Credentials (struct rv_tls_config):
 *  - RV_TLS_PSK: TLS 1.3 external PSK with SHA-256 (what GnuTLS, hence
 *    nbdkit and libnbd, use), (EC)DHE key exchange required.  psk_file holds
 *    "identity:hexkey" lines as written by psktool(1) ("#hexidentity:hexkey"
 *    too); keys of 16 to 512 bytes.  A client sends psk_identity (default: the file's first); a server
 *    accepts any identity in the file, or only psk_identity if set.
 *  - RV_TLS_X509: mutual certificate authentication in the nbdkit/qemu
 *    directory layout: x509_dir/ca-cert.pem, server-cert.pem +
 *    server-key.pem or client-cert.pem + client-key.pem, optional
 *    ca-crl.pem.  peer_name (DNS name or IP address) is checked against the
 *    peer certificate's subjectAltName (CN when it has no DNS names);
 *    required for a client, optional for a server (NULL: any certificate
 *    signed by the CA).
 * Secret files (PSK file, private keys) must be regular files owned by root
 * or by the effective user, with no group or other read/write permission.
 * Their contents never appear in messages or logs.
 *
 * A context is immutable and may be shared by threads; a session belongs to
 * one thread.  Contexts are reference counted: sessions keep theirs alive. */
#ifndef REPVOL_TLS_H
#define REPVOL_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define RV_TLS_IN_MAX   (64u * 1024)     /* received ciphertext held */
#define RV_TLS_OUT_MAX  (256u * 1024)    /* ciphertext queued by rv_tls_write */
#define RV_TLS_OUT_HARD (RV_TLS_OUT_MAX + 64u * 1024)
#define RV_TLS_ERR_MAX  256              /* message buffers */
#define RV_TLS_PEER_MAX 132              /* rv_tls_peer(): identity or name */

enum rv_tls_kind { RV_TLS_PSK, RV_TLS_X509 };

struct rv_tls_config {
    enum rv_tls_kind kind;
    const char *psk_file;
    const char *psk_identity;
    const char *x509_dir;
    const char *peer_name;
    bool server;
};

struct rv_tls_ctx;
struct rv_tls;

/* Load credentials (reads files: call at start-up or on reconfiguration,
 * not from a loop callback).  0 or -errno with a message in msg. */
int rv_tls_ctx_new(const struct rv_tls_config *cfg, struct rv_tls_ctx **out,
                   char *msg, size_t msglen);
/* Drop the caller's reference. */
void rv_tls_ctx_free(struct rv_tls_ctx *ctx);

/* A session in the role the context was made for; NULL if out of memory. */
struct rv_tls *rv_tls_new(struct rv_tls_ctx *ctx);
void rv_tls_free(struct rv_tls *t);

/* Received ciphertext: returns how many of the n bytes were taken (fewer
 * when the input buffer is full; the session then needs rv_tls_read or
 * rv_tls_handshake to make room), -EPIPE once the session has failed, or
 * -ENOMEM. */
ssize_t rv_tls_put_ciphertext(struct rv_tls *t, const void *in, size_t n);

/* Ciphertext to send: *ptr and the length of one contiguous chunk (0: none).
 * The bytes stay in place until reported consumed, whatever other calls are
 * made meanwhile (a socket send may run from them). */
size_t rv_tls_get_ciphertext(struct rv_tls *t, const void **ptr);
/* n bytes of that chunk were sent. */
void rv_tls_ciphertext_consumed(struct rv_tls *t, size_t n);
/* All ciphertext queued to send. */
size_t rv_tls_ciphertext_pending(const struct rv_tls *t);

enum rv_tls_status {
    RV_TLS_DONE,        /* handshake complete: use rv_tls_read/rv_tls_write */
    RV_TLS_AGAIN,       /* send any pending ciphertext, wait for more input */
    RV_TLS_ERROR,       /* failed: rv_tls_error() says why */
};
/* Advance the handshake.  In TLS 1.3 a client is done before the server has
 * checked the client's certificate: a refusal then shows on rv_tls_read. */
enum rv_tls_status rv_tls_handshake(struct rv_tls *t);

/* Plaintext out: > 0 bytes, 0 = needs more ciphertext, -ESHUTDOWN = the
 * peer sent close_notify (a socket EOF before that is a truncation),
 * -EPROTO (or another -errno) = failed, see rv_tls_error(); -EINVAL before
 * the handshake is done.  Call until it returns 0: a record may hold more
 * than one buffer's worth. */
ssize_t rv_tls_read(struct rv_tls *t, void *buf, size_t n);

/* Plaintext in: > 0 bytes taken (may be fewer than n), 0 = the send queue is
 * full (drain it first), < 0 = failed. */
ssize_t rv_tls_write(struct rv_tls *t, const void *buf, size_t n);

/* The socket reached EOF (or failed): 0 if the peer's close_notify came
 * first, else -ECONNRESET (or the earlier error) and the session has failed,
 * with a message saying what the hang-up most likely means. */
int rv_tls_eof(struct rv_tls *t);

/* Queue close_notify.  0, or -ENOTCONN before the handshake is done. */
int rv_tls_shutdown(struct rv_tls *t);

/* Ask for fresh traffic keys (also done automatically every
 * RV_TLS_KEY_UPDATE_RECORDS records sent).  0 or -errno. */
#define RV_TLS_KEY_UPDATE_RECORDS (1u << 22)
int rv_tls_key_update(struct rv_tls *t);

/* Why the session failed ("" if it has not). */
const char *rv_tls_error(const struct rv_tls *t);
/* Who the peer is once the handshake is done: the PSK identity (for a
 * client, its own) or the peer certificate's CN (else its subject); "" before,
 * except that a PSK server that refused a client gives the identity offered.
 * Non-printable bytes are replaced, so it is safe to log. */
const char *rv_tls_peer(const struct rv_tls *t);

#endif
