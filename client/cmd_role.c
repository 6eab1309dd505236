/* cmd_role.c - `repvol primary`, `repvol secondary`, `repvol connect`. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "repvol/control.h"

struct role_cmd {
    const char *name;
    const char *flag;           /* the one option, or NULL */
    const char *flag_word;      /* what it adds to the request */
    const char *help;
};

static const struct role_cmd role_cmds[] = {
    { "primary", "force", "force",
      "Promote this node: it serves the volume and replicates to its peer.  Refused\n"
      "when this copy is not UpToDate (the message says what would be served) or\n"
      "the peer is primary.\n"
      "  -f, --force    promote an Inconsistent or Outdated copy anyway\n" },
    { "secondary", "force", "force",
      "Demote this node: it stops serving and applies its primary's writes.\n"
      "Refused while clients are connected to the export or requests are in flight.\n"
      "  -f, --force    disconnect the export's clients first\n" },
    { "connect", "discard-my-data", "discard-my-data",
      "Connect to the peer again now (after a refusal or a split brain).\n"
      "  -d, --discard-my-data  split-brain recovery: throw away this node's changes\n"
      "                 since the split and take the peer's data (this node must be\n"
      "                 secondary); the resync covers both sides' changed blocks\n" },
    { "resume-io", NULL, NULL,
      "Release writes held because the fence-peer handler failed: they are\n"
      "acknowledged without the peer having been fenced (the operator's call).\n" },
    { "outdate", NULL, NULL,
      "Mark this disconnected secondary's copy Outdated (the primary has newer\n"
      "data): promotion then needs --force.  For fence-peer handlers.\n" },
};

static int run_role(const struct role_cmd *rc, int argc, char **argv)
{
    const struct option all[] = {
        { rc->flag ? rc->flag : "", no_argument, NULL, 'f' },
        { "control", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const struct option *longopts = rc->flag ? all : all + 1;
    bool flag = false;
    const char *control = NULL;
    int c;
    const char *shortopts = !rc->flag ? "c:h" : rc->flag[0] == 'd' ? "dc:h" : "fc:h";
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
        case 'd': flag = true; break;
        case 'c': control = optarg; break;
        case 'h':
            printf("Usage: %s%s%s%s [--control PATH] [VOLUME]\n\n%s"
                   "  -c, --control PATH  the daemon's control socket\n",
                   argv[0], rc->flag ? " [--" : "", rc->flag ? rc->flag : "", rc->flag ? "]" : "", rc->help);
            return RV_EXIT_OK;
        default:
            return cli_usage_hint(argv[0]);
        }
    }
    char path[256];
    if (cli_control_path(argv[0], optind < argc ? argv[optind] : NULL, control, path, sizeof path) < 0)
        return RV_EXIT_FAIL;
    char req[64];
    snprintf(req, sizeof req, "%s%s%s", rc->name, flag ? " " : "", flag ? rc->flag_word : "");
    static char reply[RV_CONTROL_MAX_REPLY];
    /* Demotion waits for requests in flight: retry "again" for a while. */
    for (int tries = 0;; tries++) {
        int r = rv_control_call(path, req, reply, sizeof reply);
        if (r == -EAGAIN && tries < 100) {
            struct timespec ts = { 0, 100 * 1000 * 1000 };
            nanosleep(&ts, NULL);
            continue;
        }
        if (r < 0) {
            cli_error(argv[0], "%s", reply);
            return RV_EXIT_FAIL;
        }
        fputs(reply, stdout);
        return RV_EXIT_OK;
    }
}

int cmd_primary(int argc, char **argv) { return run_role(&role_cmds[0], argc, argv); }
int cmd_secondary(int argc, char **argv) { return run_role(&role_cmds[1], argc, argv); }
int cmd_connect(int argc, char **argv) { return run_role(&role_cmds[2], argc, argv); }
int cmd_resume_io(int argc, char **argv) { return run_role(&role_cmds[3], argc, argv); }
int cmd_outdate(int argc, char **argv) { return run_role(&role_cmds[4], argc, argv); }
