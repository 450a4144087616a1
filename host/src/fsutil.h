/* fsutil - durable file writes and directories. */
#ifndef SPOKE_FSUTIL_H
#define SPOKE_FSUTIL_H

#include <stddef.h>

/* Replaces path with data atomically: writes path.tmp.<pid>, fsyncs it,
 * renames it over path and fsyncs the directory, so a crash leaves either the
 * old or the new content, never a mix. 0, or -1 with err. */
int atomic_write_file(const char *path, const void *data, size_t len, char *err, size_t errsize);

/* mkdir -p with mode 0700 for new directories. 0, or -1 with err. */
int mkdir_p(const char *path, char *err, size_t errsize);

/* Reads a whole file (at most max bytes) into a malloc'd NUL-terminated
 * buffer. NULL with err (ENOENT sets *missing = 1 when missing != NULL). */
char *read_file(const char *path, size_t max, size_t *len, int *missing, char *err,
                size_t errsize);

#endif
