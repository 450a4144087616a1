/* fuzz_json - libFuzzer harness for schema_mapper's JSON extractor.
 *
 * Input: bytes split at '\n' into records (at most MAX_RECORDS), each run
 * twice (the second time after the shape it taught), in order, after a
 * fixed Vélib'-like record (so that a record the fuzzer derived from one
 * like it meets the shape that record taught, and same-shaped records in
 * a row meet each other's). An input whose first
 * byte is EDITS is instead a list of edits of that fixed record, 4 bytes
 * each (operation, position high and low byte, byte: replace, insert or
 * delete): the edited record follows the original, so every such input
 * tests the shape match on a near copy, which random bytes seldom give.
 * Records go through these mappers:
 *
 *   - "shape": the extractor on a schema of scalar fields (nested objects,
 *     [n] and [?k] paths, every scalar type, a required field, a computed
 *     one), learning and matching record shapes;
 *   - "walk":  the same with shapes off (every record walked in full);
 *   - "full":  the extractor on that schema plus a wildcard list and a
 *     stringified object (records it reads teach no shape);
 *   - "simd":  json.parser simdjson (a DOM per record), and "walk2", the
 *     extractor, on the schema plus the wildcard list: the stringified
 *     field stays out of this pair (simdjson's DOM keeps no source text:
 *     such a record is read again with the extractor, so the pair would
 *     compare the extractor with itself).
 *
 * What must hold, besides no crash, leak or out-of-bounds access:
 *   1. shape and walk give the same result, byte for byte (the row as JSON,
 *      DROP, or the error message): the shape match is an optimization;
 *   2. the extractor never half-reads: when the validator alone
 *      (sm_json_validate, same depth) refuses the bytes, every extractor
 *      mapper fails with an "invalid JSON" message, and when it accepts
 *      them, none says "invalid JSON";
 *   3. the validator and simdjson accept the same documents, and a record
 *      both extractor and simdjson mappers accept maps to the same row;
 *      the one known difference is numbers simdjson cannot represent
 *      (integers beyond 64 bits, doubles beyond its range: RFC 8259 allows
 *      them, simdjson refuses them), which unit-schema_mapper_core pins
 *      down too.
 * A broken rule aborts with both results printed, so libFuzzer keeps the
 * input as a reproducer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../plugins/schema_mapper/schema_mapper_expr.c"
#include "../../plugins/schema_mapper/schema_mapper_json.c"
#include "../../plugins/schema_mapper/schema_mapper_map.c"
#include "../../plugins/schema_mapper/schema_mapper_schema.c"
#include "../../plugins/schema_mapper/schema_mapper_value.c"
#include "../../plugins/schema_mapper/schema_mapper_walk.c"

#include "buf.h"
#include "fuzz_edits.h"
#include "instance.h"
#include "record.h"

#define MAX_RECORDS 32
#define DEPTH 64

/* The fields a shape can carry: scalars into plain slots, through nested
 * objects, [n] and [?k]. */
static const char schema_scalars[] =
    "fields:\n"
    "  - {name: stationCode, type: string, required: true}\n"
    "  - {name: station_id, type: long}\n"
    "  - {name: mechanical, type: int, path: \"num_bikes_available_types[?mechanical]\"}\n"
    "  - {name: ebike, type: int, path: \"num_bikes_available_types[?ebike]\"}\n"
    "  - {name: bikes, type: int, path: num_bikes_available}\n"
    "  - {name: installed, type: bool, path: is_installed}\n"
    "  - {name: reported, type: timestamp, unit: s, path: last_reported}\n"
    "  - {name: lat, type: double, path: venue.lat}\n"
    "  - {name: when, type: timestamp, path: mtime}\n"
    "  - {name: second, type: long, path: \"arr[1]\"}\n"
    "  - {name: quoted, type: string, path: 'q[\"a.b\"]'}\n"
    "  - {name: total, type: long, expr: \"mechanical + ebike\"}\n";
/* Added for the other mappers: a wildcard list (records with one teach no
 * shape) and a stringified object. */
static const char wildcard[] =
    "  - {name: topics, type: list, path: \"group.group_topics[*].topic_name\"}\n";
static const char stringified[] = "  - {name: raw, type: string, path: o, stringify: true}\n";

static struct sm_mapper *shape, *walk, *full, *simd, *walk2;
static struct buf out[5];
static size_t shaped;  /* records the shape match took */

static struct sm_mapper *mapper(const char *schema_file, const char *parser)
{
    struct sm_opts o = { .schema_file = schema_file, .parser = parser, .max_depth = DEPTH,
                         .max_bytes = 1 << 20 };
    char err[512];
    struct sm_mapper *m = sm_mapper_new(&api_table, &o, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "fuzz_json: schema refused: %s\n", err);
        abort();
    }
    return m;
}

/* A mapper of schema_scalars plus the extra lines. The schema is read
 * from a memory file, so the fuzzer leaves nothing on disk. */
static struct sm_mapper *mapper_of(const char *parser, const char *extra1, const char *extra2)
{
    int fd = memfd_create("fuzz-json-schema", MFD_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "w+") : NULL;
    if (!f) {
        perror("fuzz_json: schema file");
        abort();
    }
    fputs(schema_scalars, f);
    fputs(extra1, f);
    fputs(extra2, f);
    fflush(f);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    struct sm_mapper *m = mapper(path, parser);
    fclose(f);
    return m;
}

static void report(void)
{
    fprintf(stderr, "fuzz_json: %zu records mapped by the shape-learning mapper while it held "
            "a shape\n", shaped);
}

static void setup(void)
{
    atexit(report);
    shape = mapper_of("extractor", "", "");
    walk = mapper_of("extractor", "", "");
    walk->shape.off = 1;
    full = mapper_of("extractor", wildcard, stringified);
    simd = mapper_of("simdjson", wildcard, "");
    walk2 = mapper_of("extractor", wildcard, "");
}

/* Maps one record; the result ("ROW <json>", "DROP" or "ERR <message>")
 * goes to b. Returns the status. */
static int map_one(struct sm_mapper *m, const char *p, size_t n, struct buf *b)
{
    char err[512];
    buf_reset(b);
    int rc = sm_map_bytes(m, p, n, NULL, err, sizeof(err));
    if (rc == SPOKE_DROP) {
        buf_puts(b, "DROP");
    } else if (rc != SPOKE_OK) {
        buf_puts(b, "ERR ");
        buf_puts(b, err);
    } else {
        struct spoke_row *row = sm_build_row(m);
        if (!row) {
            fprintf(stderr, "fuzz_json: no row built\n");
            abort();
        }
        buf_puts(b, "ROW ");
        rowjson_write(row, b);
        row_free(row);
    }
    return rc;
}

static void broken(const char *rule, const char *p, size_t n, const char *a, const char *b)
{
    fprintf(stderr, "fuzz_json: %s\n  record: %.*s\n  %s\n  %s\n", rule, (int)(n > 2000 ? 2000 : n),
            p, a, b ? b : "");
    abort();
}

/* Text of b, NUL-terminated. */
static const char *text(struct buf *b)
{
    buf_putc(b, '\0');
    b->len--;
    return b->p;
}

/* The known difference: a number simdjson cannot represent. */
static int number_range(const char *simd_result)
{
    return strstr(simd_result, "number") || strstr(simd_result, "NUMBER") ||
           strstr(simd_result, "BIGINT") || strstr(simd_result, "range");
}

static void one_record(const char *p, size_t n)
{
    char verr[512];
    int valid = sm_json_validate(p, n, DEPTH, verr, sizeof(verr)) == 0;
    int rs = map_one(shape, p, n, &out[0]);
    int rw = map_one(walk, p, n, &out[1]);
    int rf = map_one(full, p, n, &out[2]);
    int rj = map_one(simd, p, n, &out[3]);
    int r2 = map_one(walk2, p, n, &out[4]);
    const char *ts = text(&out[0]), *tw = text(&out[1]), *tf = text(&out[2]);
    const char *tj = text(&out[3]), *t2 = text(&out[4]);
    shaped += shape->shape.ok && rs == SPOKE_OK;
    if (rs != rw || strcmp(ts, tw) != 0)
        broken("shape match and full walk differ", p, n, ts, tw);
    const char *const tx[] = { tw, tf, t2 };
    const int rx[] = { rw, rf, r2 };
    for (int k = 0; k < 3; k++) {
        int says_invalid = strncmp(tx[k], "ERR invalid JSON", 16) == 0;
        if (!valid && (rx[k] == SPOKE_OK || rx[k] == SPOKE_DROP || !says_invalid))
            broken("the validator refuses what the extractor read", p, n, verr, tx[k]);
        if (valid && says_invalid)
            broken("the extractor refuses what the validator accepts", p, n, tx[k], NULL);
    }
    int simd_invalid = strncmp(tj, "ERR invalid JSON", 16) == 0;
    if (valid == simd_invalid && !(valid && number_range(tj)))
        broken(valid ? "simdjson refuses valid JSON" : "simdjson accepts invalid JSON", p, n,
               t2, tj);
    if (r2 == SPOKE_OK && rj == SPOKE_OK && strcmp(t2, tj) != 0)
        broken("extractor and simdjson map to different rows", p, n, t2, tj);
}

/* The record every input starts after: its shape is what a mutated record
 * of the same kind is matched against. */
static const char seed[] =
    "{\"station_id\":213688169,\"num_bikes_available\":1,\"numBikesAvailable\":1,"
    "\"num_bikes_available_types\":[{\"mechanical\":1},{\"ebike\":0}],"
    "\"num_docks_available\":6,\"is_installed\":1,\"is_returning\":1,\"is_renting\":1,"
    "\"last_reported\":1732001704,\"stationCode\":\"16107\"}";

#define EDITS 0xE0

/* The fixed record with the edits of e[0..n) applied. */
static size_t edited(const uint8_t *e, size_t n, char *doc, size_t cap)
{
    return fuzz_edit(seed, sizeof(seed) - 1, e, n, doc, cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!shape)
        setup();
    /* Each input from the same state, whatever the last one left: no
     * shape, and no cool-down after a record that taught none. */
    shape->shape.ok = 0;
    shape->shape.cool = 0;
    one_record(seed, sizeof(seed) - 1);
    if (size && data[0] == EDITS) {
        char doc[1024];
        size_t n = edited(data + 1, size - 1, doc, sizeof(doc));
        one_record(doc, n);
        one_record(doc, n);  /* now after its own shape, when it taught one */
        return 0;
    }
    const char *p = (const char *)data, *end = p + size;
    for (int k = 0; k < MAX_RECORDS && p <= end; k++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        one_record(p, (size_t)(e - p));
        one_record(p, (size_t)(e - p));  /* after its own shape, when it taught one */
        if (!nl)
            break;
        p = nl + 1;
    }
    return 0;
}
