/* groupoffsets - test helper: the offsets of one Kafka topic, as one JSON
 * line, read with librdkafka (kcat cannot show a group's committed offsets).
 *
 *   groupoffsets -b <bootstrap> -t <topic> [-g <group>] [-T <timeout ms>]
 *
 * Prints {"topic": T, "partitions": {"<p>": {"low": L, "high": H,
 * "committed": C}, ...}}: the low and high watermarks of every partition
 * and, with -g, the group's committed offset (null when it has none).
 * Exit status 0, or 1 with the reason on stderr (unknown topic, brokers
 * unreachable within the timeout), 2 on bad usage.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr, "usage: groupoffsets -b <bootstrap> -t <topic> [-g <group>] "
            "[-T <timeout ms>]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *bootstrap = NULL, *topic = NULL, *group = NULL;
    int timeout = 10000;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "-b") == 0)
            bootstrap = argv[++i];
        else if (strcmp(argv[i], "-t") == 0)
            topic = argv[++i];
        else if (strcmp(argv[i], "-g") == 0)
            group = argv[++i];
        else if (strcmp(argv[i], "-T") == 0)
            timeout = atoi(argv[++i]);
        else
            usage();
    }
    if (!bootstrap || !topic || timeout <= 0)
        usage();

    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", err, sizeof(err)) ||
        (group && rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)))) {
        fprintf(stderr, "groupoffsets: %s\n", err);
        return 2;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "groupoffsets: %s\n", err);
        return 1;
    }
    int rc = 1;
    rd_kafka_topic_partition_list_t *l = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout);
    if (e) {
        fprintf(stderr, "groupoffsets: metadata: %s\n", rd_kafka_err2str(e));
        goto out;
    }
    if (md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "groupoffsets: topic '%s': %s\n", topic,
                md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "not found");
        goto out;
    }
    int n = md->topics[0].partition_cnt;
    l = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topic, md->topics[0].partitions[i].id);
    if (group && n > 0 && (e = rd_kafka_committed(rk, l, timeout))) {
        fprintf(stderr, "groupoffsets: committed offsets of group '%s': %s\n", group,
                rd_kafka_err2str(e));
        goto out;
    }
    printf("{\"topic\": \"%s\", \"partitions\": {", topic);
    for (int i = 0; i < l->cnt; i++) {
        rd_kafka_topic_partition_t *p = &l->elems[i];
        int64_t lo = -1, hi = -1;
        e = rd_kafka_query_watermark_offsets(rk, topic, p->partition, &lo, &hi, timeout);
        if (e) {
            fprintf(stderr, "\ngroupoffsets: watermarks of %s/%d: %s\n", topic,
                    (int)p->partition, rd_kafka_err2str(e));
            goto out;
        }
        printf("%s\"%d\": {\"low\": %lld, \"high\": %lld", i ? ", " : "", (int)p->partition,
               (long long)lo, (long long)hi);
        if (group) {
            if (p->err || p->offset < 0)
                printf(", \"committed\": null");
            else
                printf(", \"committed\": %lld", (long long)p->offset);
        }
        printf("}");
    }
    printf("}}\n");
    rc = 0;
out:
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return rc;
}
