/* log - one line per event: time, level, connector, message. Thread-safe.
 * Secrets never reach this module: callers format masked values only. */
#ifndef SPOKE_LOG_H
#define SPOKE_LOG_H

#include <stdarg.h>
#include <stdio.h>
#include "spoke/plugin.h"

/* Current threshold; lines above it are skipped after one comparison. */
extern volatile int log_threshold;

/* Sets the threshold. */
void log_set_level(enum spoke_log_level level);
/* Parses "error|warn|info|debug|trace" (case-insensitive). -1 if unknown. */
int log_level_parse(const char *s);
const char *log_level_name(enum spoke_log_level level);
/* Redirects output (default stderr). Not thread-safe: call at start-up. */
void log_set_stream(FILE *fp);

/* ctx: connector name or NULL for host-wide lines. */
void log_write(enum spoke_log_level level, const char *ctx, const char *fmt, ...)
    SPOKE_PRINTF(3, 4);
void log_vwrite(enum spoke_log_level level, const char *ctx, const char *fmt, va_list ap);
/* log_vwrite without the threshold: for a caller that applied its own (a
 * connector's logger level, PUT /admin/loggers/{name}, may be above the
 * root's). */
void log_vemit(enum spoke_log_level level, const char *ctx, const char *fmt, va_list ap);

/* Makes s one line of text in place: CR, LF and tab become spaces, other
 * ASCII control characters (a terminal escape, say) '?'. Every log line
 * goes through it; so does plugin text the host prints otherwise. */
void log_one_line(char *s);

#define LOG_E(ctx, ...) do { if (log_threshold >= SPOKE_LOG_ERROR) log_write(SPOKE_LOG_ERROR, ctx, __VA_ARGS__); } while (0)
#define LOG_W(ctx, ...) do { if (log_threshold >= SPOKE_LOG_WARN)  log_write(SPOKE_LOG_WARN,  ctx, __VA_ARGS__); } while (0)
#define LOG_I(ctx, ...) do { if (log_threshold >= SPOKE_LOG_INFO)  log_write(SPOKE_LOG_INFO,  ctx, __VA_ARGS__); } while (0)
#define LOG_D(ctx, ...) do { if (log_threshold >= SPOKE_LOG_DEBUG) log_write(SPOKE_LOG_DEBUG, ctx, __VA_ARGS__); } while (0)

#endif
