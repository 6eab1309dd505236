/* tlsio.h - a TLS session on a socket, driven by the event loop, that looks
 * to its owner like the two ring operations a connection uses: recv and
 * sendmsg.
 *
 * Why this shape: the NBD connection driver and sockconn (the replication
 * link) already speak "issue a recv/sendmsg, get op->fn(op, res) later".
 * With TLS on, they call rv_tlsio_recv/rv_tlsio_sendmsg instead of preparing
 * an SQE and keep everything else (partial sends, MSG_WAITALL payloads,
 * back-pressure, closing) unchanged.  Underneath, tlsio keeps one recv of
 * ciphertext and one send of ciphertext in the ring and runs the session
 * (tls.h, memory buffers) between them; nothing blocks.
 *
 * Semantics of the emulated operations, as for the socket calls:
 *  - recv: res > 0 plaintext bytes in buf (with waitall: len bytes, or fewer
 *    only when the stream ended), 0 = the peer closed cleanly
 *    (close_notify), < 0 = error (-ECONNRESET: cut without close_notify,
 *    -EPROTO/-EACCES...: TLS failure, logged with the reason), -ECANCELED.
 *  - sendmsg: res > 0 plaintext bytes taken from the iovecs (possibly
 *    fewer than offered: the owner sends the rest again), < 0 error.  Taken
 *    bytes were copied and encrypted: the owner may reuse its buffers at
 *    once.  They are on the wire "soon": tlsio keeps sending ciphertext
 *    whether or not an operation is pending.
 *  - Completions always come from the loop (never inside the call that
 *    started the operation), at most one recv and one sendmsg at a time.
 * Operations wait for the handshake, which starts at rv_tlsio_new.
 *
 * Lifetime: the owner calls rv_tlsio_close() once (instead of shutdown(2)
 * and ring cancels); pending operations then complete with -ECANCELED, and
 * tlsio frees itself when its own ring operations are done.  tlsio works on
 * a dup() of the socket, so the owner closes its descriptor as before. */
#ifndef REPVOL_TLSIO_H
#define REPVOL_TLSIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "repvol/loop.h"
#include "repvol/tls.h"

struct rv_tlsio;

/* A session on fd in the context's role; who names the connection in logs
 * ("nbd conn 3 (10.0.0.2:4711)").  NULL when out of memory or descriptors. */
struct rv_tlsio *rv_tlsio_new(struct rv_loop *loop, int fd, struct rv_tls_ctx *ctx, const char *who);

void rv_tlsio_recv(struct rv_tlsio *t, struct rv_op *op, void *buf, size_t len, bool waitall);
void rv_tlsio_sendmsg(struct rv_tlsio *t, struct rv_op *op, const struct msghdr *msg);
/* Complete op (the pending recv or sendmsg) with -ECANCELED. */
void rv_tlsio_cancel(struct rv_tlsio *t, struct rv_op *op);

/* graceful: queue close_notify and try (without waiting) to send it. */
void rv_tlsio_close(struct rv_tlsio *t, bool graceful);

bool rv_tlsio_established(const struct rv_tlsio *t);
/* The authenticated peer (PSK identity or certificate name), "" before. */
const char *rv_tlsio_peer(const struct rv_tlsio *t);
/* Why the session failed, "" if it has not. */
const char *rv_tlsio_error(const struct rv_tlsio *t);

#endif
