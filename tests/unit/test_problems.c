/* lib/problems: a plugin check's problems, the first in errstr, the others
 * through the host's check_problem or joined into errstr on a host without
 * it. */
#include <stdint.h>
#include <stdlib.h>

#include "problems.h"
#include "test.h"

/* A host's check_problem, recording what it is given. */
static struct {
    const struct spoke_config *cfg;
    const char *keys[PROBLEMS_MAX + 4];
    char msgs[PROBLEMS_MAX + 4][SPOKE_ERRSTR_SIZE];
    size_t n;
} seen;

static void fake_check_problem(const struct spoke_config *cfg, const char *key, const char *msg)
{
    seen.cfg = cfg;
    if (seen.n < sizeof(seen.keys) / sizeof(seen.keys[0])) {
        seen.keys[seen.n] = key;
        snprintf(seen.msgs[seen.n], sizeof(seen.msgs[0]), "%s", msg);
    }
    seen.n++;
}

static void none_found(void)
{
    struct problems p;
    char err[SPOKE_ERRSTR_SIZE] = "untouched";
    const char *key = "stale";
    problems_init(&p);
    CHECK(problems_count(&p) == 0);
    CHECK(problems_report(&p, &key, err, sizeof(err), NULL, NULL) == SPOKE_OK);
    CHECK(key == NULL);
    CHECK_STR(err, "untouched");
}

/* With a host that has check_problem: the first in err and key, each other
 * one to the host with its key, in order; the cfg given is passed on. */
static void each_to_the_host(void)
{
    struct spoke_host_api api = { .struct_size = sizeof(api),
                                  .check_problem = fake_check_problem };
    const struct spoke_config *cfg = (const struct spoke_config *)&api;  /* any address */
    struct problems p;
    char err[SPOKE_ERRSTR_SIZE];
    const char *key = NULL;
    problems_init(&p);
    problem(&p, "window", "window: tumbling needs window.size.ms");
    problem(&p, NULL, "no one key: %d", 42);
    problem(&p, "top.n", "top.n needs top.by");
    memset(&seen, 0, sizeof(seen));
    CHECK(problems_report_api(&p, &api, cfg, &key, err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK_STR(err, "window: tumbling needs window.size.ms");
    CHECK_STR(key, "window");
    CHECK(seen.n == 2 && seen.cfg == cfg);
    CHECK(seen.keys[0] == NULL);
    CHECK_STR(seen.msgs[0], "no one key: 42");
    CHECK_STR(seen.keys[1], "top.n");
    CHECK_STR(seen.msgs[1], "top.n needs top.by");

    /* Past PROBLEMS_MAX: the first PROBLEMS_MAX, then how many more. */
    problems_init(&p);
    for (int i = 0; i < PROBLEMS_MAX + 9; i++)
        problem(&p, "aggregates", "aggregates item %d is wrong", i + 1);
    memset(&seen, 0, sizeof(seen));
    CHECK(problems_count(&p) == PROBLEMS_MAX + 9);
    CHECK(problems_report_api(&p, &api, cfg, &key, err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK_STR(err, "aggregates item 1 is wrong");
    CHECK(seen.n == PROBLEMS_MAX);
    CHECK_STR(seen.msgs[PROBLEMS_MAX - 2], "aggregates item 16 is wrong");
    CHECK(seen.keys[PROBLEMS_MAX - 1] == NULL);
    CHECK_STR(seen.msgs[PROBLEMS_MAX - 1], "and 9 more problems");
}

/* A host built before check_problem (its table ends before the entry), one
 * whose entry is NULL, and no host table: the problems are joined into err. */
static void joined_on_an_older_host(void)
{
    struct spoke_host_api api = { .check_problem = fake_check_problem };
    api.struct_size = offsetof(struct spoke_host_api, check_problem);
    struct problems p;
    char err[SPOKE_ERRSTR_SIZE];
    const char *key = NULL;
    /* Round 2: the entry NULL; round 3: no api at all (a plugin's init). */
    for (int round = 0; round < 3; round++) {
        problems_init(&p);
        problem(&p, "emit", "emit: final needs a window");
        problem(&p, "top.by", "top.by 'x' is not an aggregate column");
        memset(&seen, 0, sizeof(seen));
        CHECK(problems_report_api(&p, round < 2 ? &api : NULL, NULL, &key, err, sizeof(err)) ==
              SPOKE_ERR_INVALID);
        CHECK_STR(err, "emit: final needs a window; top.by 'x' is not an aggregate column");
        CHECK_STR(key, "emit");
        CHECK(seen.n == 0);
        api.struct_size = sizeof(api);
        api.check_problem = NULL;
    }
    /* More than fit: as many as fit whole, then the count of the rest. */
    problems_init(&p);
    for (int i = 0; i < 12; i++)
        problem(&p, "k", "problem number %d, described at some length to fill the message", i);
    CHECK(problems_report(&p, &key, err, sizeof(err), NULL, NULL) == SPOKE_ERR_INVALID);
    size_t shown = 0;
    for (const char *s = err; (s = strstr(s, "problem number")); s++)
        shown++;
    char tail[64];
    snprintf(tail, sizeof(tail), "; and %zu more problems", 12 - shown);
    CHECK_MSG(shown >= 2 && shown < 12, "%s", err);
    CHECK_MSG(strlen(err) > strlen(tail) && !strcmp(err + strlen(err) - strlen(tail), tail),
              "%s", err);
    /* A first problem longer than err: cut, and nothing after it. */
    char small[24];
    problems_init(&p);
    problem(&p, "a", "a first problem far longer than the buffer");
    problem(&p, "b", "second");
    CHECK(problems_report(&p, &key, small, sizeof(small), NULL, NULL) == SPOKE_ERR_INVALID);
    CHECK_STR(small, "a first problem far lon");
}

/* problems_finish: out of memory first; then through the host from
 * check(), joined from init. */
static void finish(void)
{
    struct spoke_host_api api = { .struct_size = sizeof(api),
                                  .check_problem = fake_check_problem };
    struct problems p;
    char err[SPOKE_ERRSTR_SIZE];
    const char *key = "stale";
    problems_init(&p);
    problem(&p, "a", "first");
    problem(&p, "b", "second");
    memset(&seen, 0, sizeof(seen));
    CHECK(problems_finish(SPOKE_ERR_NOMEM, &p, &api, NULL, 1, &key, err, sizeof(err)) ==
          SPOKE_ERR_NOMEM);
    CHECK_STR(err, "out of memory");
    CHECK(key == NULL && seen.n == 0);
    CHECK(problems_finish(SPOKE_OK, &p, &api, NULL, 1, &key, err, sizeof(err)) ==
          SPOKE_ERR_INVALID);
    CHECK_STR(err, "first");
    CHECK(seen.n == 1);
    CHECK_STR(seen.msgs[0], "second");
    memset(&seen, 0, sizeof(seen));
    CHECK(problems_finish(SPOKE_OK, &p, &api, NULL, 0, &key, err, sizeof(err)) ==
          SPOKE_ERR_INVALID);
    CHECK_STR(err, "first; second");
    CHECK_STR(key, "a");
    CHECK(seen.n == 0);
    problems_init(&p);
    CHECK(problems_finish(SPOKE_OK, &p, &api, NULL, 1, &key, err, sizeof(err)) == SPOKE_OK);
}

int main(void)
{
    RUN(none_found);
    RUN(each_to_the_host);
    RUN(joined_on_an_older_host);
    RUN(finish);
    return TEST_REPORT();
}
