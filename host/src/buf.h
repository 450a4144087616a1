/* buf - a growable byte buffer. Always NUL-terminated after len. */
#ifndef SPOKE_BUF_H
#define SPOKE_BUF_H

#include <stddef.h>

struct buf {
    char *p;
    size_t len;
    size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

/* Ensure room for n more bytes (+NUL). 0 or -1 on out-of-memory. */
int buf_reserve(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the storage to the caller (free with free()); b is reset. */
char *buf_steal(struct buf *b, size_t *len);
void buf_reset(struct buf *b);  /* len = 0, keeps storage */
void buf_free(struct buf *b);   /* releases storage */

#endif
