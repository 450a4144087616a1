/* mockcluster - test helper: a librdkafka mock cluster (the real Kafka wire
 * protocol, rdkafka_mock.h) of N brokers on loopback, for the Kafka tests
 * and benchmarks, checked with kcat.
 *
 *   mockcluster [--brokers N] [--topic NAME:PARTITIONS]...
 *
 * Prints `MOCKCLUSTER bootstrap=<host:port,...>` on stdout, then reads
 * commands on stdin, one per line, and answers each with one line, `ok` or
 * `error: <why>`:
 *   create <topic> <partitions> [<replication>]   create a topic
 *   down <broker id>|all                          the broker(s) stop answering
 *   up <broker id>|all                            and come back
 *   rtt <broker id>|all <ms>                      add round-trip latency
 *   error <api key> <kafka error code> <count>    next <count> requests of that
 *                                                 API fail with that error
 *   quit                                          exit (so does EOF on stdin)
 * SIGTERM and SIGINT also stop it. Exit status 0.
 */
#include <errno.h>
#include <pthread.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int brokers_each(rd_kafka_mock_cluster_t *mc, int nbrokers, const char *which,
                        rd_kafka_resp_err_t (*fn)(rd_kafka_mock_cluster_t *, int32_t))
{
    if (strcmp(which, "all") == 0) {
        for (int b = 1; b <= nbrokers; b++)
            if (fn(mc, b))
                return -1;
        return 0;
    }
    char *end;
    long b = strtol(which, &end, 10);
    if (*end || b < 1 || b > nbrokers)
        return -1;
    return fn(mc, (int32_t)b) ? -1 : 0;
}

static int rtt_ms;
static rd_kafka_resp_err_t set_rtt(rd_kafka_mock_cluster_t *mc, int32_t b)
{
    return rd_kafka_mock_broker_set_rtt(mc, b, rtt_ms);
}

static void command(rd_kafka_mock_cluster_t *mc, int nbrokers, char *line)
{
    char *argv[8];
    int argc = 0;
    for (char *tok = strtok(line, " \t\r\n"); tok && argc < 8; tok = strtok(NULL, " \t\r\n"))
        argv[argc++] = tok;
    if (argc == 0)
        return;
    int rc = -1;
    if (strcmp(argv[0], "create") == 0 && (argc == 3 || argc == 4)) {
        int parts = atoi(argv[2]), repl = argc == 4 ? atoi(argv[3]) : 1;
        rc = parts > 0 && repl > 0 && repl <= nbrokers &&
                     rd_kafka_mock_topic_create(mc, argv[1], parts, repl) == 0 ? 0 : -1;
    } else if (strcmp(argv[0], "down") == 0 && argc == 2) {
        rc = brokers_each(mc, nbrokers, argv[1], rd_kafka_mock_broker_set_down);
    } else if (strcmp(argv[0], "up") == 0 && argc == 2) {
        rc = brokers_each(mc, nbrokers, argv[1], rd_kafka_mock_broker_set_up);
    } else if (strcmp(argv[0], "rtt") == 0 && argc == 3) {
        rtt_ms = atoi(argv[2]);
        rc = brokers_each(mc, nbrokers, argv[1], set_rtt);
    } else if (strcmp(argv[0], "error") == 0 && argc == 4) {
        int api = atoi(argv[1]), code = atoi(argv[2]), cnt = atoi(argv[3]);
        if (cnt > 0 && cnt <= 100000) {
            rd_kafka_resp_err_t *errs = malloc((size_t)cnt * sizeof(*errs));
            if (errs) {
                for (int i = 0; i < cnt; i++)
                    errs[i] = (rd_kafka_resp_err_t)code;
                rd_kafka_mock_push_request_errors_array(mc, (int16_t)api, (size_t)cnt, errs);
                free(errs);
                rc = 0;
            }
        }
    } else if (strcmp(argv[0], "quit") == 0) {
        kill(getpid(), SIGTERM);
        return;
    }
    printf(rc == 0 ? "ok\n" : "error: bad command or arguments\n");
    fflush(stdout);
}

struct reader {
    rd_kafka_mock_cluster_t *mc;
    int nbrokers;
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    char line[1024];
    while (fgets(line, sizeof(line), stdin))
        command(rd->mc, rd->nbrokers, line);
    kill(getpid(), SIGTERM); /* EOF: the test that drove us is gone */
    return NULL;
}

int main(int argc, char **argv)
{
    int nbrokers = 1;
    const char *topics[64];
    int ntopics = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc)
            nbrokers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc && ntopics < 64)
            topics[ntopics++] = argv[++i];
        else {
            fprintf(stderr, "usage: mockcluster [--brokers N] [--topic NAME:PARTITIONS]...\n");
            return 2;
        }
    }
    if (nbrokers < 1 || nbrokers > 16) {
        fprintf(stderr, "mockcluster: --brokers must be 1..16\n");
        return 2;
    }
    /* Block the stop signals in every thread (librdkafka's inherit the
     * mask); the main thread takes them with sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "mockcluster: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, nbrokers);
    if (!mc) {
        fprintf(stderr, "mockcluster: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    for (int i = 0; i < ntopics; i++) {
        char name[256];
        const char *colon = strrchr(topics[i], ':');
        int parts = colon ? atoi(colon + 1) : 1;
        size_t n = colon ? (size_t)(colon - topics[i]) : strlen(topics[i]);
        if (n == 0 || n >= sizeof(name) || parts < 1) {
            fprintf(stderr, "mockcluster: bad --topic '%s' (NAME:PARTITIONS)\n", topics[i]);
            return 2;
        }
        memcpy(name, topics[i], n);
        name[n] = '\0';
        rd_kafka_mock_topic_create(mc, name, parts, 1);
    }
    printf("MOCKCLUSTER bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    /* stdin commands on a thread of their own; the main thread waits for a
     * stop signal (EOF and `quit` raise one). */
    struct reader rd = { mc, nbrokers };
    pthread_t th;
    if (pthread_create(&th, NULL, reader_main, &rd) != 0) {
        fprintf(stderr, "mockcluster: cannot start the command reader\n");
        return 1;
    }
    pthread_detach(th);
    int sig;
    sigwait(&stop, &sig);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
