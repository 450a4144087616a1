/*
 * peer_jansson.c - the aggregate of peer_python.py as a plain C program
 * using jansson, the kind of program issue 3 quotes beside python3 ("a C
 * program using jansson"): each line parsed into a jansson tree, the fields
 * read from it, the latest record of each station kept (table semantics),
 * then totals per postcode printed as NDJSON.
 *
 * With --snapshot it is the snapshot bench's C peer instead: it polls a
 * station_status URL with libcurl (one connection, kept alive, a poll every
 * INTERVAL ms), parses each body into a jansson tree, keeps every station
 * and writes the totals per postcode to /dev/null, and prints the time from
 * each poll's start to that output as "p50 P90 MAX" in milliseconds; with
 * --fetch-only it stops each poll's clock when the body has arrived: the
 * part of a poll no processing can save.
 *
 * usage: peer_jansson records.ndjson postcodes.csv
 *        peer_jansson --snapshot URL postcodes.csv POLLS INTERVAL [--fetch-only]
 * build: gcc -O2 peer_jansson.c $(pkg-config --cflags --libs jansson libcurl)
 *
 * The station table is a small open-addressing hash of its own: the work
 * measured is the parse and the field reads, not a dictionary.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static const char *unit = "line"; /* what die's number counts: "poll" with --snapshot */

static void die(const char *what, long long where)
{
    fprintf(stderr, "peer_jansson: %s %lld: %s\n", unit, where, what);
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

/* Keeps station object r (a record, or a snapshot's station): the latest
 * values of each station count. */
static void take(json_t *r, long long where)
{
    const char *code = json_string_value(json_object_get(r, "stationCode"));
    json_t *bikes = json_object_get(r, "num_bikes_available");
    json_t *types = json_object_get(r, "num_bikes_available_types");
    if (!code || strlen(code) >= CODE_MAX || !json_is_integer(bikes) || !json_is_array(types))
        die("unexpected record shape", where);
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
}

/* The totals per postcode of the stations kept, as NDJSON, sorted. */
static void print_totals(FILE *out)
{
    static struct total totals[SLOTS];
    static int slot_of[SLOTS]; /* posts[] index -> totals[] index + 1 */
    size_t nt = 0;
    memset(slot_of, 0, sizeof(slot_of));
    for (size_t i = 0; i < SLOTS; i++) {
        const struct station *s = &stations[i];
        if (!s->used || s->post < 0) /* the Spoke pipeline drops stations without a postcode */
            continue;
        const char *pc = posts[s->post].postcode;
        int k = slot_of[s->post] - 1;
        if (k < 0) { /* first station of this code: find its postcode's total */
            for (k = 0; k < (int)nt && strcmp(totals[k].postcode, pc) != 0; k++)
                ;
            if (k == (int)nt)
                totals[nt++] = (struct total){ .postcode = pc };
            slot_of[s->post] = k + 1;
        }
        totals[k].bikes += s->bikes;
        totals[k].mech += s->mech;
        totals[k].ebike += s->ebike;
    }
    qsort(totals, nt, sizeof(*totals), by_postcode);
    for (size_t k = 0; k < nt; k++)
        fprintf(out, "{\"postcode\": \"%s\", \"total_bikes_available\": %lld, "
                "\"total_mechanical_bikes\": %lld, \"total_electric_bikes\": %lld}\n",
                totals[k].postcode, totals[k].bikes, totals[k].mech, totals[k].ebike);
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

struct body {
    char *p;
    size_t n, cap;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct body *b = ud;
    size_t add = size * n;
    if (b->n + add > b->cap) { /* the first body sets the size: later ones fit */
        char *q = realloc(b->p, 2 * (b->n + add));
        if (!q)
            return 0; /* libcurl then fails the transfer, and the peer says so */
        b->p = q;
        b->cap = 2 * (b->n + add);
    }
    memcpy(b->p + b->n, p, add);
    b->n += add;
    return add;
}

static int by_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int snapshot(const char *url, long polls, long interval, int fetch_only)
{
    CURL *c = curl_easy_init();
    struct body b = { 0 };
    double *ms = calloc((size_t)polls, sizeof(*ms));
    FILE *out = fopen("/dev/null", "w");
    if (!c || !ms || !out)
        die("cannot set up", 0);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024); /* as Spoke's HTTP client */
    double next = now_ms();
    for (long i = 0; i <= polls; i++) { /* poll 0 connects and warms up, unmeasured */
        double t;
        while ((t = now_ms()) < next) {
            double left = next - t;
            struct timespec d = { (time_t)(left / 1e3), (long)((left - (long)(left / 1e3) * 1e3) * 1e6) };
            nanosleep(&d, NULL);
        }
        next = t + (double)interval;
        b.n = 0;
        CURLcode rc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK || status != 200)
            die(rc != CURLE_OK ? curl_easy_strerror(rc) : "HTTP status not 200", i);
        if (!fetch_only) {
            json_error_t e;
            json_t *doc = json_loadb(b.p, b.n, 0, &e);
            if (!doc)
                die(e.text, i);
            json_t *st = json_object_get(json_object_get(doc, "data"), "stations");
            size_t k;
            json_t *r;
            if (!json_is_array(st))
                die("no data.stations array", i);
            json_array_foreach(st, k, r)
                take(r, i);
            print_totals(out);
            fflush(out);
            json_decref(doc);
        }
        if (i > 0)
            ms[i - 1] = now_ms() - t;
    }
    qsort(ms, (size_t)polls, sizeof(*ms), by_double);
    printf("p50 %.3f p90 %.3f max %.3f\n", ms[polls / 2], ms[polls * 9 / 10], ms[polls - 1]);
    curl_easy_cleanup(c);
    fclose(out);
    free(ms);
    free(b.p);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 6 && strcmp(argv[1], "--snapshot") == 0) {
        long polls = atol(argv[4]), interval = atol(argv[5]);
        int fetch_only = argc == 7 && strcmp(argv[6], "--fetch-only") == 0;
        if (polls < 1 || interval < 0 || (argc == 7 && !fetch_only) || argc > 7) {
            fprintf(stderr, "peer_jansson: bad --snapshot arguments\n");
            return 2;
        }
        load_postcodes(argv[3]);
        unit = "poll";
        return snapshot(argv[2], polls, interval, fetch_only);
    }
    if (argc != 3) {
        fprintf(stderr, "usage: peer_jansson records.ndjson postcodes.csv\n"
                        "       peer_jansson --snapshot URL postcodes.csv POLLS INTERVAL "
                        "[--fetch-only]\n");
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
        take(r, lineno);
        json_decref(r);
    }
    free(line);
    fclose(in);
    print_totals(stdout);
    return 0;
}
