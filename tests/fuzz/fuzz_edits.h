/* fuzz_edits.h - the harnesses' edit mode: a fixed document changed by a
 * list of 4-byte edits (operation, position high and low byte, byte:
 * replace, insert or delete), so that most inputs are near copies of a
 * valid document, which random bytes seldom give. */
#ifndef SPOKE_FUZZ_EDITS_H
#define SPOKE_FUZZ_EDITS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* base[0..blen) with the edits of e[0..n) applied, into doc (cap bytes, at
 * least blen); returns the length. */
static size_t fuzz_edit(const char *base, size_t blen, const uint8_t *e, size_t n, char *doc,
                        size_t cap)
{
    size_t len = blen;
    memcpy(doc, base, len);
    for (size_t k = 0; k + 4 <= n; k += 4) {
        size_t pos = ((size_t)e[k + 1] << 8 | e[k + 2]) % (len + 1);
        switch (e[k] % 3) {
        case 0:
            if (pos < len)
                doc[pos] = (char)e[k + 3];
            break;
        case 1:
            if (len < cap) {
                memmove(doc + pos + 1, doc + pos, len - pos);
                doc[pos] = (char)e[k + 3];
                len++;
            }
            break;
        default:
            if (pos < len) {
                memmove(doc + pos, doc + pos + 1, len - pos - 1);
                len--;
            }
            break;
        }
    }
    return len;
}

#endif
