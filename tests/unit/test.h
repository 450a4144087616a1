/* test.h - a minimal unit-test harness: CHECK never aborts the run, every
 * failure prints file:line and the expression, TEST_MAIN returns non-zero
 * when any check failed and prints "N passed, N failed". */
#ifndef SPOKE_TEST_H
#define SPOKE_TEST_H

#include <stdio.h>
#include <string.h>

static int test_passed, test_failed;

#define CHECK(cond) do { \
    if (cond) test_passed++; \
    else { test_failed++; fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_MSG(cond, ...) do { \
    if (cond) test_passed++; \
    else { test_failed++; fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
           fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
} while (0)

#define CHECK_STR(a, b) do { \
    const char *a_ = (a), *b_ = (b); \
    if (a_ && b_ && strcmp(a_, b_) == 0) test_passed++; \
    else { test_failed++; fprintf(stderr, "%s:%d: CHECK_STR failed: %s == \"%s\", expected \"%s\"\n", \
                                  __FILE__, __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } \
} while (0)

/* True when needle occurs in hay (both non-NULL). A function, so arrays and
 * pointers both work without -Waddress warnings. */
static inline int test_contains(const char *hay, const char *needle)
{
    return hay && needle && strstr(hay, needle) != NULL;
}
#define CONTAINS(hay, needle) test_contains((hay), (needle))

#define RUN(fn) do { fprintf(stderr, "-- %s\n", #fn); fn(); } while (0)

#define TEST_REPORT() ( \
    printf("%d passed, %d failed\n", test_passed, test_failed), \
    (test_failed == 0 && test_passed > 0) ? 0 : 1)

#endif
