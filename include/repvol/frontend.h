/* frontend.h - the table of operations a frontend provides.
 *
 * A frontend turns a client protocol (NBD over a socket, ublk's io_uring
 * commands) into struct rv_req requests for the volume engine and the
 * engine's completions into replies.  Frontends run on the daemon's event
 * loop; none blocks. */
#ifndef REPVOL_FRONTEND_H
#define REPVOL_FRONTEND_H

#include <stdbool.h>
#include "repvol/loop.h"
#include "repvol/volume.h"
#include "repvol/nbd_handshake.h"

struct rv_tls_ctx;
struct rv_strbuf;

struct rv_frontend;

struct rv_frontend_ops {
    const char *name;
    /* Required.  Begin serving (listeners are already bound). 0 or -errno. */
    int (*start)(struct rv_frontend *fe);
    /* Required.  Stop taking new requests; requests already received run to
     * completion and get their replies; then the frontend calls
     * fe->drained(fe) once. */
    void (*shutdown)(struct rv_frontend *fe);
    /* Required.  Requests received and not yet replied to. */
    unsigned (*inflight)(struct rv_frontend *fe);
    /* Required.  Clients connected now. */
    unsigned (*clients)(struct rv_frontend *fe);
    /* Required.  Disconnect every client (their requests in flight still
     * complete); listeners stay. */
    void (*disconnect_clients)(struct rv_frontend *fe);
    /* Required.  Free everything; only after drained. */
    void (*destroy)(struct rv_frontend *fe);
    /* Optional.  One line for `repvol status` (clients, security). */
    void (*describe)(struct rv_frontend *fe, struct rv_strbuf *out);
};

struct rv_frontend {
    const struct rv_frontend_ops *ops;
    struct rv_volume *vol;
    struct rv_loop *loop;
    void (*drained)(struct rv_frontend *fe);
    void *owner;
};

/* NBD: one listener per address ("unix:/path" or "tcp:HOST:PORT"). */
struct rv_nbd_opts {
    const char *const *listen;  /* NULL-terminated */
    const char *export_name;    /* name announced by NBD_OPT_LIST (default: the volume name) */
    unsigned max_connections;
    unsigned max_inflight;      /* requests in flight per connection */
    /* NBD_OPT_STARTTLS: a server context (tls.h), and whether TLS is
     * offered (NBD_HS_TLS_ON) or required (NBD_HS_TLS_REQUIRE). */
    struct rv_tls_ctx *tls;
    enum nbd_hs_tls tls_mode;
    /* Bounds on clients that hold resources without making progress (0:
     * the defaults, 10 s and 30 s).  A connection still in the option
     * phase after handshake_timeout_ms is closed (it holds one of the
     * max_connections places); so is one whose reply send has made no
     * progress for send_timeout_ms (a client that never reads its replies
     * pins the pool buffers of its READs). */
    unsigned handshake_timeout_ms;
    unsigned send_timeout_ms;
};
int rv_nbd_frontend_create(struct rv_frontend **out, struct rv_volume *vol,
                           struct rv_loop *loop, const struct rv_nbd_opts *opts);

#endif
