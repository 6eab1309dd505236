/* cmd_ublk.c - `repvol attach --ublk` and `repvol detach`: the volume of a
 * running daemon as a local block device /dev/ublkbN, and its removal. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "repvol/control.h"
#include "repvol/ublk.h"

#define WAIT_SECS 60

static void nap_100ms(void)
{
    struct timespec ts = { 0, 100 * 1000 * 1000 };
    nanosleep(&ts, NULL);
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
}

int cmd_attach(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "ublk", no_argument, NULL, 'u' },
        { "control", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *control = NULL;
    bool ublk = false;
    int c;
    while ((c = getopt_long(argc, argv, "uc:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'u': ublk = true; break;
        case 'c': control = optarg; break;
        case 'h':
            printf("Usage: %s --ublk [--control PATH] [VOLUME]\n\n"
                   "Make the running daemon's volume a local block device /dev/ublkbN (the\n"
                   "daemon must be primary; the kernel needs ublk_drv).  Prints the device\n"
                   "path once the device is live.  'repvol detach' removes it.\n"
                   "  -u, --ublk          through ublk (the only kind so far)\n"
                   "  -c, --control PATH  the daemon's control socket\n", argv[0]);
            return RV_EXIT_OK;
        default:
            return cli_usage_hint(argv[0]);
        }
    }
    if (!ublk) {
        cli_error(argv[0], "say how to attach: --ublk");
        return RV_EXIT_USAGE;
    }
    char path[256];
    if (cli_control_path(argv[0], optind < argc ? argv[optind] : NULL, control, path, sizeof path) < 0)
        return RV_EXIT_FAIL;
    static char reply[RV_CONTROL_MAX_REPLY];
    if (rv_control_call(path, "ublk-attach", reply, sizeof reply) < 0) {
        chomp(reply);
        cli_error(argv[0], "%s", reply);
        return RV_EXIT_FAIL;
    }
    chomp(reply);
    /* The daemon answers once the device exists; it is usable once the
     * kernel has added the disk. */
    for (int i = 0; i < WAIT_SECS * 10; i++) {
        struct stat st;
        char sys[96];
        snprintf(sys, sizeof sys, "/sys/block/%s", strrchr(reply, '/') ? strrchr(reply, '/') + 1 : reply);
        if (stat(reply, &st) == 0 && S_ISBLK(st.st_mode) && stat(sys, &st) == 0) {
            printf("%s\n", reply);
            return RV_EXIT_OK;
        }
        nap_100ms();
    }
    cli_error(argv[0], "%s did not appear within %d s (see the daemon's log)", reply, WAIT_SECS);
    return RV_EXIT_FAIL;
}

int cmd_detach(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "id", required_argument, NULL, 'i' },
        { "force", no_argument, NULL, 'f' },
        { "control", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *control = NULL;
    int id = -1, c;
    bool force = false;
    while ((c = getopt_long(argc, argv, "i:fc:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'i': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 0 || v > 1048575) {
                cli_error(argv[0], "--id: '%s' is not a device number", optarg);
                return RV_EXIT_USAGE;
            }
            id = (int)v;
            break;
        }
        case 'f': force = true; break;
        case 'c': control = optarg; break;
        case 'h':
            printf("Usage: %s [--force] [--control PATH] [VOLUME]\n"
                   "       %s --id N\n\n"
                   "Remove the volume's ublk block device: requests in flight finish, then the\n"
                   "device goes away; the daemon keeps running (and serving NBD, if it does).\n"
                   "Refused while the device is mounted or held open exclusively.\n"
                   "  -f, --force         remove it anyway (a file system on it loses its disk)\n"
                   "  -i, --id N          remove /dev/ublkbN left by a daemon that died and will\n"
                   "                      not be restarted (no daemon needed; refused while a\n"
                   "                      live daemon serves it)\n"
                   "  -c, --control PATH  the daemon's control socket\n", argv[0], argv[0]);
            return RV_EXIT_OK;
        default:
            return cli_usage_hint(argv[0]);
        }
    }
    if (id >= 0) {
        int r = rv_ublk_delete_device(id);
        if (r < 0) {
            cli_error(argv[0], "/dev/ublkb%d: %s", id,
                      r == -ENOENT ? "no /dev/ublk-control (no ublk_drv in this kernel)" :
                      r == -EBUSY ? "served by a running daemon: use 'repvol detach VOLUME'" :
                      r == -ENODEV ? "no such device" : strerror(-r));
            return RV_EXIT_FAIL;
        }
        printf("/dev/ublkb%d removed\n", id);
        return RV_EXIT_OK;
    }
    char path[256];
    if (cli_control_path(argv[0], optind < argc ? argv[optind] : NULL, control, path, sizeof path) < 0)
        return RV_EXIT_FAIL;
    static char reply[RV_CONTROL_MAX_REPLY];
    /* A mounted file system holds its device exclusively: removing the disk
     * under it would turn every later write into an I/O error. */
    if (!force && rv_control_call(path, "ublk", reply, sizeof reply) == 0 && !strncmp(reply, "/dev/", 5)) {
        char *sp = strchr(reply, ' ');
        if (sp)
            *sp = '\0';
        chomp(reply);
        int fd = open(reply, O_RDONLY | O_EXCL | O_CLOEXEC);
        if (fd < 0 && errno == EBUSY) {
            cli_error(argv[0], "%s is in use (mounted, or open exclusively): unmount it first, or use --force",
                      reply);
            return RV_EXIT_FAIL;
        }
        if (fd >= 0)
            close(fd);
    }
    if (rv_control_call(path, "ublk-detach", reply, sizeof reply) < 0) {
        chomp(reply);
        cli_error(argv[0], "%s", reply);
        return RV_EXIT_FAIL;
    }
    char dev[64];
    chomp(reply);
    snprintf(dev, sizeof dev, "%s", reply);
    for (int i = 0; i < WAIT_SECS * 10; i++) {
        if (rv_control_call(path, "ublk", reply, sizeof reply) < 0) {
            chomp(reply);
            cli_error(argv[0], "%s", reply);
            return RV_EXIT_FAIL;
        }
        if (!strncmp(reply, "none", 4)) {
            printf("%s removed\n", dev);
            return RV_EXIT_OK;
        }
        nap_100ms();
    }
    cli_error(argv[0], "%s still there after %d s (a mounted file system? see the daemon's log)", dev, WAIT_SECS);
    return RV_EXIT_FAIL;
}
