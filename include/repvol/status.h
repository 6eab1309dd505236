/* status.h - what `repvol status` shows: rendered by the daemon from its
 * live state, as aligned text for people or one JSON object for scripts. */
#ifndef REPVOL_STATUS_H
#define REPVOL_STATUS_H

#include <stdbool.h>
#include "repvol/frontend.h"
#include "repvol/strbuf.h"
#include "repvol/volume.h"

void rv_status_render(const struct rv_volume *v, struct rv_frontend *fe, bool json,
                      struct rv_strbuf *out);

#endif
