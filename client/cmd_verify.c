/* cmd_verify.c - `repvol verify`: compare the two copies of a volume online,
 * and `repvol status --watch`'s progress display. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "repvol/control.h"
#include "repvol/util.h"

struct progress {
    char peer[32];
    char sync_state[16];
    double sync_pct;
    uint64_t sync_left, sync_total, sync_rate;
    long sync_eta;
    char verify_state[16];
    double verify_pct;
    uint64_t mismatched;
};

/* Parse the daemon's "progress" answer; ranges are printed by the caller. */
static void parse_progress(char *text, struct progress *p)
{
    memset(p, 0, sizeof *p);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "peer ", 5))
            snprintf(p->peer, sizeof p->peer, "%s", line + 5);
        else if (!strncmp(line, "sync ", 5))
            sscanf(line + 5, "%15s %lf %" SCNu64 " %" SCNu64 " %" SCNu64 " %ld", p->sync_state, &p->sync_pct,
                   &p->sync_left, &p->sync_total, &p->sync_rate, &p->sync_eta);
        else if (!strncmp(line, "verify ", 7))
            sscanf(line + 7, "%15s %lf %" SCNu64, p->verify_state, &p->verify_pct, &p->mismatched);
    }
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

static void bar(FILE *f, const char *label, double pct)
{
    int width = 40, fill = (int)(pct / 100.0 * width + 0.5);
    fprintf(f, "%-8s [", label);
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : '.', f);
    fprintf(f, "] %5.1f%%", pct);
}

/* `repvol status --watch`: redraw every second until interrupted (or, with
 * until_idle, until no sync or verify is running). */
int cli_watch(const char *prog, const char *path, unsigned interval_ms, bool until_idle)
{
    static char reply[RV_CONTROL_MAX_REPLY];
    bool tty = isatty(STDOUT_FILENO);
    for (;;) {
        int r = rv_control_call(path, "status text", reply, sizeof reply);
        if (r < 0) {
            cli_error(prog, "%s", reply);
            return RV_EXIT_FAIL;
        }
        if (tty)
            fputs("\033[H\033[2J", stdout);
        fputs(reply, stdout);
        r = rv_control_call(path, "progress", reply, sizeof reply);
        struct progress p;
        parse_progress(r == 0 ? reply : (char[]){ "" }, &p);
        bool busy = !strcmp(p.sync_state, "source") || !strcmp(p.sync_state, "target") ||
                    !strcmp(p.verify_state, "running");
        if (!strcmp(p.sync_state, "source") || !strcmp(p.sync_state, "target")) {
            char left[32], rate[32];
            bar(stdout, "sync", p.sync_pct);
            printf("  %s left, %s/s", rv_format_size(p.sync_left, left, sizeof left),
                   rv_format_size(p.sync_rate, rate, sizeof rate));
            if (p.sync_eta >= 0)
                printf(", ETA %ld s", p.sync_eta);
            putchar('\n');
        }
        if (!strcmp(p.verify_state, "running")) {
            bar(stdout, "verify", p.verify_pct);
            putchar('\n');
        }
        fflush(stdout);
        if (until_idle && !busy)
            return RV_EXIT_OK;
        sleep_ms(interval_ms);
        if (!tty)
            puts("--");
    }
}

int cmd_verify(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "resync", no_argument, NULL, 'r' },
        { "no-wait", no_argument, NULL, 'n' },
        { "timeout", required_argument, NULL, 't' },
        { "control", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool resync = false, wait = true;
    unsigned timeout_s = 3600;
    const char *control = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "rnt:c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': resync = true; break;
        case 'n': wait = false; break;
        case 't': timeout_s = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'c': control = optarg; break;
        case 'h':
            printf("Usage: %s [--resync] [--no-wait] [--timeout S] [--control PATH] [VOLUME]\n"
                   "\n"
                   "Compare the primary's copy of a volume with the peer's, block by block\n"
                   "(SHA-256 per 4 KiB), while the volume stays in use.  Run it against the\n"
                   "primary's daemon.  Prints each range that differs as 'OFFSET LENGTH'\n"
                   "(bytes) and a summary; exit status 0 if the copies match, 3 if they\n"
                   "differ, 1 on failure.\n"
                   "\n"
                   "  -r, --resync       also mark the differing blocks dirty and resync them\n"
                   "                     from the primary (waits for that resync too)\n"
                   "  -n, --no-wait      start it and return; see 'repvol status'\n"
                   "  -t, --timeout S    give up waiting after S seconds (default 3600)\n"
                   "  -c, --control PATH the daemon's control socket\n",
                   argv[0]);
            return RV_EXIT_OK;
        default:
            return cli_usage_hint(argv[0]);
        }
    }
    char path[256];
    if (cli_control_path(argv[0], optind < argc ? argv[optind] : NULL, control, path, sizeof path) < 0)
        return RV_EXIT_FAIL;
    static char reply[RV_CONTROL_MAX_REPLY];
    int r = rv_control_call(path, resync ? "verify resync" : "verify", reply, sizeof reply);
    if (r < 0) {
        cli_error(argv[0], "%s", reply);
        return RV_EXIT_FAIL;
    }
    if (!wait) {
        fputs(reply, stdout);
        return RV_EXIT_OK;
    }
    bool tty = isatty(STDERR_FILENO);
    time_t deadline = time(NULL) + timeout_s;
    struct progress p;
    for (;;) {
        r = rv_control_call(path, "progress", reply, sizeof reply);
        if (r < 0) {
            cli_error(argv[0], "%s", reply);
            return RV_EXIT_FAIL;
        }
        char copy[sizeof reply];
        memcpy(copy, reply, sizeof copy);
        parse_progress(copy, &p);
        bool syncing = !strcmp(p.sync_state, "source");
        if (tty) {
            fputc('\r', stderr);
            bar(stderr, syncing ? "resync" : "verify", syncing ? p.sync_pct : p.verify_pct);
        }
        if (strcmp(p.verify_state, "running") && !(resync && syncing))
            break;
        if (time(NULL) > deadline) {
            cli_error(argv[0], "still running after %u s; see 'repvol status'", timeout_s);
            return RV_EXIT_FAIL;
        }
        sleep_ms(200);
    }
    if (tty)
        fputc('\n', stderr);
    if (strcmp(p.verify_state, "done")) {
        cli_error(argv[0], "verify %s (peer %s)", p.verify_state, p.peer);
        return RV_EXIT_FAIL;
    }
    unsigned ranges = 0;
    for (char *save = NULL, *line = strtok_r(reply, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "range ", 6)) {
            printf("%s\n", line + 6);
            ranges++;
        }
    }
    char sz[32];
    printf("# %s differ in %u range(s)%s\n", rv_format_size(p.mismatched, sz, sizeof sz), ranges,
           resync && p.mismatched ? "; resynced from the primary" : "");
    return p.mismatched ? 3 : RV_EXIT_OK;
}
