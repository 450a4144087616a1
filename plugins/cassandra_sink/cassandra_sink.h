/*
 * cassandra_sink.h - internal interfaces between the parts of cassandra_sink
 * (not part of any ABI; nothing here crosses the plugin boundary).
 *
 *   cassandra_sink.c       descriptor, config (check), init/start/put/flush/destroy
 *   cassandra_sink_send.c  statements (PREPARE, metadata checks), requests
 *                          (batching, pipelining, resends, culprit search),
 *                          responses, connecting and setup, the flush loop
 *   cassandra_sink_rows.c  records to bound values: mapping sources, value
 *                          rows, JSON keys, headers, the no-mapping form
 *   cql_frame.c            protocol v4 codec       cql_conn.c     connection
 *   cql_types.c            CQL type binding        cql_mapping.c  `mapping`
 *
 * Everything runs on the connector's task thread (put and flush are never
 * concurrent), so the state needs no locks.
 */
#ifndef CASSANDRA_SINK_H
#define CASSANDRA_SINK_H

#include <stddef.h>
#include <stdint.h>

#include <spoke/plugin.h>

#include "cql_conn.h"
#include "cql_tls.h"
#include "cql_frame.h"
#include "cql_mapping.h"
#include "cql_types.h"

/* Most statements in the no-mapping form (one per distinct field list). */
#define CS_MAX_STMTS 64
/* Top-level field indexes remembered per record schema. */
#define CS_SCHEMA_CACHE 8
/* Frames buffered for writing before sending waits for the socket. */
#define CS_OUT_MAX (8u * 1024 * 1024)

#define TOKEN_PREPARE 0x80000000u   /* | statement index */
#define TOKEN_SETUP   0xC0000000u

enum stmt_state {
    S_NEW = 0,      /* never prepared */
    S_NEED,         /* prepared once; must be prepared again (new connection, Unprepared) */
    S_PREPARING,    /* a PREPARE is in flight */
    S_READY,
    S_FAILED        /* the server refused it (no-mapping form: records of that shape fail) */
};

struct cs_schema_slot {
    struct spoke_schema *schema;    /* referenced */
    int *idx;                       /* top-level field index per mapping column, -1 absent */
};

struct cs_stmt {
    struct cql_mapping map;
    char *cql;
    size_t cqllen;
    enum stmt_state state;
    uint8_t *id;
    uint16_t idlen;
    int has_meta;                   /* types below are known */
    uint8_t *meta_body;             /* owned copy of the first PREPARED body */
    struct cql_arena arena;
    struct cql_result meta;         /* slices point into meta_body */
    char *fail;                     /* S_FAILED: why */
    int prepare_failures;           /* transient failures in a row */
    struct cs_schema_slot slots[CS_SCHEMA_CACHE];
    unsigned next_slot;
};

struct cs_row {
    const struct spoke_record *rec; /* identity only, for sink_record_failed */
    uint32_t stmt;
    uint32_t off, len;              /* encoded values in rowbuf */
};

enum req_state { R_QUEUED = 0, R_INFLIGHT, R_DONE };

struct cs_req {
    uint32_t first, n;              /* rows */
    uint16_t attempts;              /* transient failures in this flush */
    uint8_t state;
    uint8_t unprepared;             /* Unprepared answers in a row */
};

struct cs_shape {
    struct spoke_schema *schema;    /* referenced */
    uint32_t stmt;
};

struct cs_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;

    /* config */
    const char *ks, *table;
    int64_t ttl;
    uint16_t consistency;
    int batch_size, max_inflight, retries, null_unset, client_ts, mapped;
    int64_t connect_timeout_ms, request_timeout_ms, backoff_ms, backoff_max_ms;
    size_t buffer_max;
    char *create_ks, *create_table;
    struct cql_endpoint *eps;
    size_t neps;
    int tls_on;                   /* ssl.enabled */
    int lz4;                      /* compression: lz4 */
    struct cql_tls_opts tls_opts; /* strings borrowed from the config */
    struct cql_tls *tls;          /* init's credentials when tls_on */

    /* connection */
    struct cql_conn *conn;
    int schema_done;
    int ever_connected;
    char conn_err[SPOKE_ERRSTR_SIZE];
    int outage_logged;
    char broken[SPOKE_ERRSTR_SIZE];  /* set by the dispatcher: close after the pump */

    /* statements */
    struct cs_stmt *stmts;
    size_t nstmts;
    struct cs_shape shapes[16];
    unsigned next_shape;

    /* the cycle: records put since the last successful flush */
    struct cs_row *rows;
    size_t nrows, caprows;
    struct cql_buf rowbuf;
    struct cs_req *reqs;
    size_t nreqs, capreqs;
    uint32_t *q;                     /* ring of queued request indexes */
    size_t qhead, qlen, qcap;
    size_t open_first;               /* first row not in a request yet */
    size_t pending;                  /* requests not done */
    int64_t gate_ms;                 /* no sending before (backoff) */
    int64_t next_age_check_ms;       /* next look for requests older than the timeout */
    size_t inflight_peak;            /* most requests in flight since the last report */
    int flush_failed;                /* the last flush did not return OK */

    int fatal;                       /* status of a permanent failure, 0 = none */
    char fatal_msg[SPOKE_ERRSTR_SIZE];
    int give_up;
    char give_up_msg[SPOKE_ERRSTR_SIZE];

    /* setup exchanges (schema creation) */
    int setup_waiting;
    uint8_t setup_op;
    struct cql_buf setup_reply;

    int64_t last_ts_us;
    struct cql_uuidgen uuidgen;
    int64_t last_warning_ms;

    /* metric deltas not reported yet */
    int64_t m_rows, m_batches, m_requests, m_retries, m_reprepares, m_rejected, m_connects;
    int64_t m_splits;
};

/* ---- cassandra_sink_send.c ---- */

/* Records a permanent failure (the first one wins) and logs it: flush()
 * returns status with the message from then on. */
void cs_set_fatal(struct cs_state *st, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reports the counters gathered since the last call, and the gauges. */
void cs_report_metrics(struct cs_state *st);
/* Adds a statement for a mapping (taken over: map is left empty). Its
 * index, or -1 on out-of-memory (map untouched then). */
int cs_stmt_add(struct cs_state *st, struct cql_mapping *map);
void cs_stmt_free(const struct spoke_host_api *api, struct cs_stmt *s);
/* Connects (one round over the contact points) and sets up: schema
 * creation once, every statement prepared. SPOKE_OK, SPOKE_RETRY
 * (st->conn_err says why) or the fatal status. */
int cs_connect(struct cs_state *st);
/* Puts the rows not in a request yet into requests of batch.size. 0 or -1. */
int cs_seal(struct cs_state *st);
/* One turn of the connection: send what may be sent, wait up to wait_ms
 * for responses and handle them, check the requests' age. Needs an open
 * connection. */
void cs_turn(struct cs_state *st, int wait_ms_);
/* Sends everything queued and waits until every request is answered:
 * SPOKE_OK, SPOKE_RETRY with errstr after `retries` failures of a request
 * (or of reconnecting) in this call, or the fatal status. */
int cs_drive(struct cs_state *st, char *errstr, size_t errstr_size);
/* Forgets the rows and requests of the cycle (after a successful flush). */
void cs_cycle_reset(struct cs_state *st);
/* The host gave up on the cycle: forget it, ignore answers still due. */
void cs_cycle_abandon(struct cs_state *st);
/* Prepares statement k (connected) and waits for the answer. SPOKE_OK
 * (ready or refused: see its state), SPOKE_RETRY (errstr) or fatal. */
int cs_wait_prepared(struct cs_state *st, uint32_t k, char *errstr, size_t errstr_size);

/* ---- cassandra_sink_rows.c ---- */

/* Encodes the record's values for statement k (types known) and adds the
 * row to the cycle. SPOKE_OK, or SPOKE_ERR_INVALID / SPOKE_ERR_NOMEM with
 * errstr naming the column and the value; nothing is added then. */
int cs_add_row(struct cs_state *st, uint32_t k, const struct spoke_record *rec, char *errstr,
               size_t errstr_size);
/* The no-mapping form: the statement for the record's field list, created
 * and prepared when new. SPOKE_OK with *k, SPOKE_RETRY, or an error for
 * this record. */
int cs_stmt_for_record(struct cs_state *st, const struct spoke_record *rec, uint32_t *k,
                       char *errstr, size_t errstr_size);

#endif
