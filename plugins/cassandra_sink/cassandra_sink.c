/*
 * cassandra_sink - writes records as rows of a Cassandra table over the CQL
 * native protocol v4, spoken directly (cql_frame.c, cql_conn.c): prepared
 * INSERTs, UNLOGGED BATCHes, many requests pipelined on one connection.
 * This file: the descriptor, config and callbacks; the parts are listed in
 * cassandra_sink.h.
 *
 * Model. put() maps the record to the statement's bound variables (column
 * types from the PREPARED metadata, cql_types.c), appends the encoded row to
 * this cycle's buffer and groups rows into requests of batch.size rows (one
 * row: EXECUTE; more: BATCH UNLOGGED), sending full ones while it goes.
 * flush() sends the rest and waits for every response; only when all rows
 * are acknowledged by the server does it return SPOKE_OK, and only then does
 * the host acknowledge the records. A cycle's rows stay in memory until
 * then, so nothing is lost to a timeout, a lost connection or a restart of
 * the server: requests are resent.
 *
 * Failures.
 *  - A config that breaks a rule of its own (the syntax inside a value,
 *    keys that go together: cs_configure) is refused by check() before
 *    anything runs, at the key; init() applies the same code.
 *  - Transient (Unavailable, Write_timeout, Overloaded, Server_error,
 *    Is_bootstrapping, Truncate/Read errors, a lost connection, no response
 *    within request.timeout.ms): the request is resent after a backoff, at
 *    most `retries` times within one flush; then flush returns SPOKE_RETRY
 *    with the reason and the host calls it again later (the status shows
 *    `retrying`). No contact point reachable: the same, with "cannot connect
 *    to any contact point: ...".
 *  - Unprepared (0x2500): the statement is prepared again and the request
 *    resent.
 *  - Invalid (0x2200) or Function_failure: the server refused a row. A BATCH
 *    is refused whole, so its rows are resent one by one; each row refused
 *    alone is reported with api->sink_record_failed and takes the
 *    connector's error path with the server's code and message, while the
 *    others are written and acknowledged.
 *  - A record that cannot be converted (12.5 into an int column) fails in
 *    put() and takes the error path at once.
 *  - Permanent problems (bad credentials, a create.table the server refuses,
 *    a table that does not exist, a counter column): start() fails when it
 *    sees them; found later, put() accepts records without buffering them
 *    and flush() fails the connector with the server's message.
 *
 * Writes are idempotent upserts. By default every row carries its own write
 * timestamp (USING TIMESTAMP, strictly increasing microseconds), so a
 * request resent after a newer one cannot overwrite the newer row.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <spoke/plugin.h>

#include "cassandra_sink.h"
#include "problems.h"

static const char *const cs_consistency_allowed[] = {
    "any", "one", "two", "three", "quorum", "all", "local_quorum", "each_quorum", "local_one", NULL
};
static const char *const cs_compression_allowed[] = { "none", "lz4", NULL };
static const char *const cs_wts_allowed[] = { "client", "server", NULL };

static const struct spoke_config_field cs_config[] = {
    { .name = "contact.points", .type = SPOKE_CFG_LIST, .default_value = "127.0.0.1",
      .doc = "Cassandra nodes, host or host:port ([v6]:port); tried in turn, the next one when a "
             "node cannot be reached", .min = 1, .max = 64 },
    { .name = "port", .type = SPOKE_CFG_INT, .default_value = "9042",
      .doc = "CQL native protocol port of contact points given without one", .min = 1,
      .max = 65535 },
    { .name = "keyspace", .type = SPOKE_CFG_STRING, .flags = SPOKE_CFG_REQUIRED,
      .doc = "Keyspace of the table (case-sensitive when not all lowercase)", .min = 1, .max = 48 },
    { .name = "table", .type = SPOKE_CFG_STRING, .flags = SPOKE_CFG_REQUIRED,
      .doc = "Table the rows are written to (case-sensitive when not all lowercase)", .min = 1,
      .max = 48 },
    { .name = "mapping", .type = SPOKE_CFG_STRING,
      .doc = "Columns and their sources, e.g. id=key, temp=value.main.temp, seen=timestamp, "
             "uid=now(), src=header.origin (DataStax Kafka connector form); unset: each field of "
             "the value goes to the column of the same name", .min = 1, .max = 65536 },
    { .name = "ttl", .type = SPOKE_CFG_INT, .default_value = "0",
      .doc = "Time to live of the rows written, in seconds (USING TTL); 0: none", .min = 0,
      .max = 630720000 },
    { .name = "consistency", .type = SPOKE_CFG_STRING, .default_value = "local_quorum",
      .doc = "Consistency level of the writes", .allowed = cs_consistency_allowed },
    { .name = "username", .type = SPOKE_CFG_STRING,
      .doc = "User for PasswordAuthenticator (SASL PLAIN); needs password", .min = 1, .max = 256 },
    { .name = "password", .type = SPOKE_CFG_PASSWORD,
      .doc = "Password of username (secret: never logged, masked on output)", .min = 1,
      .max = 256 },
    { .name = "batch.size", .type = SPOKE_CFG_INT, .default_value = "32",
      .doc = "Rows per request: an UNLOGGED BATCH of prepared INSERTs; 1 sends each row as its "
             "own EXECUTE", .min = 1, .max = 65535 },
    { .name = "max.inflight", .type = SPOKE_CFG_INT, .default_value = "128",
      .doc = "Requests in flight at once on the connection (pipelined on stream ids)", .min = 1,
      .max = 32000 },
    { .name = "connect.timeout.ms", .type = SPOKE_CFG_LONG, .default_value = "5000",
      .doc = "Time limit (ms) to connect to one contact point and complete the handshake",
      .min = 1, .max = 600000 },
    { .name = "request.timeout.ms", .type = SPOKE_CFG_LONG, .default_value = "10000",
      .doc = "A request without a response after this long (ms) counts as a lost connection: "
             "it is closed and the requests in flight are resent", .min = 1, .max = 3600000 },
    { .name = "reconnect.backoff.ms", .type = SPOKE_CFG_LONG, .default_value = "100",
      .doc = "First wait (ms) before reconnecting or resending after a transient error; doubles "
             "each time", .min = 1, .max = 600000 },
    { .name = "reconnect.backoff.max.ms", .type = SPOKE_CFG_LONG, .default_value = "5000",
      .doc = "Longest wait (ms) between reconnection or resend attempts", .min = 1,
      .max = 3600000 },
    { .name = "retries", .type = SPOKE_CFG_INT, .default_value = "3",
      .doc = "Resends of a request (or reconnection rounds) within one flush before it returns "
             "retry to the host, which calls it again; rows are never dropped", .min = 0,
      .max = 1000 },
    { .name = "create.keyspace", .type = SPOKE_CFG_STRING,
      .doc = "Create the keyspace if it does not exist: replication options "
             "({'class': 'SimpleStrategy', 'replication_factor': 1}) or a whole CREATE KEYSPACE "
             "statement", .min = 1, .max = 65536 },
    { .name = "create.table", .type = SPOKE_CFG_STRING,
      .doc = "Create the table if it does not exist: its column definitions (id text PRIMARY KEY, "
             "temp int) or a whole CREATE TABLE statement", .min = 1, .max = 65536 },
    { .name = "null.unset", .type = SPOKE_CFG_BOOL, .default_value = "true",
      .doc = "A null or missing source leaves its column unset (no tombstone) instead of writing "
             "null" },
    { .name = "write.timestamp", .type = SPOKE_CFG_STRING, .default_value = "client",
      .doc = "client: each row carries its own strictly increasing write time (USING TIMESTAMP), "
             "so a resent request never overwrites a newer row; server: the coordinator's clock",
      .allowed = cs_wts_allowed },
    { .name = "buffer.max.bytes", .type = SPOKE_CFG_LONG, .default_value = "67108864",
      .doc = "Encoded rows held before put() waits for the server to acknowledge them (and "
             "returns retry while it cannot)", .min = 65536, .max = 1073741824 },
    { .name = "compression", .type = SPOKE_CFG_STRING, .default_value = "none",
      .doc = "lz4: compress every request body and accept compressed responses (the "
             "protocol's COMPRESSION lz4; the server must offer it); none: plain frames",
      .allowed = cs_compression_allowed },
    { .name = "ssl.enabled", .type = SPOKE_CFG_BOOL, .default_value = "false",
      .doc = "Connect with TLS (client_encryption_options on the server side); the server's "
             "certificate must chain to ssl.ca.pem (or to the system's trusted CAs) and name the "
             "contact point (a host name or an IP address)" },
    { .name = "ssl.ca.pem", .type = SPOKE_CFG_STRING,
      .doc = "The CA certificates to trust, as PEM text (a YAML block scalar, or "
             "${env:NAME}); unset: the system's trusted CAs", .min = 1, .max = 1048576 },
    { .name = "ssl.verify", .type = SPOKE_CFG_BOOL, .default_value = "true",
      .doc = "Verify the server's certificate chain and name; false encrypts without knowing "
             "who answers (logged as a warning)" },
    { .name = "ssl.crl.pem", .type = SPOKE_CFG_STRING,
      .doc = "Revocation lists (PEM text) from a CA of ssl.ca.pem; a server whose certificate "
             "they revoke is refused; needs ssl.ca.pem", .min = 1, .max = 16777216 },
    { .name = "ssl.certificate.pem", .type = SPOKE_CFG_STRING,
      .doc = "Client certificate (PEM text, the chain after it), for servers that require "
             "client authentication (require_client_auth); needs ssl.key.pem", .min = 1,
      .max = 1048576 },
    { .name = "ssl.key.pem", .type = SPOKE_CFG_PASSWORD,
      .doc = "Private key of ssl.certificate.pem, PEM text, unencrypted or encrypted (PKCS#8 or "
             "OpenSSL's) with ssl.key.password (secret: never logged, masked on output)",
      .min = 1, .max = 1048576 },
    { .name = "ssl.key.password", .type = SPOKE_CFG_PASSWORD,
      .doc = "Password of an encrypted ssl.key.pem (secret); required exactly when the key is "
             "encrypted", .min = 1, .max = 1024 },
    { 0 }
};

/* ------------------------------------------------------------------------ */
/* Callbacks                                                                 */
/* ------------------------------------------------------------------------ */

/* Splits "host", "host:port" or "[v6]:port". 0 or -1. */
static int parse_endpoint(const char *s, int defport, struct cql_endpoint *ep)
{
    const char *h = s, *colon;
    size_t hl;
    ep->port = defport;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL)
            return -1;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close[1] == ':' ? close + 1 : NULL;
        if (close[1] && !colon)
            return -1;
    } else {
        colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon)
            colon = NULL; /* a bare IPv6 address */
        hl = colon ? (size_t)(colon - s) : strlen(s);
    }
    if (hl == 0 || hl >= sizeof(ep->host))
        return -1;
    memcpy(ep->host, h, hl);
    ep->host[hl] = '\0';
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p < 1 || p > 65535)
            return -1;
        ep->port = (int)p;
    }
    return 0;
}

static int starts_with_word(const char *s, const char *word)
{
    while (isspace((unsigned char)*s))
        s++;
    return strncasecmp(s, word, strlen(word)) == 0 && isspace((unsigned char)s[strlen(word)]);
}

/* Cassandra's rule for keyspace and table names (letters, digits and _;
 * the length is the config table's 1..48): a name outside it can never be
 * created or found, even quoted. */
static int name_ok(const char *name)
{
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return 0;
    return *name != '\0';
}

/*
 * Reads the config into st (eps, create_ks, create_table and the mapping's
 * statement are allocated; cs_destroy releases them) and applies every rule
 * the config table cannot say: the syntax inside contact.points, keyspace,
 * table, create.keyspace and mapping, and username without password. No
 * I/O: cs_check runs it on a throwaway state, cs_init on its own, so the
 * rules live here only. SPOKE_OK; SPOKE_ERR_INVALID with every problem in
 * pr, each at its key; SPOKE_ERR_NOMEM with errstr set.
 */
static int cs_configure(struct cs_state *st, const struct spoke_config *cfg,
                        struct problems *pr, char *errstr, size_t errstr_size)
{
    const struct spoke_host_api *api = st->api;
    const char *const *items;
    const char *consistency, *mapping, *user, *pass, *cks, *ctab;
    char ks_id[120], tab_id[120], msg[SPOKE_ERRSTR_SIZE];
    int cl, names_ok = 1;
    size_t n;

    problems_init(pr);
    st->ks = api->config_string(cfg, "keyspace");
    st->table = api->config_string(cfg, "table");
    st->ttl = api->config_int(cfg, "ttl");
    st->batch_size = (int)api->config_int(cfg, "batch.size");
    st->max_inflight = (int)api->config_int(cfg, "max.inflight");
    st->connect_timeout_ms = api->config_int(cfg, "connect.timeout.ms");
    st->request_timeout_ms = api->config_int(cfg, "request.timeout.ms");
    st->backoff_ms = api->config_int(cfg, "reconnect.backoff.ms");
    st->backoff_max_ms = api->config_int(cfg, "reconnect.backoff.max.ms");
    st->retries = (int)api->config_int(cfg, "retries");
    st->null_unset = api->config_bool(cfg, "null.unset");
    st->client_ts = strcmp(api->config_string(cfg, "write.timestamp"), "client") == 0;
    st->buffer_max = (size_t)api->config_int(cfg, "buffer.max.bytes");
    if (st->backoff_max_ms < st->backoff_ms)
        problem(pr, "reconnect.backoff.ms", "reconnect.backoff.ms (%lld) is above "
                "reconnect.backoff.max.ms (%lld)", (long long)st->backoff_ms,
                (long long)st->backoff_max_ms);

    /* The table's allowed values are all levels the codec knows; this keeps
     * an unknown one from becoming 0xFFFF on the wire if they ever differ. */
    consistency = api->config_string(cfg, "consistency");
    cl = cql_consistency_parse(consistency);
    if (cl < 0)
        problem(pr, "consistency", "consistency: unknown level '%s'", consistency);
    st->consistency = (uint16_t)(cl < 0 ? 0 : cl);

    n = api->config_list(cfg, "contact.points", &items);
    st->eps = calloc(n ? n : 1, sizeof(*st->eps));
    if (st->eps == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        if (parse_endpoint(items[i], (int)api->config_int(cfg, "port"), &st->eps[i]) < 0)
            problem(pr, "contact.points", "contact.points: '%s' is not host, host:port or "
                    "[ipv6]:port", items[i]);
    st->neps = n;

    /* Only the names of the keys: the password's value is never written. */
    user = api->config_string(cfg, "username");
    pass = api->config_string(cfg, "password");
    if ((user == NULL) != (pass == NULL))
        problem(pr, user ? "username" : "password", "%s is set but %s is not",
                user ? "username" : "password", user ? "password" : "username");

    static const char *const name_keys[] = { "keyspace", "table" };
    const char *names[] = { st->ks, st->table };
    char *ids[] = { ks_id, tab_id };
    for (size_t i = 0; i < 2; i++) {
        if (!name_ok(names[i])) {
            problem(pr, name_keys[i], "%s: '%s' is not a valid name (letters, digits and _ "
                    "only, as Cassandra requires)", name_keys[i], names[i]);
            names_ok = 0;
        } else if (cql_ident(names[i], ids[i], sizeof(ks_id)) < 0) {
            problem(pr, name_keys[i], "keyspace or table name too long");
            names_ok = 0;
        }
    }
    /* The statements are built from the names once they are right. */
    cks = api->config_string(cfg, "create.keyspace");
    if (cks) {
        const char *p = cks;
        while (isspace((unsigned char)*p))
            p++;
        if (starts_with_word(p, "CREATE")) {
            if (!(st->create_ks = strdup(p)))
                goto nomem;
        } else if (*p != '{') {
            problem(pr, "create.keyspace", "create.keyspace: give replication options "
                    "({'class': 'SimpleStrategy', 'replication_factor': 1}) or a CREATE "
                    "KEYSPACE statement");
        } else if (names_ok) {
            size_t sz = strlen(p) + strlen(ks_id) + 64;
            if (!(st->create_ks = malloc(sz)))
                goto nomem;
            cql_textf(st->create_ks, sz, "CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s",
                      ks_id, p);
        }
    }
    ctab = api->config_string(cfg, "create.table");
    if (ctab) {
        const char *p = ctab;
        while (isspace((unsigned char)*p))
            p++;
        if (starts_with_word(p, "CREATE")) {
            if (!(st->create_table = strdup(p)))
                goto nomem;
        } else if (names_ok) {
            size_t sz = strlen(p) + strlen(ks_id) + strlen(tab_id) + 64;
            if (!(st->create_table = malloc(sz)))
                goto nomem;
            cql_textf(st->create_table, sz, "CREATE TABLE IF NOT EXISTS %s.%s (%s)", ks_id,
                      tab_id, p);
        }
    }

    mapping = api->config_string(cfg, "mapping");
    if (mapping) {
        struct cql_mapping m;
        if (cql_mapping_parse(mapping, &m, msg, sizeof(msg)) < 0) {
            problem(pr, "mapping", "%s", msg);
        } else if (problems_count(pr)) {
            cql_mapping_free(&m);
        } else {
            if (cs_stmt_add(st, &m) < 0) {
                cql_mapping_free(&m);
                goto nomem;
            }
            st->mapped = 1;
        }
    }
    /* TLS: its keys only with ssl.enabled, the client pair together, the
     * PEM texts parsed (the system trust store is loaded by init alone). */
    st->tls_opts = (struct cql_tls_opts){
        .pem = {
            .ca_pem = api->config_string(cfg, "ssl.ca.pem"),
            .crl_pem = api->config_string(cfg, "ssl.crl.pem"),
            .cert_pem = api->config_string(cfg, "ssl.certificate.pem"),
            .key_pem = api->config_string(cfg, "ssl.key.pem"),
            .key_password = api->config_string(cfg, "ssl.key.password"),
        },
        .verify = api->config_bool(cfg, "ssl.verify"),
    };
    st->tls_on = api->config_bool(cfg, "ssl.enabled");
    const char *comp = api->config_string(cfg, "compression");
    st->lz4 = comp && strcmp(comp, "lz4") == 0;
    static const char *const ssl_keys[] = { "ssl.ca.pem", "ssl.crl.pem", "ssl.certificate.pem",
                                            "ssl.key.pem", "ssl.key.password", NULL };
    for (size_t i = 0; !st->tls_on && ssl_keys[i]; i++)
        if (api->config_string(cfg, ssl_keys[i]))
            problem(pr, ssl_keys[i], "%s is used only with ssl.enabled: true", ssl_keys[i]);
    if (st->tls_on)
        cql_tls_check(&st->tls_opts, pr);
    return problems_count(pr) ? SPOKE_ERR_INVALID : SPOKE_OK;

nomem:
    cql_textf(errstr, errstr_size, "out of memory");
    return SPOKE_ERR_NOMEM;
}

static void cs_destroy(void *vst);

/* The rules of cs_configure, before anything runs: the same code on a
 * throwaway state, released before returning; every problem at its key. */
static int cs_check(const struct spoke_host_api *api, const struct spoke_config *cfg,
                    const char **key, char *errstr, size_t errstr_size)
{
    struct cs_state *st = calloc(1, sizeof(*st));
    struct problems pr;
    int rc;

    *key = NULL;
    if (st == NULL) {
        cql_textf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    st->api = api;
    rc = cs_configure(st, cfg, &pr, errstr, errstr_size);
    cs_destroy(st);
    if (rc == SPOKE_ERR_INVALID)
        return problems_report_api(&pr, api, cfg, key, errstr, errstr_size);
    return rc;
}

static int cs_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                   const struct spoke_config *cfg, void **out, char *errstr, size_t errstr_size)
{
    struct cs_state *st = calloc(1, sizeof(*st));
    const char *bad_key; /* the host ran cs_check already; init keeps the rules for itself */
    struct problems pr;
    int rc;

    if (st == NULL) {
        cql_textf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    st->api = api;
    st->inst = inst;
    if (!SPOKE_API_HAS(api, sink_record_failed)) {
        cql_textf(errstr, errstr_size, "the host is too old: cassandra_sink needs "
                  "sink_record_failed in the host API");
        free(st);
        return SPOKE_ERR_STATE;
    }
    rc = cs_configure(st, cfg, &pr, errstr, errstr_size);
    if (rc == SPOKE_ERR_INVALID)  /* joined: check_problem is for check() alone */
        problems_report_api(&pr, NULL, cfg, &bad_key, errstr, errstr_size);
    if (rc != SPOKE_OK) {
        cs_destroy(st);
        return rc;
    }
    cql_uuidgen_init(&st->uuidgen);

    if (st->tls_on) {
        if (!(st->tls = cql_tls_new(&st->tls_opts, errstr, errstr_size))) {
            cs_destroy(st);
            return SPOKE_ERR_INVALID;
        }
        if (!st->tls_opts.verify)
            api->log(inst, SPOKE_LOG_WARN, "ssl.verify is false: the connection is encrypted, "
                     "but the server's certificate is not checked (anyone in between can read "
                     "and change the traffic)");
    }
    struct cql_conn_opts co = {
        .eps = st->eps, .neps = st->neps, .connect_timeout_ms = st->connect_timeout_ms,
        .username = api->config_string(cfg, "username"),
        .password = api->config_string(cfg, "password"), .max_frame = 64u * 1024 * 1024,
        .max_streams = st->max_inflight + 8, .tls = st->tls,
        .lz4 = st->lz4,
    };
    st->conn = cql_conn_new(&co);
    if (st->conn == NULL) {
        cql_textf(errstr, errstr_size, "out of memory");
        cs_destroy(st);
        return SPOKE_ERR_NOMEM;
    }
    *out = st;
    return SPOKE_OK;
}

static int cs_start(void *vst, char *errstr, size_t errstr_size)
{
    struct cs_state *st = vst;
    int rc = cs_connect(st);
    if (rc == SPOKE_OK || rc == SPOKE_RETRY) {
        /* Unreachable now: put() and flush() keep trying (status: retrying). */
        cs_report_metrics(st);
        return SPOKE_OK;
    }
    cql_textf(errstr, errstr_size, "%s", st->fatal_msg);
    return rc;
}

static int cs_put(void *vst, const struct spoke_record *rec, char *errstr, size_t errstr_size)
{
    struct cs_state *st = vst;
    uint32_t k = 0;
    int rc;

    if (st->flush_failed) {
        cs_cycle_abandon(st);
        st->flush_failed = 0;
    }
    if (st->fatal)
        return SPOKE_OK; /* nothing is buffered; flush() fails the connector */
    if (st->mapped && !st->stmts[0].has_meta) {
        /* The column types come from the server: connect first. */
        rc = cs_connect(st);
        if (st->fatal)
            return SPOKE_OK;
        if (rc != SPOKE_OK || !st->stmts[0].has_meta) {
            cql_textf(errstr, errstr_size, "%s",
                      st->conn_err[0] ? st->conn_err : "not prepared yet");
            return SPOKE_RETRY;
        }
    }
    if (st->rowbuf.len >= st->buffer_max) {
        /* Bounded memory: make the server acknowledge what is held first. */
        if (cs_seal(st) < 0) {
            cql_textf(errstr, errstr_size, "out of memory");
            return SPOKE_ERR_NOMEM;
        }
        rc = cs_drive(st, errstr, errstr_size);
        cs_report_metrics(st);
        if (st->fatal)
            return SPOKE_OK;
        if (rc != SPOKE_OK)
            return SPOKE_RETRY;
        cs_cycle_reset(st);
    }
    if (!st->mapped) {
        rc = cs_stmt_for_record(st, rec, &k, errstr, errstr_size);
        if (st->fatal)
            return SPOKE_OK;
        if (rc != SPOKE_OK)
            return rc;
    }
    rc = cs_add_row(st, k, rec, errstr, errstr_size);
    if (rc != SPOKE_OK)
        return rc;
    if (st->nrows - st->open_first >= (size_t)st->batch_size) {
        if (cs_seal(st) < 0) {
            cql_textf(errstr, errstr_size, "out of memory");
            return SPOKE_ERR_NOMEM;
        }
        /* Send while the host reads more: the server works meanwhile. */
        if (cql_conn_is_open(st->conn))
            cs_turn(st, 0);
    }
    return SPOKE_OK;
}

static int cs_flush(void *vst, char *errstr, size_t errstr_size)
{
    struct cs_state *st = vst;
    int rc;

    if (st->fatal) {
        cql_textf(errstr, errstr_size, "%s", st->fatal_msg);
        st->flush_failed = 1;
        return st->fatal;
    }
    if (cs_seal(st) < 0) {
        cql_textf(errstr, errstr_size, "out of memory");
        st->flush_failed = 1;
        return SPOKE_RETRY;
    }
    rc = cs_drive(st, errstr, errstr_size);
    if (rc == SPOKE_OK) {
        cs_cycle_reset(st);
        st->flush_failed = 0;
    } else {
        st->flush_failed = 1;
    }
    cs_report_metrics(st);
    return rc;
}

static void cs_destroy(void *vst)
{
    struct cs_state *st = vst;
    if (st == NULL)
        return;
    cql_conn_free(st->conn);
    cql_tls_free(st->tls);
    for (size_t k = 0; k < st->nstmts; k++)
        cs_stmt_free(st->api, &st->stmts[k]);
    free(st->stmts);
    for (size_t i = 0; i < sizeof(st->shapes) / sizeof(st->shapes[0]); i++)
        if (st->shapes[i].schema)
            st->api->schema_unref(st->shapes[i].schema);
    free(st->rows);
    cql_buf_free(&st->rowbuf);
    cql_buf_free(&st->setup_reply);
    free(st->reqs);
    free(st->q);
    free(st->eps);
    free(st->create_ks);
    free(st->create_table);
    free(st);
}

static const struct spoke_plugin cassandra_sink = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "cassandra_sink",
    .kind        = SPOKE_KIND_SINK,
    .version     = "0.1.0",
    .description = "Writes rows to a Cassandra table over the CQL native protocol v4: prepared "
                   "INSERTs in pipelined UNLOGGED BATCHes, failover, retries, auth",
    .config      = cs_config,
    .init        = cs_init,
    .start       = cs_start,
    .put         = cs_put,
    .flush       = cs_flush,
    .destroy     = cs_destroy,
    .check       = cs_check,
};

/* The plugin's only exported symbol: returns the constant descriptor. */
SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void)
{
    return &cassandra_sink;
}
