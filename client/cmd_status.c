/* cmd_status.c - `repvol status`: ask a running daemon how its volume is. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "repvol/control.h"
#include "repvol/meta_format.h"

/* VOLUME may be a volume name or the path of its image: find the control
 * socket either way (an explicit --control wins). */
int cli_control_path(const char *prog, const char *volume, const char *control, char *out, size_t cap)
{
    if (control) {
        snprintf(out, cap, "%s", control);
        return 0;
    }
    if (!volume) {
        cli_error(prog, "name the volume (its name or image path) or give --control PATH");
        return -EINVAL;
    }
    struct stat st;
    if (strchr(volume, '/') || (stat(volume, &st) == 0 && S_ISREG(st.st_mode))) {
        int fd = open(volume, O_RDONLY | O_CLOEXEC);
        struct rv_meta m;
        int r = fd < 0 ? -errno : rv_meta_read_fd(fd, &m);
        if (fd >= 0)
            close(fd);
        if (r < 0) {
            cli_error(prog, "%s: %s", volume, rv_meta_strerror(r));
            return r;
        }
        rv_control_default_path(m.name, out, cap);
        return 0;
    }
    rv_control_default_path(volume, out, cap);
    return 0;
}

int cmd_status(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, 'j' },
        { "control", required_argument, NULL, 'c' },
        { "watch", no_argument, NULL, 'w' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool json = false, watch = false;
    const char *control = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "jc:wh", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 'w': watch = true; break;
        case 'c': control = optarg; break;
        case 'h':
            printf("Usage: %s [--json | --watch] [--control PATH] [VOLUME]\n"
                   "\n"
                   "Show the state of a running daemon's volume: role, disk state, requests\n"
                   "in flight, counters.  VOLUME is the volume's name or its image path; the\n"
                   "daemon's control socket is /run/repvol/NAME.ctl unless --control says\n"
                   "otherwise.\n"
                   "\n"
                   "  -j, --json           one JSON object instead of text\n"
                   "  -w, --watch          redraw every second, with progress bars for a\n"
                   "                       resync or verify in progress (Ctrl-C to stop)\n"
                   "  -c, --control PATH   the daemon's control socket\n",
                   argv[0]);
            return RV_EXIT_OK;
        default:
            return cli_usage_hint(argv[0]);
        }
    }
    if (optind + 1 < argc) {
        cli_error(argv[0], "unexpected argument '%s'", argv[optind + 1]);
        return cli_usage_hint(argv[0]);
    }
    char path[256];
    if (cli_control_path(argv[0], optind < argc ? argv[optind] : NULL, control, path, sizeof path) < 0)
        return RV_EXIT_FAIL;
    if (watch)
        return cli_watch(argv[0], path, 1000, false);
    static char reply[RV_CONTROL_MAX_REPLY];
    int r = rv_control_call(path, json ? "status json" : "status text", reply, sizeof reply);
    if (r < 0) {
        cli_error(argv[0], "%s", reply);
        return RV_EXIT_FAIL;
    }
    fputs(reply, stdout);
    return fflush(stdout) == 0 ? RV_EXIT_OK : RV_EXIT_FAIL;
}
