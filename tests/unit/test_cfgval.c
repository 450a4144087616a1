/* Unit tests for cfgval: validating configs against spoke_config_field tables. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cfgval.h"
#include "conncfg.h"
#include "test.h"

static const char *const modes[] = { "fast", "slow", NULL };

static const struct spoke_config_field fields[] = {
    { "url", SPOKE_CFG_STRING, NULL, SPOKE_CFG_REQUIRED, "Endpoint", .min = 1, .max = 20 },
    { "poll.interval.ms", SPOKE_CFG_INT, "60000", 0, "Poll interval", .min = 1000, .max = 3600000 },
    { "offset", SPOKE_CFG_LONG, NULL, 0, "Start offset", .min = -5, .max = 5000000000.0 },
    { "ratio", SPOKE_CFG_DOUBLE, "0.5", 0, "Share", .min = 0, .max = 1 },
    { "verbose", SPOKE_CFG_BOOL, "false", 0, "Chatty", 0, 0, NULL },
    { "stations", SPOKE_CFG_LIST, NULL, 0, "Station ids", .max = 3 },
    { "mode", SPOKE_CFG_STRING, "fast", 0, "Mode", .allowed = modes },
    { "api.key", SPOKE_CFG_PASSWORD, NULL, 0, "API key", .min = 8, .max = 64 },
    { "token", SPOKE_CFG_STRING, NULL, SPOKE_CFG_SECRET, "Token", .allowed = modes },
    { "pin", SPOKE_CFG_INT, NULL, SPOKE_CFG_SECRET, "PIN", .min = 1000, .max = 9999 },
    { "count", SPOKE_CFG_INT, NULL, 0, "Unbounded int", 0, 0, NULL },
    { "big", SPOKE_CFG_LONG, NULL, 0, "Unbounded long", 0, 0, NULL },
    { "scale", SPOKE_CFG_DOUBLE, NULL, 0, "Unbounded double", 0, 0, NULL },
    { "tags", SPOKE_CFG_LIST, " a, b ,c ", 0, "Tags", 0, 0, NULL },
    { 0 }
};

#define KV(k, v) { (char *)(k), (char *)(v), NULL, 0, 0, { 0, 0 }, { 0, 0 } }

static struct cfgval_errors errs;

/* Validates kvs that must pass; returns the config (caller frees). */
static struct spoke_config *ok(const struct cfg_kv *kvs, size_t n)
{
    struct spoke_config *cfg = NULL;
    int rc = cfgval_validate(fields, NULL, kvs, n, &cfg, NULL, &errs);
    CHECK_MSG(rc == 0 && cfg, "refused: %s", errs.n ? errs.e[0].msg : "?");
    cfgval_errors_free(&errs);
    return cfg;
}

/* (k, v) plus the required url unless k is url itself. */
static size_t pair(struct cfg_kv *kvs, const char *k, const char *v)
{
    struct cfg_kv url = KV("url", "http://x"), kv = KV(k, v);
    size_t n = 0;
    if (strcmp(k, "url") != 0)
        kvs[n++] = url;
    kvs[n++] = kv;
    return n;
}

/* Validates (k, v), which must fail with exactly one error; returns its
 * message (valid until the next call). */
static const char *bad(const char *k, const char *v)
{
    static char msg[256];
    struct cfg_kv kvs[2];
    size_t n = pair(kvs, k, v);
    struct spoke_config *cfg = (struct spoke_config *)1;
    int rc = cfgval_validate(fields, NULL, kvs, n, &cfg, NULL, &errs);
    CHECK_MSG(rc == -1, "accepted %s=%s", k, v);
    CHECK(cfg == NULL);
    CHECK_MSG(errs.n == 1, "%s=%s: %zu errors", k, v, errs.n);
    msg[0] = '\0';
    if (errs.n >= 1) {
        snprintf(msg, sizeof(msg), "%s", errs.e[0].msg);
        CHECK_STR(errs.e[0].key, k);
        CHECK(errs.e[0].kv_index == (long)n - 1);
    }
    if (rc == 0)
        cfgval_free(cfg);
    cfgval_errors_free(&errs);
    return msg;
}

static int good(const char *k, const char *v)
{
    struct cfg_kv kvs[2];
    size_t n = pair(kvs, k, v);
    struct spoke_config *cfg = NULL;
    int rc = cfgval_validate(fields, NULL, kvs, n, &cfg, NULL, &errs);
    if (rc != 0)
        fprintf(stderr, "  %s=%s refused: %s\n", k, v, errs.n ? errs.e[0].msg : "?");
    cfgval_errors_free(&errs);
    cfgval_free(cfg);
    return rc == 0;
}

static void test_values_and_defaults(void)
{
    char *items[] = { "16107", "8004", NULL };
    struct cfg_kv kvs[] = {
        KV("url", "http://x"),
        KV("poll.interval.ms", "1500"),
        KV("offset", "-5"),
        KV("verbose", "TRUE"),
        KV("stations", "16107,8004"),
        KV("api.key", "correct-horse"),
        KV("big", "-9223372036854775808"),
        KV("scale", "1e-3"),
    };
    kvs[4].items = items;
    kvs[4].nitems = 2;
    kvs[4].is_list = 1;
    struct spoke_config *cfg = ok(kvs, sizeof(kvs) / sizeof(kvs[0]));
    if (!cfg)
        return;

    CHECK_STR(cfgval_string(cfg, "url"), "http://x");
    CHECK(cfgval_int(cfg, "poll.interval.ms") == 1500);
    CHECK(cfgval_double(cfg, "poll.interval.ms") == 1500.0);
    CHECK_STR(cfgval_string(cfg, "poll.interval.ms"), "1500");
    CHECK(cfgval_int(cfg, "offset") == -5);
    CHECK(cfgval_bool(cfg, "verbose") == 1);
    CHECK(cfgval_int(cfg, "big") == INT64_MIN);
    CHECK(cfgval_double(cfg, "scale") == 1e-3);
    CHECK_STR(cfgval_string(cfg, "api.key"), "correct-horse");

    const char *const *list = NULL;
    CHECK(cfgval_list(cfg, "stations", &list) == 2);
    CHECK(list && strcmp(list[0], "16107") == 0 && strcmp(list[1], "8004") == 0 && !list[2]);

    /* Defaults: applied, parsed like given values, and not "set". */
    CHECK(cfgval_is_set(cfg, "url") == 1);
    CHECK(cfgval_is_set(cfg, "ratio") == 0);
    CHECK(cfgval_double(cfg, "ratio") == 0.5);
    CHECK_STR(cfgval_string(cfg, "ratio"), "0.5");
    CHECK(cfgval_bool(cfg, "verbose") == 1);
    CHECK_STR(cfgval_string(cfg, "mode"), "fast");
    CHECK(cfgval_list(cfg, "tags", &list) == 3);
    CHECK(list && strcmp(list[0], "a") == 0 && strcmp(list[1], "b") == 0 &&
          strcmp(list[2], "c") == 0);
    CHECK_STR(cfgval_string(cfg, "tags"), "a,b,c");

    /* No value, no default: unset. */
    CHECK(cfgval_string(cfg, "count") == NULL);
    CHECK(cfgval_int(cfg, "count") == 0);
    CHECK(cfgval_string(cfg, "token") == NULL);
    CHECK(cfgval_is_set(cfg, "token") == 0);

    /* Undeclared keys: NULL / 0, never another key's value. */
    CHECK(cfgval_string(cfg, "nope") == NULL);
    CHECK(cfgval_int(cfg, "nope") == 0);
    CHECK(cfgval_double(cfg, "nope") == 0);
    CHECK(cfgval_bool(cfg, "nope") == 0);
    CHECK(cfgval_list(cfg, "nope", &list) == 0 && list && list[0] == NULL);
    CHECK(cfgval_string(cfg, "ur") == NULL);
    CHECK(cfgval_string(cfg, "url.") == NULL);
    CHECK(cfgval_is_set(cfg, "nope") == 0);
    /* Another type's getter gives 0, not garbage. */
    CHECK(cfgval_int(cfg, "url") == 0);
    CHECK(cfgval_bool(cfg, "poll.interval.ms") == 0);
    CHECK(cfgval_list(cfg, "url", &list) == 0);

    cfgval_free(cfg);
    cfgval_free(NULL);
}

/* The one error validating kvs gives ("" when accepted). */
static const char *refused(const struct cfg_kv *kvs, size_t n)
{
    static char msg[256];
    struct spoke_config *cfg = NULL;
    int rc = cfgval_validate(fields, NULL, kvs, n, &cfg, NULL, &errs);
    snprintf(msg, sizeof(msg), "%s", rc == -1 && errs.n == 1 ? errs.e[0].msg : "");
    CHECK(rc == -1 ? cfg == NULL : 1);
    cfgval_errors_free(&errs);
    cfgval_free(cfg);
    return msg;
}

static void test_lists(void)
{
    struct cfg_kv kvs[] = { KV("url", "u"), KV("stations", "  a ,\tb ,c\n") };
    struct spoke_config *cfg = ok(kvs, 2);
    const char *const *list = NULL;
    if (cfg) {
        CHECK(cfgval_list(cfg, "stations", &list) == 3);
        CHECK(list && strcmp(list[0], "a") == 0 && strcmp(list[1], "b") == 0 &&
              strcmp(list[2], "c") == 0);
        CHECK_STR(cfgval_string(cfg, "stations"), "a,b,c");
    }
    cfgval_free(cfg);

    kvs[1].value = "";
    cfg = ok(kvs, 2);
    if (cfg) {
        CHECK(cfgval_list(cfg, "stations", &list) == 0);
        CHECK_STR(cfgval_string(cfg, "stations"), "");
        CHECK(cfgval_is_set(cfg, "stations") == 1);
    }
    cfgval_free(cfg);
    kvs[1].value = " \t ";
    cfg = ok(kvs, 2);
    CHECK(cfg && cfgval_list(cfg, "stations", &list) == 0);
    cfgval_free(cfg);

    /* An empty item is a mistake, never dropped: every place of one. */
    static const char *const empties[] = { "a,,b", ",a", "a,", "a, ,b", "a, ", " ,", "," };
    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        kvs[1].value = (char *)empties[i];
        const char *why = refused(kvs, 2);
        CHECK_MSG(CONTAINS(why, "key 'stations': list item ") &&
                  CONTAINS(why, " is empty (two commas in a row, or a comma at the start or "
                           "the end)"), "%s: %s", empties[i], why);
    }

    /* A YAML sequence: items trimmed, as the text they are kept as would
     * be. An empty item, or one with a comma (the text would split it), is
     * refused, naming the item; a secret's item is not shown. */
    char *items[] = { "a", " c ", NULL };
    kvs[1].value = "a, c ";
    kvs[1].items = items;
    kvs[1].nitems = 2;
    kvs[1].is_list = 1;
    cfg = ok(kvs, 2);
    if (cfg) {
        CHECK(cfgval_list(cfg, "stations", &list) == 2);
        CHECK(list && strcmp(list[0], "a") == 0 && strcmp(list[1], "c") == 0);
        CHECK_STR(cfgval_string(cfg, "stations"), "a,c");
    }
    cfgval_free(cfg);
    {
        items[1] = "b,c";
        kvs[1].value = "a,b,c";
        const char *why = refused(kvs, 2);
        CHECK_MSG(strcmp(why, "key 'stations': list item 2 contains ',' ('b,c'): config "
                               "lists are comma-separated text; give each part as its own "
                               "item") == 0, "%s", why);
        items[1] = " ";
        kvs[1].value = "a, ";
        why = refused(kvs, 2);
        CHECK_MSG(strcmp(why, "key 'stations': list item 2 is empty") == 0, "%s", why);
        items[1] = " c ";
    }
    {
        static const struct spoke_config_field secret_list[] = {
            { "keys", SPOKE_CFG_LIST, NULL, SPOKE_CFG_SECRET, "Keys", 0, 0, NULL },
            { 0 }
        };
        char *sitems[] = { "k1", "sekrit,part", NULL };
        struct cfg_kv skv[] = { KV("keys", "k1,sekrit,part") };
        skv[0].items = sitems;
        skv[0].nitems = 2;
        skv[0].is_list = 1;
        struct spoke_config *c = NULL;
        int rc = cfgval_validate(secret_list, NULL, skv, 1, &c, NULL, &errs);
        CHECK_MSG(rc == -1 && errs.n == 1 &&
                  strcmp(errs.e[0].msg, "key 'keys': list item 2 contains ',': config lists "
                         "are comma-separated text; give each part as its own item") == 0,
                  "%s", errs.n ? errs.e[0].msg : "accepted");
        cfgval_errors_free(&errs);
        cfgval_free(c);
    }

    /* A sequence where a single value is declared. */
    kvs[1].key = "url";
    kvs[0].key = "mode";
    kvs[0].value = "fast";
    struct spoke_config *c = (struct spoke_config *)1;
    CHECK(cfgval_validate(fields, NULL, kvs, 2, &c, NULL, &errs) == -1);
    CHECK(errs.n == 1 && errs.e[0].kv_index == 1 && CONTAINS(errs.e[0].msg, "key 'url'") &&
          CONTAINS(errs.e[0].msg, "not a list"));
    cfgval_errors_free(&errs);
}

static void test_types(void)
{
    const char *m;

    m = bad("count", "abc");
    CHECK_MSG(strcmp(m, "key 'count': 'abc' is not a valid int (32-bit integer)") == 0, "%s", m);
    static const char *const not_int[] = { "1.5", " 5", "5 ", "0x10", "+", "-", "", "1e3",
                                           "2147483648", "-2147483649", "5a", "１" };
    for (size_t i = 0; i < sizeof(not_int) / sizeof(not_int[0]); i++) {
        m = bad("count", not_int[i]);
        CHECK_MSG(CONTAINS(m, "key 'count'") && CONTAINS(m, "int (32-bit integer)"),
                  "'%s': %s", not_int[i], m);
    }
    CHECK(good("count", "2147483647") && good("count", "-2147483648") && good("count", "+7") &&
          good("count", "007") && good("count", "-0"));

    m = bad("big", "9223372036854775808");
    CHECK_MSG(CONTAINS(m, "key 'big'") && CONTAINS(m, "long (64-bit integer)"), "%s", m);
    m = bad("big", "12 ");
    CHECK_MSG(CONTAINS(m, "long (64-bit integer)"), "%s", m);
    CHECK(good("big", "9223372036854775807"));

    static const char *const not_double[] = { "abc", "inf", "-inf", "nan", "1.5x", " 1", "",
                                              "1e999", "1,5" };
    for (size_t i = 0; i < sizeof(not_double) / sizeof(not_double[0]); i++) {
        m = bad("scale", not_double[i]);
        CHECK_MSG(CONTAINS(m, "key 'scale'") && CONTAINS(m, "double (finite number)"),
                  "'%s': %s", not_double[i], m);
    }
    CHECK(good("scale", "-1.25e10") && good("scale", "3") && good("scale", ".5"));

    static const char *const not_bool[] = { "yes", "1", "0", "on", "", "truee", " true" };
    for (size_t i = 0; i < sizeof(not_bool) / sizeof(not_bool[0]); i++) {
        m = bad("verbose", not_bool[i]);
        CHECK_MSG(CONTAINS(m, "key 'verbose'") && CONTAINS(m, "boolean (true or false)"),
                  "'%s': %s", not_bool[i], m);
    }
    CHECK(good("verbose", "False") && good("verbose", "tRuE"));

    CHECK(cfgval_parse_bool("true") == 1 && cfgval_parse_bool("FALSE") == 0 &&
          cfgval_parse_bool("yes") == -1 && cfgval_parse_bool("") == -1);

    /* Any text is a string. */
    CHECK(good("mode", "slow") && good("url", "tab\there"));
}

static void test_bounds(void)
{
    const char *m;

    m = bad("poll.interval.ms", "500");
    CHECK_MSG(strcmp(m, "key 'poll.interval.ms': 500 is below the minimum 1000") == 0, "%s", m);
    m = bad("poll.interval.ms", "3600001");
    CHECK_MSG(strcmp(m, "key 'poll.interval.ms': 3600001 is above the maximum 3600000") == 0,
              "%s", m);
    CHECK(good("poll.interval.ms", "1000") && good("poll.interval.ms", "3600000"));

    m = bad("offset", "5000000001");
    CHECK_MSG(CONTAINS(m, "key 'offset': 5000000001 is above the maximum 5000000000"), "%s", m);
    m = bad("offset", "-6");
    CHECK_MSG(CONTAINS(m, "key 'offset': -6 is below the minimum -5"), "%s", m);
    CHECK(good("offset", "5000000000"));

    m = bad("ratio", "1.5");
    CHECK_MSG(strcmp(m, "key 'ratio': 1.5 is above the maximum 1") == 0, "%s", m);
    m = bad("ratio", "-0.01");
    CHECK_MSG(CONTAINS(m, "key 'ratio': -0.01 is below the minimum 0"), "%s", m);
    CHECK(good("ratio", "0") && good("ratio", "1"));

    m = bad("url", "http://example.org/long");
    CHECK_MSG(strcmp(m, "key 'url': length 23 is above the maximum 20 bytes") == 0, "%s", m);
    m = bad("url", "");
    CHECK_MSG(strcmp(m, "key 'url': length 0 is below the minimum 1 bytes") == 0, "%s", m);
    /* Bytes, not characters. */
    m = bad("url", "ééééééééééé");
    CHECK_MSG(CONTAINS(m, "length 22"), "%s", m);

    m = bad("stations", "1,2,3,4");
    CHECK_MSG(strcmp(m, "key 'stations': item count 4 is above the maximum 3") == 0, "%s", m);
    CHECK(good("stations", "1,2,3") && good("stations", "1, 2, 3 "));

    m = bad("api.key", "short");
    CHECK_MSG(CONTAINS(m, "key 'api.key': length 5 is below the minimum 8"), "%s", m);
}

static void test_allowed(void)
{
    const char *m = bad("mode", "medium");
    CHECK_MSG(strcmp(m, "key 'mode': 'medium' is not one of: fast, slow") == 0, "%s", m);
    m = bad("mode", "FAST");
    CHECK_MSG(CONTAINS(m, "'FAST' is not one of"), "%s", m);

    /* The host's own table: the example of the spec. */
    struct cfg_kv kvs[] = { KV("connector.class", "x"), KV("errors.tolerance", "some") };
    struct spoke_config *cfg = (struct spoke_config *)1;
    CHECK(cfgval_validate(conncfg_fields, NULL, kvs, 2, &cfg, NULL, &errs) == -1);
    CHECK(cfg == NULL);
    CHECK(errs.n == 1);
    if (errs.n == 1)
        CHECK_STR(errs.e[0].msg, "key 'errors.tolerance': 'some' is not one of: none, all");
    cfgval_errors_free(&errs);
}

static void test_unknown_and_missing(void)
{
    const char *m;

    m = bad("pol.interval.ms", "5000");
    CHECK_MSG(strcmp(m, "unknown configuration key 'pol.interval.ms', did you mean "
                        "'poll.interval.ms'?") == 0, "%s", m);
    m = bad("ulr", "x");    /* a swap is one edit */
    CHECK_MSG(CONTAINS(m, "did you mean 'url'?"), "%s", m);
    m = bad("poll.interval.msxx", "1");
    CHECK_MSG(CONTAINS(m, "did you mean 'poll.interval.ms'?"), "%s", m);
    m = bad("poll.interval.msxxx", "1");
    CHECK_MSG(strcmp(m, "unknown configuration key 'poll.interval.msxxx'") == 0, "%s", m);
    m = bad("xyzzy", "1");
    CHECK_MSG(strcmp(m, "unknown configuration key 'xyzzy'") == 0, "%s", m);
    m = bad("URL", "x");
    CHECK_MSG(CONTAINS(m, "unknown configuration key 'URL'"), "%s", m);

    struct cfg_kv kvs[] = { KV("mode", "slow") };
    struct spoke_config *cfg = (struct spoke_config *)1;
    CHECK(cfgval_validate(fields, NULL, kvs, 1, &cfg, NULL, &errs) == -1);
    CHECK(cfg == NULL);
    CHECK(errs.n == 1);
    if (errs.n == 1) {
        CHECK_STR(errs.e[0].msg, "missing required configuration key 'url'");
        CHECK_STR(errs.e[0].key, "url");
        CHECK(errs.e[0].kv_index == -1);
    }
    cfgval_errors_free(&errs);

    /* A bad value of a required key is one error, not also "missing". */
    struct cfg_kv kvs2[] = { KV("url", "") };
    CHECK(cfgval_validate(fields, NULL, kvs2, 1, &cfg, NULL, &errs) == -1);
    CHECK_MSG(errs.n == 1 && CONTAINS(errs.e[0].msg, "length 0"), "%zu", errs.n);
    cfgval_errors_free(&errs);

    /* No table: every key is unknown. */
    CHECK(cfgval_validate(NULL, NULL, kvs, 1, &cfg, NULL, &errs) == -1);
    CHECK(errs.n == 1 && CONTAINS(errs.e[0].msg, "unknown configuration key 'mode'"));
    cfgval_errors_free(&errs);
    CHECK(cfgval_validate(NULL, NULL, NULL, 0, &cfg, NULL, &errs) == 0);
    CHECK(cfg && cfgval_count(cfg) == 0);
    cfgval_free(cfg);
}

static void test_duplicates(void)
{
    struct cfg_kv kvs[] = { KV("url", "a"), KV("mode", "fast"), KV("url", "b"), KV("url", "c") };
    struct spoke_config *cfg = (struct spoke_config *)1;
    CHECK(cfgval_validate(fields, NULL, kvs, 4, &cfg, NULL, &errs) == -1);
    CHECK(cfg == NULL);
    CHECK(errs.n == 2);
    if (errs.n == 2) {
        CHECK_STR(errs.e[0].msg, "duplicate configuration key 'url'");
        CHECK(errs.e[0].kv_index == 2);
        CHECK(errs.e[1].kv_index == 3);
    }
    cfgval_errors_free(&errs);
}

static void test_collects_all(void)
{
    struct cfg_kv kvs[] = {
        KV("url", "http://x"),
        KV("poll.interval.ms", "fast"),     /* 1: type */
        KV("mode", "slow"),
        KV("ratio", "2"),                   /* 3: bound */
        KV("colour", "red"),                /* 4: unknown */
    };
    struct spoke_config *cfg = (struct spoke_config *)1;
    CHECK(cfgval_validate(fields, NULL, kvs, 5, &cfg, NULL, &errs) == -1);
    CHECK(cfg == NULL);
    CHECK_MSG(errs.n == 3, "%zu errors", errs.n);
    if (errs.n == 3) {
        CHECK(errs.e[0].kv_index == 1 && strcmp(errs.e[0].key, "poll.interval.ms") == 0);
        CHECK(errs.e[1].kv_index == 3 && strcmp(errs.e[1].key, "ratio") == 0);
        CHECK(errs.e[2].kv_index == 4 && strcmp(errs.e[2].key, "colour") == 0);
    }
    cfgval_errors_free(&errs);

    /* Several problems plus a missing required key. */
    struct cfg_kv kvs2[] = { KV("count", "x"), KV("big", "y") };
    CHECK(cfgval_validate(fields, NULL, kvs2, 2, &cfg, NULL, &errs) == -1);
    CHECK(errs.n == 3 && errs.e[2].kv_index == -1 && CONTAINS(errs.e[2].msg, "'url'"));
    cfgval_errors_free(&errs);
    cfgval_errors_free(&errs);   /* twice is harmless */
}

static void test_two_tables(void)
{
    struct cfg_kv kvs[] = {
        KV("connector.class", "velib_source"),
        KV("url", "http://x"),
        KV("topic", "velib.status"),
        KV("poll.interval.ms", "2000"),
        KV("errors.tolerance", "all"),
    };
    struct spoke_config *host = NULL, *plug = NULL;
    CHECK(cfgval_validate(conncfg_fields, fields, kvs, 5, &host, &plug, &errs) == 0);
    CHECK(errs.n == 0);
    if (host && plug) {
        CHECK_STR(cfgval_string(host, "connector.class"), "velib_source");
        CHECK_STR(cfgval_string(host, "topic"), "velib.status");
        CHECK_STR(cfgval_string(host, "errors.tolerance"), "all");
        CHECK(cfgval_int(host, "tasks.max") == 1);                 /* host default */
        CHECK(cfgval_bool(host, "errors.log.enable") == 1);
        CHECK(cfgval_int(host, "errors.retry.delay.max.ms") == 60000);
        CHECK(cfgval_string(host, "url") == NULL);                 /* not the host's */
        CHECK_STR(cfgval_string(plug, "url"), "http://x");
        CHECK(cfgval_int(plug, "poll.interval.ms") == 2000);
        CHECK(cfgval_string(plug, "topic") == NULL);
        CHECK_STR(cfgval_string(plug, "mode"), "fast");           /* plugin default */
    }
    cfgval_free(host);
    cfgval_free(plug);
    cfgval_errors_free(&errs);

    /* Missing required keys of both tables; suggestions from either. */
    struct cfg_kv kvs2[] = { KV("tasks.mx", "1") };
    host = plug = (struct spoke_config *)1;
    CHECK(cfgval_validate(conncfg_fields, fields, kvs2, 1, &host, &plug, &errs) == -1);
    CHECK(host == NULL && plug == NULL);
    CHECK_MSG(errs.n == 3, "%zu", errs.n);
    if (errs.n == 3) {
        CHECK_STR(errs.e[0].msg, "unknown configuration key 'tasks.mx', did you mean 'tasks.max'?");
        CHECK_STR(errs.e[1].msg, "missing required configuration key 'connector.class'");
        CHECK_STR(errs.e[2].msg, "missing required configuration key 'url'");
    }
    cfgval_errors_free(&errs);
}

static void test_secrets(void)
{
    struct cfg_kv kvs[] = {
        KV("url", "http://x"),
        KV("api.key", "hunter2-hunter2"),
        KV("token", "slow"),
        KV("pin", "4321"),
    };
    struct spoke_config *cfg = ok(kvs, 4);
    if (cfg) {
        /* The plugin reads the real value; display masks it. */
        CHECK_STR(cfgval_string(cfg, "api.key"), "hunter2-hunter2");
        size_t n = cfgval_count(cfg);
        /* url, poll, ratio, verbose, mode, api.key, token, pin, tags */
        CHECK_MSG(n == 9, "%zu", n);
        int hidden = 0, seen_url = 0;
        for (size_t i = 0; i < n; i++) {
            const char *k = NULL, *v = NULL;
            CHECK(cfgval_at(cfg, i, &k, &v) == 0);
            if (!k || !v)
                continue;
            CHECK(!CONTAINS(v, "hunter2") && strcmp(v, "4321") != 0);
            if (strcmp(k, "api.key") == 0 || strcmp(k, "token") == 0 || strcmp(k, "pin") == 0) {
                CHECK_STR(v, "[hidden]");
                hidden++;
            }
            if (strcmp(k, "url") == 0) {
                CHECK_STR(v, "http://x");
                seen_url = 1;
            }
        }
        CHECK(hidden == 3 && seen_url);
        CHECK(cfgval_at(cfg, n, NULL, NULL) == -1);
    }
    cfgval_free(cfg);
    CHECK(cfgval_at(NULL, 0, NULL, NULL) == -1 && cfgval_count(NULL) == 0);

    /* No message ever shows a secret's value. */
    const char *m = bad("api.key", "hunt2");
    CHECK_MSG(CONTAINS(m, "key 'api.key'") && !CONTAINS(m, "hunt2"), "%s", m);
    m = bad("token", "sekrit-medium");
    CHECK_MSG(CONTAINS(m, "key 'token'") && CONTAINS(m, "not one of: fast, slow") &&
              !CONTAINS(m, "sekrit"), "%s", m);
    m = bad("pin", "123");
    CHECK_MSG(CONTAINS(m, "key 'pin'") && CONTAINS(m, "below the minimum 1000") &&
              !CONTAINS(m, "123"), "%s", m);
    m = bad("pin", "12ab34");
    CHECK_MSG(CONTAINS(m, "key 'pin'") && CONTAINS(m, "int (32-bit integer)") &&
              !CONTAINS(m, "12ab34"), "%s", m);
}

/* A field without bounds or allowed values. */
#define F(n, t, d, fl) { .name = (n), .type = (t), .default_value = (d), .flags = (fl), .doc = "" }

static void test_check_table(void)
{
    char err[256];
    CHECK(cfgval_check_table(fields, conncfg_fields, err, sizeof(err)) == 0);
    CHECK(cfgval_check_table(conncfg_fields, NULL, err, sizeof(err)) == 0);
    CHECK(cfgval_check_table(NULL, conncfg_fields, err, sizeof(err)) == 0);

    static const char *const ab[] = { "a", "b", NULL };
    static const char *const none[] = { NULL };
    struct {
        struct spoke_config_field f[3];
        const char *want;
    } cases[] = {
        { { F("topic", SPOKE_CFG_STRING, NULL, 0), { 0 } },
          "config key 'topic' is reserved by the host" },
        { { F("Bad", SPOKE_CFG_STRING, NULL, 0), { 0 } }, "config key 'Bad' has an invalid name" },
        { { F("a b", SPOKE_CFG_STRING, NULL, 0), { 0 } }, "config key 'a b' has an invalid name" },
        { { F(".x", SPOKE_CFG_STRING, NULL, 0), { 0 } }, "config key '.x' has an invalid name" },
        { { F("", SPOKE_CFG_STRING, NULL, 0), { 0 } }, "config key '' has an invalid name" },
        { { F("x", (enum spoke_cfg_type)0, NULL, 0), { 0 } }, "config key 'x' has an invalid type" },
        { { F("x", (enum spoke_cfg_type)8, NULL, 0), { 0 } }, "config key 'x' has an invalid type" },
        { { F("x", SPOKE_CFG_STRING, NULL, 0x10), { 0 } }, "config key 'x' has unknown flags" },
        { { F("x", SPOKE_CFG_STRING, "d", SPOKE_CFG_REQUIRED), { 0 } },
          "config key 'x' is required and has a default" },
        { { F("x", SPOKE_CFG_INT, "abc", 0), { 0 } },
          "config key 'x': invalid default: 'abc' is not a valid int (32-bit integer)" },
        { { { "x", SPOKE_CFG_INT, "5", 0, "", .min = 10, .max = 20 }, { 0 } },
          "config key 'x': invalid default: 5 is below the minimum 10" },
        { { F("x", SPOKE_CFG_BOOL, "yes", 0), { 0 } }, "config key 'x': invalid default" },
        { { { "x", SPOKE_CFG_STRING, "c", 0, "", .allowed = ab }, { 0 } },
          "config key 'x': invalid default: 'c' is not one of: a, b" },
        { { { "x", SPOKE_CFG_LIST, "a,b,c", 0, "", .max = 2 }, { 0 } },
          "config key 'x': invalid default: item count 3 is above the maximum 2" },
        { { { "x", SPOKE_CFG_INT, NULL, 0, "", .min = 10, .max = 5 }, { 0 } },
          "config key 'x': min 10 is above max 5" },
        { { { "x", SPOKE_CFG_INT, NULL, 0, "", .min = 1 }, { 0 } },
          "config key 'x': min 1 is above max 0" },
        { { { "x", SPOKE_CFG_STRING, NULL, 0, "", .allowed = none }, { 0 } },
          "config key 'x': the allowed list is empty" },
        { { F("x", SPOKE_CFG_STRING, NULL, 0), F("x", SPOKE_CFG_INT, NULL, 0), { 0 } },
          "config key 'x' is declared twice" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        int rc = cfgval_check_table(cases[i].f, conncfg_fields, err, sizeof(err));
        CHECK_MSG(rc == -1 && CONTAINS(err, cases[i].want), "case %zu: rc %d: %s", i, rc, err);
    }

    /* Longest valid name is 127 characters. */
    char name[130];
    memset(name, 'a', 127);
    name[127] = '\0';
    struct spoke_config_field t[2] = { F(name, SPOKE_CFG_STRING, NULL, 0), { 0 } };
    CHECK(cfgval_check_table(t, NULL, err, sizeof(err)) == 0);
    name[127] = 'a';
    name[128] = '\0';
    CHECK(cfgval_check_table(t, NULL, err, sizeof(err)) == -1);
    CHECK(CONTAINS(err, "invalid name"));
}

/* SPOKE_CFG_PREFIX: allow-listed pass-through properties. */
static const char *const kprops[] = { "linger.ms", "acks", "sasl.password", "ssl.ca.location", NULL };
static const struct spoke_config_field pfields[] = {
    { "topic.name", SPOKE_CFG_STRING, NULL, 0, "Topic" },
    { "kafka.", SPOKE_CFG_STRING, NULL, SPOKE_CFG_PREFIX, "librdkafka", .allowed = kprops },
    { "any.", SPOKE_CFG_STRING, NULL, SPOKE_CFG_PREFIX, "anything not denied" },
    { 0 }
};

static void test_prefix(void)
{
    char err[256];
    CHECK_MSG(cfgval_check_table(pfields, conncfg_fields, err, sizeof(err)) == 0, "%s", err);
    struct cfg_kv kvs[] = { KV("kafka.linger.ms", "5"), KV("topic.name", "t"), KV("kafka.acks", "all"),
                            KV("any.x.y", "1"), KV("kafka.sasl.password", "s3cret") };
    struct spoke_config *cfg = NULL;
    int rc = cfgval_validate(pfields, NULL, kvs, 5, &cfg, NULL, &errs);
    CHECK_MSG(rc == 0, "%s", errs.n ? errs.e[0].msg : "");
    const char *name = NULL, *value = NULL;
    CHECK(cfgval_prefixed(cfg, "kafka.", 0, &name, &value) == 3);
    CHECK_STR(name, "linger.ms");
    CHECK_STR(value, "5");
    CHECK(cfgval_prefixed(cfg, "kafka.", 1, &name, &value) == 3);
    CHECK_STR(name, "acks");
    CHECK(cfgval_prefixed(cfg, "any.", 0, &name, &value) == 1);
    CHECK_STR(name, "x.y");
    CHECK(cfgval_prefixed(cfg, "nope.", 0, &name, &value) == 0);
    /* Shown with the rest, secrets masked. */
    size_t n = cfgval_count(cfg), hidden = 0;
    CHECK(n == 5);
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        CHECK(cfgval_at(cfg, i, &k, &v) == 0);
        if (strcmp(k, "kafka.sasl.password") == 0)
            hidden += strcmp(v, "[hidden]") == 0;
    }
    CHECK(hidden == 1);
    CHECK(cfgval_key_secret(pfields, "kafka.sasl.password"));
    CHECK(!cfgval_key_secret(pfields, "kafka.acks"));
    cfgval_free(cfg);
    cfgval_errors_free(&errs);

    /* Not allow-listed; denied whatever the list says; bad names. */
    static const struct { const char *k; const char *want; } cases[] = {
        { "kafka.plugin.library.paths", "worker section" },
        { "kafka.ssl.ca.location", "worker section" },
        { "any.ssl.engine.location", "worker section" },
        { "any.sasl.kerberos.kinit.cmd", "worker section" },
        { "any.sasl.oauthbearer.token.endpoint.url", "worker section" },
        { "kafka.batch.size", "allow-list" },
        { "kafka.", "unknown configuration key" },
        { "any.X", "not a valid property" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cfg_kv kv[] = { KV(cases[i].k, "v") };
        cfg = NULL;
        rc = cfgval_validate(pfields, NULL, kv, 1, &cfg, NULL, &errs);
        CHECK_MSG(rc == -1 && errs.n == 1 && CONTAINS(errs.e[0].msg, cases[i].want),
                  "%s: %s", cases[i].k, errs.n ? errs.e[0].msg : "accepted");
        cfgval_errors_free(&errs);
        cfgval_free(cfg);
    }
    /* The worker table's kafka. prefix is trusted: anything goes. */
    struct cfg_kv wk[] = { KV("kafka.ssl.ca.location", "/etc/ca.pem"),
                           KV("kafka.plugin.library.paths", "x") };
    rc = cfgval_validate(conncfg_worker_fields, NULL, wk, 2, &cfg, NULL, &errs);
    CHECK_MSG(rc == 0, "%s", errs.n ? errs.e[0].msg : "");
    CHECK(cfgval_prefixed(cfg, "kafka.", 1, &name, &value) == 2);
    CHECK_STR(name, "plugin.library.paths");
    cfgval_free(cfg);
    cfgval_errors_free(&errs);

    /* A prefix field must be a plain optional STRING ending in '.'. */
    struct spoke_config_field badf[] = {
        { "kafka", SPOKE_CFG_STRING, NULL, SPOKE_CFG_PREFIX, "no dot" }, { 0 } };
    CHECK(cfgval_check_table(badf, NULL, err, sizeof(err)) == -1);
    CHECK(CONTAINS(err, "prefix field"));
}

int main(void)
{
    RUN(test_values_and_defaults);
    RUN(test_lists);
    RUN(test_types);
    RUN(test_bounds);
    RUN(test_allowed);
    RUN(test_unknown_and_missing);
    RUN(test_duplicates);
    RUN(test_collects_all);
    RUN(test_two_tables);
    RUN(test_secrets);
    RUN(test_check_table);
    RUN(test_prefix);
    return TEST_REPORT();
}
