/*
 * file_source - replays a line-oriented file (NDJSON, CSV, logs) and follows
 * it as it grows, one record per non-empty line.
 *
 * The value of a record is the line's bytes without its line ending ("\n",
 * or "\r\n"); it is not parsed: validation belongs to later stages. Records
 * have no key and the host stamps them with the current time.
 *
 * Position: partition = the path as configured, offset = the byte just after
 * the line, i.e. where reading resumes once the record is delivered. start()
 * seeks to the committed offset, so a restart neither loses nor repeats
 * delivered lines (at-least-once: lines in flight at a crash are replayed).
 *
 * Only complete lines are emitted. A last line without its newline stays in
 * the buffer until the newline arrives (tail -f). When the file shrinks below
 * what was read (truncated) or the path names another file (rotated), the
 * plugin logs a warning and reads from byte 0 again.
 *
 * Reading uses read(2) into one large buffer that grows only as far as
 * max.line.bytes needs: one system call serves thousands of lines.
 *
 * records.per.second replays at a set rate (a recorded stream at about its
 * live pace): a token bucket on the monotonic clock; a poll emits what the
 * bucket allows and asks to be called again when it holds one more record.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <spoke/plugin.h>

/* Bytes read per read(2) at the least; the buffer grows past it only for a
 * line longer than this (up to max.line.bytes + 1). */
#define FS_READ_CHUNK (1024u * 1024u)

static const struct spoke_config_field fs_config[] = {
    { .name = "file", .type = SPOKE_CFG_STRING, .flags = SPOKE_CFG_REQUIRED,
      .doc = "Path of the NDJSON file to read" },
    { .name = "poll.interval.ms", .type = SPOKE_CFG_LONG, .default_value = "200",
      .doc = "How long (ms) to wait before looking for new lines at the end of the file",
      .min = 1, .max = 3600000 },
    { .name = "read.batch.lines", .type = SPOKE_CFG_INT, .default_value = "10000",
      .doc = "Most lines read in one poll", .min = 1, .max = 1000000 },
    { .name = "max.line.bytes", .type = SPOKE_CFG_INT, .default_value = "1048576",
      .doc = "Longest line accepted, in bytes without its line ending; a longer one fails the connector",
      .min = 16, .max = 67108864 },
    { .name = "records.per.second", .type = SPOKE_CFG_DOUBLE, .default_value = "0",
      .doc = "Replay rate: most records emitted per second, spread evenly (at most a tenth of a "
             "second's worth at once); 0: as fast as the pipeline takes them",
      .min = 0, .max = 100000000 },
    { 0 }
};

/*
 * Instance state. The buffer holds the file's bytes [pos, pos + len - head)
 * starting at buf[head]: pos is the offset of the first byte not yet
 * consumed as part of a line, and the file descriptor's own offset is
 * always pos + (len - head).
 */
struct fs_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    const char *path;          /* config value, host-owned; also the partition */
    int64_t poll_ms;
    size_t batch_lines;
    size_t max_line;

    int fd;                    /* -1 until start() */
    dev_t dev;                 /* identity of the open file, to detect rotation */
    ino_t ino;
    char *buf;
    size_t cap;
    size_t head;               /* first unconsumed byte in buf */
    size_t len;                /* bytes held in buf */
    int64_t pos;               /* file offset of buf[head] */
    int stopping;              /* stop() was called or emit said the host stops */

    /* records.per.second: a token bucket refilled from the monotonic clock,
     * holding at most burst tokens (a tenth of a second's worth, at least
     * one), so a pause (end of file, backpressure) is not made up for by a
     * flood afterwards. */
    double rate;               /* 0: unlimited */
    double burst;
    double tokens;
    int64_t refill_ms;         /* when tokens was last brought up to date (api->mono_ms) */
};

/* Brings the bucket up to date; returns the whole records it allows now. */
static int64_t rate_allowance(struct fs_state *st)
{
    int64_t now = st->api->mono_ms();
    st->tokens += (double)(now - st->refill_ms) * st->rate / 1e3;
    if (st->tokens > st->burst)
        st->tokens = st->burst;
    st->refill_ms = now;
    return (int64_t)st->tokens;
}

/* Milliseconds until the bucket holds one whole record again (>= 1). */
static int64_t rate_wait_ms(const struct fs_state *st)
{
    double ms = (1.0 - st->tokens) * 1000.0 / st->rate;
    return ms < 1.0 ? 1 : (int64_t)ms + 1;
}

static int fs_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                   const struct spoke_config *cfg, void **out,
                   char *errstr, size_t errstr_size)
{
    struct fs_state *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    st->api = api;
    st->inst = inst;
    st->path = api->config_string(cfg, "file");
    st->poll_ms = api->config_int(cfg, "poll.interval.ms");
    st->batch_lines = (size_t)api->config_int(cfg, "read.batch.lines");
    st->max_line = (size_t)api->config_int(cfg, "max.line.bytes");
    st->rate = api->config_double(cfg, "records.per.second");
    st->burst = st->rate / 10 > 1 ? st->rate / 10 : 1;
    st->tokens = st->burst;
    st->refill_ms = api->mono_ms();
    st->fd = -1;
    assert(st->path != NULL); /* required: the host validated it */
    *out = st;
    return SPOKE_OK;
}

/* Forgets everything buffered and reads again from byte 0 of fd. */
static int fs_rewind(struct fs_state *st, char *errstr, size_t errstr_size)
{
    st->head = st->len = 0;
    st->pos = 0;
    if (lseek(st->fd, 0, SEEK_SET) < 0) {
        snprintf(errstr, errstr_size, "cannot seek in %s: %s", st->path, strerror(errno));
        return SPOKE_ERR_IO;
    }
    return SPOKE_OK;
}

/*
 * Opens the file and positions it at the committed offset, or at 0 when
 * there is none or when the file is now shorter than that offset.
 */
static int fs_start(void *vst, char *errstr, size_t errstr_size)
{
    struct fs_state *st = vst;
    const struct spoke_host_api *api = st->api;
    struct stat sb;
    int64_t off = 0;

    st->fd = open(st->path, O_RDONLY | O_CLOEXEC);
    if (st->fd < 0) {
        snprintf(errstr, errstr_size, "cannot open %s: %s", st->path, strerror(errno));
        return SPOKE_ERR_IO;
    }
    if (fstat(st->fd, &sb) < 0) {
        snprintf(errstr, errstr_size, "cannot stat %s: %s", st->path, strerror(errno));
        return SPOKE_ERR_IO;
    }
    /* Offsets, truncation and rotation all assume a regular file. */
    if (!S_ISREG(sb.st_mode)) {
        snprintf(errstr, errstr_size, "%s is not a regular file", st->path);
        return SPOKE_ERR_INVALID;
    }
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    (void)posix_fadvise(st->fd, 0, 0, POSIX_FADV_SEQUENTIAL);

    st->cap = FS_READ_CHUNK;
    st->buf = malloc(st->cap);
    if (st->buf == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }

    if (api->offset_get(st->inst, st->path, &off) != SPOKE_OK || off < 0)
        off = 0;
    if (off > (int64_t)sb.st_size) {
        api->log(st->inst, SPOKE_LOG_WARN,
                 "%s is %lld bytes, shorter than the committed offset %lld "
                 "(truncated or replaced): reading from the start",
                 st->path, (long long)sb.st_size, (long long)off);
        off = 0;
    }
    if (off > 0 && lseek(st->fd, (off_t)off, SEEK_SET) < 0) {
        snprintf(errstr, errstr_size, "cannot seek %s to %lld: %s",
                 st->path, (long long)off, strerror(errno));
        return SPOKE_ERR_IO;
    }
    st->pos = off;
    api->log(st->inst, SPOKE_LOG_INFO, "reading %s from byte %lld", st->path, (long long)off);
    return SPOKE_OK;
}

/*
 * Called at end of file: detects a rotated file (the path now names another
 * file: switch to it) and a truncated one (shorter than what was read:
 * rewind). *changed is set when reading restarts at 0. A path that does not
 * exist for the moment (between a rename and the new file's creation) is
 * not an error: the current file is still followed.
 */
static int fs_check_replaced(struct fs_state *st, int *changed,
                             char *errstr, size_t errstr_size)
{
    const struct spoke_host_api *api = st->api;
    struct stat sb;
    int64_t readpos = st->pos + (int64_t)(st->len - st->head);

    *changed = 0;
    if (stat(st->path, &sb) < 0 && fstat(st->fd, &sb) < 0) {
        snprintf(errstr, errstr_size, "cannot stat %s: %s", st->path, strerror(errno));
        return SPOKE_ERR_IO;
    }
    if (sb.st_dev != st->dev || sb.st_ino != st->ino) {
        int fd = open(st->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return SPOKE_OK; /* raced with another rename: look again next poll */
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
            close(fd);
            return SPOKE_OK;
        }
        api->log(st->inst, SPOKE_LOG_WARN,
                 "%s was replaced by another file (rotated): reading the new file from the start",
                 st->path);
        close(st->fd);
        st->fd = fd;
        st->dev = sb.st_dev;
        st->ino = sb.st_ino;
        (void)posix_fadvise(st->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        *changed = 1;
        return fs_rewind(st, errstr, errstr_size);
    }
    /* sb now describes the open file (through the path or the descriptor). */
    if ((int64_t)sb.st_size < readpos) {
        api->log(st->inst, SPOKE_LOG_WARN,
                 "%s shrank to %lld bytes, below the read position %lld (truncated): "
                 "reading from the start",
                 st->path, (long long)sb.st_size, (long long)readpos);
        *changed = 1;
        return fs_rewind(st, errstr, errstr_size);
    }
    return SPOKE_OK;
}

/* Creates, positions and emits the record of one line. Returns emit's
 * status (SPOKE_ERR_STOPPED included) or an error with errstr set. */
static int fs_emit_line(struct fs_state *st, const char *line, size_t n, int64_t next_off,
                        char *errstr, size_t errstr_size)
{
    const struct spoke_host_api *api = st->api;
    struct spoke_record *rec;
    int rc;

    rec = api->record_new(st->inst, NULL, NULL, 0, line, n);
    if (rec == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    rc = api->record_set_position(rec, st->path, next_off);
    if (rc != SPOKE_OK) {
        api->record_free(rec);
        snprintf(errstr, errstr_size, "cannot set the source position: %s", api->strerror(rc));
        return rc;
    }
    rc = api->emit(st->inst, rec); /* takes rec, whatever it returns */
    if (rc != SPOKE_OK && rc != SPOKE_ERR_STOPPED)
        snprintf(errstr, errstr_size, "emit failed: %s", api->strerror(rc));
    return rc;
}

/* Makes room to read more: moves the unconsumed tail to the front and, when
 * the buffer is full of one partial line, grows it (never past
 * max.line.bytes + 1, which the caller has checked). */
static int fs_make_room(struct fs_state *st, char *errstr, size_t errstr_size)
{
    size_t avail = st->len - st->head;

    if (st->head > 0) {
        memmove(st->buf, st->buf + st->head, avail);
        st->head = 0;
        st->len = avail;
    }
    if (st->len == st->cap) {
        size_t ncap = st->cap * 2;
        char *nbuf;
        if (ncap > st->max_line + 1)
            ncap = st->max_line + 1;
        assert(ncap > st->cap);
        nbuf = realloc(st->buf, ncap);
        if (nbuf == NULL) {
            snprintf(errstr, errstr_size, "out of memory");
            return SPOKE_ERR_NOMEM;
        }
        st->buf = nbuf;
        st->cap = ncap;
    }
    return SPOKE_OK;
}

static int fs_poll(void *vst, int64_t *next_poll_ms, char *errstr, size_t errstr_size)
{
    struct fs_state *st = vst;
    const struct spoke_host_api *api = st->api;
    size_t lines = 0;        /* lines consumed, empty ones included (batch limit) */
    int64_t emitted = 0;
    int64_t nread = 0;
    int rc = SPOKE_OK;

    *next_poll_ms = st->poll_ms;
    if (st->stopping)
        return SPOKE_OK;
    int64_t allowed = -1;  /* records this poll may emit; -1: no limit */
    int rate_limited = 0;
    if (st->rate > 0) {
        allowed = rate_allowance(st);
        if (allowed == 0) {
            *next_poll_ms = rate_wait_ms(st);
            return SPOKE_OK;
        }
    }

    for (;;) {
        /* Emit every complete line already buffered. */
        while (st->head < st->len) {
            const char *line = st->buf + st->head;
            const char *nl = memchr(line, '\n', st->len - st->head);
            size_t n, vlen;
            int64_t next_off;

            if (nl == NULL)
                break;
            n = (size_t)(nl - line);
            if (n > st->max_line) {
                snprintf(errstr, errstr_size,
                         "line at byte %lld is longer than max.line.bytes (%zu)",
                         (long long)st->pos, st->max_line);
                rc = SPOKE_ERR_INVALID;
                goto out;
            }
            vlen = n;
            if (vlen > 0 && line[vlen - 1] == '\r')
                vlen--;
            next_off = st->pos + (int64_t)n + 1;
            if (vlen > 0) {
                if (allowed >= 0 && emitted == allowed) {
                    /* The rate's share for now is out: come back for the
                     * next record when the bucket holds it (below). */
                    rate_limited = 1;
                    goto out;
                }
                rc = fs_emit_line(st, line, vlen, next_off, errstr, errstr_size);
                if (rc == SPOKE_ERR_STOPPED) {
                    /* The host is stopping: the line stays unconsumed and
                     * is replayed from the committed offset next time. */
                    st->stopping = 1;
                    rc = SPOKE_OK;
                    goto out;
                }
                if (rc != SPOKE_OK)
                    goto out;
                emitted++;
            }
            st->head += n + 1;
            st->pos = next_off;
            if (++lines >= st->batch_lines) {
                *next_poll_ms = 0; /* more may be ready: come back at once */
                goto out;
            }
        }

        /* What is left is a partial line: fail early if it is already too
         * long, otherwise read more behind it. */
        if (st->len - st->head > st->max_line) {
            snprintf(errstr, errstr_size,
                     "line at byte %lld is longer than max.line.bytes (%zu)",
                     (long long)st->pos, st->max_line);
            rc = SPOKE_ERR_INVALID;
            goto out;
        }
        rc = fs_make_room(st, errstr, errstr_size);
        if (rc != SPOKE_OK)
            goto out;

        ssize_t r = read(st->fd, st->buf + st->len, st->cap - st->len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            snprintf(errstr, errstr_size, "cannot read %s: %s", st->path, strerror(errno));
            rc = SPOKE_ERR_IO;
            goto out;
        }
        if (r == 0) {
            int changed = 0;
            rc = fs_check_replaced(st, &changed, errstr, errstr_size);
            if (rc == SPOKE_OK && changed)
                *next_poll_ms = 0; /* the new content may be there already */
            goto out;
        }
        st->len += (size_t)r;
        nread += r;
    }

out:
    if (allowed >= 0)
        st->tokens -= (double)emitted;
    if (rate_limited)
        *next_poll_ms = rate_wait_ms(st);
    if (emitted > 0)
        api->metric_add(st->inst, "lines_read", emitted);
    if (nread > 0)
        api->metric_add(st->inst, "bytes_read", nread);
    return rc;
}

static void fs_stop(void *vst)
{
    struct fs_state *st = vst;
    st->stopping = 1;
}

static void fs_destroy(void *vst)
{
    struct fs_state *st = vst;
    if (st == NULL)
        return;
    if (st->fd >= 0)
        close(st->fd);
    free(st->buf);
    free(st);
}

static const struct spoke_plugin file_source = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "file_source",
    .kind        = SPOKE_KIND_SOURCE,
    .version     = "0.1.0",
    .description = "Replays and follows a line-oriented file (NDJSON), one record per line",
    .config      = fs_config,
    .init        = fs_init,
    .start       = fs_start,
    .poll        = fs_poll,
    .stop        = fs_stop,
    .destroy     = fs_destroy,
};

/* The plugin's only exported symbol: returns the constant descriptor. */
SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void)
{
    return &file_source;
}
