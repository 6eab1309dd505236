/* log.c - leveled logging to stderr (see include/repvol/log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <errno.h>

#include "repvol/log.h"

/* Written once by main() before any other thread exists, read-only after:
 * a process has one log destination and one verbosity. */
static const char *log_prog = "repvol";
static enum rv_log_level log_level = RV_LOG_INFO;

void rv_log_init(const char *progname, enum rv_log_level level)
{
    if (progname) {
        const char *slash = strrchr(progname, '/');
        log_prog = slash ? slash + 1 : progname;
    }
    log_level = level;
}

enum rv_log_level rv_log_get_level(void) { return log_level; }

void rv_log(enum rv_log_level level, const char *fmt, ...)
{
    static const char *const names[] = { "error", "warning", "info", "debug" };
    if (level > log_level)
        return;
    int saved = errno;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char line[1024];
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %s[%s]: ",
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     log_prog, names[level]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line - 1)
        n = sizeof line - 2;
    line[n++] = '\n';
    /* One write() per line so lines of concurrent processes don't interleave. */
    fwrite(line, 1, n, stderr);
    fflush(stderr);
    errno = saved;
}
