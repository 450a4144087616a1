/*
 * file_sink - appends every record's value to a file as one NDJSON line.
 *
 * put() only buffers in memory; flush() writes the whole buffer with
 * write(2) (O_APPEND), then fsync(2)s it when `fsync` is on, and only then
 * reports success: the host acknowledges records after flush, so a record
 * is never acknowledged before it is on disk. Delivery is at-least-once: a
 * crash between the write and the acknowledgement replays those records and
 * the file holds them twice.
 *
 * Values are written as their bytes. A value holding a line break would
 * split the line, so it is re-serialized as compact JSON (which never holds
 * a raw line break); a value with a line break that is not JSON is refused.
 * A null value is written as `null`.
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
#include <unistd.h>

#include <jansson.h>
#include <spoke/plugin.h>

static const struct spoke_config_field fk_config[] = {
    { .name = "file", .type = SPOKE_CFG_STRING, .flags = SPOKE_CFG_REQUIRED,
      .doc = "Path of the NDJSON file to append to (created if missing)" },
    { .name = "fsync", .type = SPOKE_CFG_BOOL, .default_value = "true",
      .doc = "fsync the file on every flush, before records are acknowledged" },
    { 0 }
};

struct fk_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    const char *path;        /* config value, host-owned */
    int do_fsync;            /* config, and the file is a regular file */
    int fd;                  /* -1 until start() */

    char *buf;               /* lines put since the last successful flush */
    size_t len, cap;
    int64_t pending;         /* records in buf (or written but not yet synced) */
    int64_t pending_bytes;
    int unsynced;            /* bytes were written since the last fsync */
    int sync_errno;          /* an fsync failed: nothing written since is trusted */
};

static int fk_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                   const struct spoke_config *cfg, void **out,
                   char *errstr, size_t errstr_size)
{
    struct fk_state *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    st->api = api;
    st->inst = inst;
    st->path = api->config_string(cfg, "file");
    st->do_fsync = api->config_bool(cfg, "fsync");
    st->fd = -1;
    assert(st->path != NULL); /* required: the host validated it */
    *out = st;
    return SPOKE_OK;
}

/* Writes all of p[0..n) to fd, retrying short writes and EINTR. Returns the
 * bytes written; fewer than n means errno tells why. */
static size_t fk_write_all(int fd, const char *p, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return done;
        }
        if (w == 0) {
            errno = EIO; /* no progress and no reason: do not spin */
            return done;
        }
        done += (size_t)w;
    }
    return done;
}

/*
 * A file that does not end with a newline holds the torn tail of a write
 * cut short (a crash, a full disk). The records of that write were never
 * acknowledged and will be written again, so end the fragment with a line
 * break rather than glue the next record to it. The check needs read
 * access; without it the file is left as it is.
 */
static int fk_end_torn_line(struct fk_state *st, off_t size, char *errstr, size_t errstr_size)
{
    char last = '\n';
    int rfd;

    if (size == 0)
        return SPOKE_OK;
    rfd = open(st->path, O_RDONLY | O_CLOEXEC);
    if (rfd < 0)
        return SPOKE_OK;
    if (pread(rfd, &last, 1, size - 1) != 1)
        last = '\n';
    close(rfd);
    if (last == '\n')
        return SPOKE_OK;
    st->api->log(st->inst, SPOKE_LOG_WARN,
                 "%s does not end with a newline (an earlier write was cut short): "
                 "starting a new line", st->path);
    if (fk_write_all(st->fd, "\n", 1) != 1) {
        snprintf(errstr, errstr_size, "cannot write %s: %s", st->path, strerror(errno));
        return SPOKE_ERR_IO;
    }
    st->unsynced = 1;
    return SPOKE_OK;
}

static int fk_start(void *vst, char *errstr, size_t errstr_size)
{
    struct fk_state *st = vst;
    struct stat sb;

    st->fd = open(st->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (st->fd < 0) {
        snprintf(errstr, errstr_size, "cannot open %s: %s", st->path, strerror(errno));
        return SPOKE_ERR_IO;
    }
    if (fstat(st->fd, &sb) < 0) {
        snprintf(errstr, errstr_size, "cannot stat %s: %s", st->path, strerror(errno));
        return SPOKE_ERR_IO;
    }
    if (!S_ISREG(sb.st_mode)) {
        /* A device or a pipe (/dev/stdout): nothing to sync or repair. */
        st->do_fsync = 0;
        return SPOKE_OK;
    }
    return fk_end_torn_line(st, sb.st_size, errstr, errstr_size);
}

/* Ensures room for n more bytes in the buffer. */
static int fk_reserve(struct fk_state *st, size_t n)
{
    size_t ncap;
    char *nbuf;

    if (st->cap - st->len >= n)
        return 0;
    ncap = st->cap ? st->cap : 64 * 1024;
    while (ncap - st->len < n) {
        if (ncap > SIZE_MAX / 2)
            return -1;
        ncap *= 2;
    }
    nbuf = realloc(st->buf, ncap);
    if (nbuf == NULL)
        return -1;
    st->buf = nbuf;
    st->cap = ncap;
    return 0;
}

static int fk_put(void *vst, const struct spoke_record *rec, char *errstr, size_t errstr_size)
{
    struct fk_state *st = vst;
    const struct spoke_host_api *api = st->api;
    const char *val;
    size_t vlen = 0, start = st->len;

    val = api->record_value_bytes(rec, &vlen);
    if (val == NULL) {
        val = "null";
        vlen = 4;
    }
    if (memchr(val, '\n', vlen) != NULL || memchr(val, '\r', vlen) != NULL) {
        json_t *json = api->record_value_json(rec);
        size_t need;
        if (json == NULL) {
            snprintf(errstr, errstr_size, "value contains a newline and is not JSON");
            return SPOKE_ERR_INVALID;
        }
        need = json_dumpb(json, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
        if (need == 0) {
            snprintf(errstr, errstr_size, "value contains a newline and cannot be re-serialized");
            return SPOKE_ERR_INVALID;
        }
        if (fk_reserve(st, need + 1) < 0)
            goto nomem;
        st->len += json_dumpb(json, st->buf + st->len, need, JSON_COMPACT | JSON_ENCODE_ANY);
    } else {
        if (vlen == SIZE_MAX || fk_reserve(st, vlen + 1) < 0)
            goto nomem;
        memcpy(st->buf + st->len, val, vlen);
        st->len += vlen;
    }
    st->buf[st->len++] = '\n';
    st->pending++;
    st->pending_bytes += (int64_t)(st->len - start);
    return SPOKE_OK;

nomem:
    snprintf(errstr, errstr_size, "out of memory buffering %zu bytes", vlen);
    return SPOKE_ERR_NOMEM;
}

static int fk_flush(void *vst, char *errstr, size_t errstr_size)
{
    struct fk_state *st = vst;
    const struct spoke_host_api *api = st->api;
    size_t done;

    /* After a failed fsync the kernel may have dropped the dirty pages and
     * a later fsync can succeed without them: never report success again
     * from this instance (a restart replays the unacknowledged records). */
    if (st->sync_errno != 0) {
        snprintf(errstr, errstr_size, "an earlier fsync of %s failed (%s); data may be lost",
                 st->path, strerror(st->sync_errno));
        return SPOKE_ERR_IO;
    }
    if (st->len > 0) {
        done = fk_write_all(st->fd, st->buf, st->len);
        if (done > 0)
            st->unsynced = 1;
        if (done < st->len) {
            int err = errno;
            /* Keep what was not written, so a second flush goes on from there. */
            memmove(st->buf, st->buf + done, st->len - done);
            st->len -= done;
            snprintf(errstr, errstr_size, "cannot write %s: %s", st->path, strerror(err));
            return SPOKE_ERR_IO;
        }
        st->len = 0;
    }
    if (st->do_fsync && st->unsynced) {
        if (fsync(st->fd) < 0) {
            st->sync_errno = errno;
            snprintf(errstr, errstr_size, "cannot fsync %s: %s", st->path, strerror(errno));
            return SPOKE_ERR_IO;
        }
    }
    st->unsynced = 0;
    if (st->pending > 0) {
        api->metric_add(st->inst, "records_written", st->pending);
        api->metric_add(st->inst, "bytes_written", st->pending_bytes);
        st->pending = 0;
        st->pending_bytes = 0;
    }
    return SPOKE_OK;
}

/* Unflushed lines are dropped: they were never acknowledged, so the host
 * delivers them again after a restart. */
static void fk_destroy(void *vst)
{
    struct fk_state *st = vst;
    if (st == NULL)
        return;
    if (st->fd >= 0)
        close(st->fd);
    free(st->buf);
    free(st);
}

static const struct spoke_plugin file_sink = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "file_sink",
    .kind        = SPOKE_KIND_SINK,
    .version     = "0.1.0",
    .description = "Appends record values to a file as NDJSON, fsynced before acknowledgement",
    .config      = fk_config,
    .init        = fk_init,
    .start       = fk_start,
    .put         = fk_put,
    .flush       = fk_flush,
    .destroy     = fk_destroy,
};

/* The plugin's only exported symbol: returns the constant descriptor. */
SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void)
{
    return &file_sink;
}
