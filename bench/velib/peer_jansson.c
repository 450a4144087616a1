/*
 * peer_jansson.c - the aggregate of peer_python.py as a plain C program
 * using jansson, the kind of program issue 3 quotes beside python3 ("a C
 * program using jansson"): each line parsed into a jansson tree, the fields
 * read from it, the latest record of each station kept (table semantics),
 * then totals per postcode printed as NDJSON.
 *
 * usage: peer_jansson records.ndjson postcodes.csv
 * build: gcc -O2 peer_jansson.c $(pkg-config --cflags --libs jansson)
 *
 * The station table is a small open-addressing hash of its own: the work
 * measured is the parse and the field reads, not a dictionary.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 65536 /* power of two, well above the ~1,500 stations */
#define CODE_MAX 32

struct station {
    char code[CODE_MAX];
    int used;
    int post; /* index into posts[], -1 when the code has no postcode */
    long long bikes, mech, ebike;
};

struct post {
    char code[CODE_MAX];
    char postcode[CODE_MAX];
    int used;
};

static struct station stations[SLOTS];
static struct post posts[SLOTS];

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct post *post_slot(const char *code)
{
    uint32_t i = hash(code) & (SLOTS - 1);
    while (posts[i].used && strcmp(posts[i].code, code) != 0)
        i = (i + 1) & (SLOTS - 1);
    return &posts[i];
}

static struct station *station_slot(const char *code)
{
    uint32_t i = hash(code) & (SLOTS - 1);
    while (stations[i].used && strcmp(stations[i].code, code) != 0)
        i = (i + 1) & (SLOTS - 1);
    return &stations[i];
}

static void die(const char *what, long long line)
{
    fprintf(stderr, "peer_jansson: line %lld: %s\n", line, what);
    exit(1);
}

static void load_postcodes(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[256];
    if (!f || !fgets(line, sizeof(line), f)) /* header: stationCode,station_id,postcode,... */
        die("cannot read the postcode table", 0);
    while (fgets(line, sizeof(line), f)) {
        char *code = strtok(line, ",\r\n"), *id = strtok(NULL, ",\r\n");
        char *pc = strtok(NULL, ",\r\n");
        if (!code || !id || !pc || strlen(code) >= CODE_MAX || strlen(pc) >= CODE_MAX)
            continue;
        struct post *p = post_slot(code);
        p->used = 1;
        strcpy(p->code, code);
        strcpy(p->postcode, pc);
    }
    fclose(f);
}

struct total {
    const char *postcode;
    long long bikes, mech, ebike;
};

static int by_postcode(const void *a, const void *b)
{
    return strcmp(((const struct total *)a)->postcode, ((const struct total *)b)->postcode);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: peer_jansson records.ndjson postcodes.csv\n");
        return 2;
    }
    load_postcodes(argv[2]);
    FILE *in = fopen(argv[1], "r");
    if (!in)
        die("cannot open the records", 0);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long lineno = 0;
    while ((n = getline(&line, &cap, in)) > 0) {
        json_error_t e;
        lineno++;
        json_t *r = json_loadb(line, (size_t)n, 0, &e);
        if (!r)
            die(e.text, lineno);
        const char *code = json_string_value(json_object_get(r, "stationCode"));
        json_t *bikes = json_object_get(r, "num_bikes_available");
        json_t *types = json_object_get(r, "num_bikes_available_types");
        if (!code || strlen(code) >= CODE_MAX || !json_is_integer(bikes) || !json_is_array(types))
            die("unexpected record shape", lineno);
        long long mech = 0, ebike = 0;
        size_t i;
        json_t *t;
        json_array_foreach(types, i, t) {
            json_t *m = json_object_get(t, "mechanical"), *eb = json_object_get(t, "ebike");
            if (m)
                mech = json_integer_value(m);
            if (eb)
                ebike = json_integer_value(eb);
        }
        struct station *s = station_slot(code);
        if (!s->used) {
            struct post *p = post_slot(code);
            s->used = 1;
            strcpy(s->code, code);
            s->post = p->used ? (int)(p - posts) : -1;
        }
        s->bikes = json_integer_value(bikes);
        s->mech = mech;
        s->ebike = ebike;
        json_decref(r);
    }
    free(line);
    fclose(in);

    static struct total totals[SLOTS];
    size_t nt = 0;
    for (size_t i = 0; i < SLOTS; i++) {
        const struct station *s = &stations[i];
        if (!s->used || s->post < 0) /* the Spoke pipeline drops stations without a postcode */
            continue;
        const char *pc = posts[s->post].postcode;
        size_t k = 0;
        while (k < nt && strcmp(totals[k].postcode, pc) != 0)
            k++;
        if (k == nt)
            totals[nt++] = (struct total){ .postcode = pc };
        totals[k].bikes += s->bikes;
        totals[k].mech += s->mech;
        totals[k].ebike += s->ebike;
    }
    qsort(totals, nt, sizeof(*totals), by_postcode);
    for (size_t k = 0; k < nt; k++)
        printf("{\"postcode\": \"%s\", \"total_bikes_available\": %lld, "
               "\"total_mechanical_bikes\": %lld, \"total_electric_bikes\": %lld}\n",
               totals[k].postcode, totals[k].bikes, totals[k].mech, totals[k].ebike);
    return 0;
}
