#include "log.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>

volatile int log_threshold = SPOKE_LOG_INFO;
static FILE *log_fp;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const level_names[] = { "error", "warn", "info", "debug", "trace" };

void log_set_level(enum spoke_log_level level) { log_threshold = (int)level; }
void log_set_stream(FILE *fp) { log_fp = fp; }

int log_level_parse(const char *s)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return (int)i;
    return -1;
}

const char *log_level_name(enum spoke_log_level level)
{
    if ((int)level < 0 || (size_t)level >= sizeof(level_names) / sizeof(level_names[0]))
        return "?";
    return level_names[level];
}

void log_one_line(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
        else if (*p < 0x20 || *p == 0x7f)
            *p = '?';
}

void log_vwrite(enum spoke_log_level level, const char *ctx, const char *fmt, va_list ap)
{
    if ((int)level > log_threshold)
        return;
    log_vemit(level, ctx, fmt, ap);
}

void log_vemit(enum spoke_log_level level, const char *ctx, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* One event, one line: log readers never split it, and text from a
     * plugin or a peer cannot forge a line or drive a terminal. */
    log_one_line(msg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    FILE *fp = log_fp ? log_fp : stderr;
    pthread_mutex_lock(&log_lock);
    if (ctx)
        fprintf(fp, "%s.%03ldZ %-5s [%s] %s\n", when, ts.tv_nsec / 1000000L,
                level_names[level], ctx, msg);
    else
        fprintf(fp, "%s.%03ldZ %-5s [spoke] %s\n", when, ts.tv_nsec / 1000000L,
                level_names[level], msg);
    fflush(fp);
    pthread_mutex_unlock(&log_lock);
}

void log_write(enum spoke_log_level level, const char *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, ctx, fmt, ap);
    va_end(ap);
}
