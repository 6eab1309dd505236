/* status.c - render the daemon's state for `repvol status` (see status.h). */
#include <inttypes.h>

#include "repvol/status.h"
#include "repvol/peer_link.h"
#include "repvol/util.h"

void rv_status_render(const struct rv_volume *v, struct rv_frontend *fe, bool json,
                      struct rv_strbuf *out)
{
    const struct rv_volume_stats *s = &v->stats;
    unsigned inflight = fe ? fe->ops->inflight(fe) : 0;
    if (json) {
        rv_sb_printf(out, "{\"name\":");
        rv_sb_json_str(out, v->meta.name);
        rv_sb_printf(out, ",\"uuid\":\"%s\",\"last_error\":", v->uuid_str);
        rv_sb_json_str(out, v->last_error);
        rv_sb_printf(out, ",\"path\":");
        rv_sb_json_str(out, v->path);
        rv_sb_printf(out, ",\"size\":%" PRIu64 ",\"role\":\"%s\",\"disk_state\":\"%s\",\"cache\":\"%s\","
                     "\"readonly\":%s,\"inflight\":%u,"
                     "\"stats\":{\"reads\":%" PRIu64 ",\"writes\":%" PRIu64 ",\"flushes\":%" PRIu64
                     ",\"trims\":%" PRIu64 ",\"zeroes\":%" PRIu64 ",\"bytes_read\":%" PRIu64
                     ",\"bytes_written\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"ordered_waits\":%" PRIu64
                     ",\"local_only_writes\":%" PRIu64 "},"
                     "\"generation\":{\"current\":\"%016" PRIx64 "\",\"bitmap\":\"%016" PRIx64 "\"},\"peer\":",
                     v->size, rv_role_name(v->meta.role), rv_disk_state_name(v->meta.disk_state),
                     rv_cache_mode_name(v->be->cache), v->readonly ? "true" : "false", inflight,
                     s->reads, s->writes, s->flushes, s->trims, s->zeroes, s->bytes_read,
                     s->bytes_written, s->errors, s->ordered_waits, s->local_only_writes,
                     v->meta.current_gen, v->meta.bitmap_gen);
        if (v->peer)
            rv_peer_status(v->peer, true, out);
        else
            rv_sb_printf(out, "null");
        rv_sb_printf(out, "}\n");
        return;
    }
    char sz[32], rd[32], wr[32];
    rv_sb_printf(out,
                 "volume:      %s (%s)\n"
                 "image:       %s\n"
                 "size:        %s\n"
                 "role:        %s\n"
                 "disk:        %s\n"
                 "cache:       %s%s\n"
                 "in flight:   %u request(s)\n"
                 "requests:    %" PRIu64 " reads, %" PRIu64 " writes, %" PRIu64 " flushes, %" PRIu64
                 " trims, %" PRIu64 " write-zeroes, %" PRIu64 " errors\n"
                 "transferred: %s read, %s written\n",
                 v->meta.name, v->uuid_str, v->path, rv_format_size(v->size, sz, sizeof sz),
                 rv_role_name(v->meta.role), rv_disk_state_name(v->meta.disk_state),
                 rv_cache_mode_name(v->be->cache), v->readonly ? ", read-only" : "", inflight,
                 s->reads, s->writes, s->flushes, s->trims, s->zeroes, s->errors,
                 rv_format_size(s->bytes_read, rd, sizeof rd), rv_format_size(s->bytes_written, wr, sizeof wr));
    if (v->last_error[0])
        rv_sb_printf(out, "last error:  %s\n", v->last_error);
    rv_sb_printf(out, "generation:  %016" PRIx64 "%s\n", v->meta.current_gen,
                 v->meta.bitmap_gen && v->peer ? " (ahead of the peer)" : "");
    if (v->peer)
        rv_peer_status(v->peer, false, out);
    else
        rv_sb_printf(out, "peer:        none (standalone)\n");
}
