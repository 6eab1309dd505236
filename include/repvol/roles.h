/* roles.h - promotion and demotion (`repvol primary` / `repvol secondary`).
 *
 * A primary serves clients and sends writes to its peer; a secondary
 * applies its primary's writes and serves nobody.  Promotion is refused
 * while this copy is not UpToDate (unless forced: the message says what
 * would be served), and while the peer is primary.  Demotion is refused
 * while clients are connected (unless forced: they are disconnected) or
 * requests are in flight.  The role is recorded in the metadata; a
 * promotion without a peer starts a new data generation (volume.c), so a
 * later reconnect knows who changed what. */
#ifndef REPVOL_ROLES_H
#define REPVOL_ROLES_H

#include <stdbool.h>
#include "repvol/frontend.h"
#include "repvol/peer_link.h"
#include "repvol/strbuf.h"
#include "repvol/volume.h"

int rv_role_promote(struct rv_volume *v, struct rv_peer *p, bool force, struct rv_strbuf *out);
int rv_role_demote(struct rv_volume *v, struct rv_peer *p, struct rv_frontend *fe, bool force,
                   struct rv_strbuf *out);

#endif
