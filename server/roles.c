/* roles.c - promotion and demotion (see include/repvol/roles.h). */
#include <errno.h>
#include <inttypes.h>

#include "repvol/log.h"
#include "repvol/roles.h"
#include "repvol/util.h"

int rv_role_promote(struct rv_volume *v, struct rv_peer *p, bool force, struct rv_strbuf *out)
{
    if (v->role == RV_ROLE_PRIMARY) {
        rv_sb_printf(out, "already primary\n");
        return 0;
    }
    if (v->readonly) {
        rv_sb_printf(out, "the volume is opened read-only");
        return -EROFS;
    }
    if (p && rv_peer_connected(p) && rv_peer_remote_role(p) == RV_ROLE_PRIMARY) {
        rv_sb_printf(out, "the peer is primary: demote it first ('repvol secondary' there); two primaries "
                          "would both write");
        return -EBUSY;
    }
    if (v->meta.disk_state != RV_DISK_UPTODATE) {
        const char *what = v->meta.disk_state == RV_DISK_INCONSISTENT
            ? "a resync into it did not finish: it holds a mix of old and new blocks, and a file system on "
              "it may be corrupt"
            : "the peer is known to have newer data: writes acknowledged there since would be missing here";
        if (!force) {
            rv_sb_printf(out, "refusing to promote: this copy is %s: %s. Use --force to serve it anyway",
                         rv_disk_state_name(v->meta.disk_state), what);
            return -EPERM;
        }
        rv_warn("volume %s: forced promotion of a %s copy: %s", v->meta.name,
                rv_disk_state_name(v->meta.disk_state), what);
        v->meta.disk_state = RV_DISK_UPTODATE;
    }
    v->role = RV_ROLE_PRIMARY;
    v->meta.role = RV_ROLE_PRIMARY;
    /* The commit also starts a new data generation when no peer is
     * connected (volume.c, meta_flush_start). */
    rv_volume_meta_commit(v, NULL);
    if (p)
        rv_peer_role_changed(p);
    rv_info("volume %s: promoted to primary%s", v->meta.name, force ? " (forced)" : "");
    rv_sb_printf(out, "primary\n");
    return 0;
}

int rv_role_demote(struct rv_volume *v, struct rv_peer *p, struct rv_frontend *fe, bool force,
                   struct rv_strbuf *out)
{
    if (v->role == RV_ROLE_SECONDARY) {
        rv_sb_printf(out, "already secondary\n");
        return 0;
    }
    unsigned clients = fe ? fe->ops->clients(fe) : 0;
    if (clients > 0) {
        if (!force) {
            rv_sb_printf(out, "%u client(s) are connected to the export (a mounted file system?): disconnect "
                              "them first, or use --force to disconnect them", clients);
            return -EBUSY;
        }
        fe->ops->disconnect_clients(fe);
    }
    if (v->stats.inflight > 0 || (fe && fe->ops->inflight(fe) > 0)) {
        rv_sb_printf(out, "%" PRIu64 " request(s) still in flight; try again in a moment", v->stats.inflight);
        return -EAGAIN;
    }
    v->role = RV_ROLE_SECONDARY;
    v->meta.role = RV_ROLE_SECONDARY;
    rv_volume_meta_commit(v, NULL);
    if (p)
        rv_peer_role_changed(p);
    rv_info("volume %s: demoted to secondary", v->meta.name);
    rv_sb_printf(out, "secondary\n");
    return 0;
}
