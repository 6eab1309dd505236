/* log.h - leveled logging to stderr with a context prefix.
 *
 * Messages name what they are about: the volume, the connection or peer, the
 * offset.  Callers put that context in the message; rv_log adds time, level
 * and the program name. */
#ifndef REPVOL_LOG_H
#define REPVOL_LOG_H

enum rv_log_level { RV_LOG_ERROR, RV_LOG_WARN, RV_LOG_INFO, RV_LOG_DEBUG };

/* Process-wide settings, written once at start-up by main() before any thread
 * exists; read-only afterwards. */
void rv_log_init(const char *progname, enum rv_log_level level);
enum rv_log_level rv_log_get_level(void);

void rv_log(enum rv_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define rv_err(...)   rv_log(RV_LOG_ERROR, __VA_ARGS__)
#define rv_warn(...)  rv_log(RV_LOG_WARN, __VA_ARGS__)
#define rv_info(...)  rv_log(RV_LOG_INFO, __VA_ARGS__)
#define rv_debug(...) do { if (rv_log_get_level() >= RV_LOG_DEBUG) rv_log(RV_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
