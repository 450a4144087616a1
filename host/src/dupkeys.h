/* dupkeys - duplicate detection over string arrays in O(n log n), so big
 * configs and REST bodies stay cheap. */
#ifndef SPOKE_DUPKEYS_H
#define SPOKE_DUPKEYS_H

#include <stddef.h>

/* Sets dup[i] = 1 for every string equal to an earlier one (dup[] is not
 * cleared first). 0, or -1 on out-of-memory. */
int dupkeys_mark(const char *const *strs, size_t n, unsigned char *dup);

/* The first repeated string: *second is the smallest index equal to an
 * earlier string and *first that earlier index. 1 when found, 0 when all
 * differ, -1 on out-of-memory. */
int dupkeys_first(const char *const *strs, size_t n, size_t *first, size_t *second);

#endif
