/* unit-log: one event is one line of text, whatever the message holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "test.h"

int main(void)
{
    char s[] = "a\nb\r\tc\x1b[31md\x7f" "caf\xc3\xa9";
    log_one_line(s);
    CHECK_MSG(strcmp(s, "a b  c?[31md?caf\xc3\xa9") == 0, "got '%s'", s);

    /* Through the logger: a message with a line break, an escape and UTF-8
     * comes out as one line, the escape replaced, the UTF-8 kept. */
    char *out = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&out, &len);
    CHECK(fp != NULL);
    log_set_stream(fp);
    log_set_level(SPOKE_LOG_INFO);
    LOG_E("conn", "reason: %s", "first\nforged ERROR line\x1b[2J V\xc3\xa9lib");
    LOG_D("conn", "below the threshold");
    fflush(fp);
    CHECK_MSG(len > 0 && out[len - 1] == '\n' && memchr(out, '\n', len) == out + len - 1,
              "one line: '%s'", out);
    CHECK_MSG(strstr(out, "reason: first forged ERROR line?[2J V\xc3\xa9lib\n") != NULL,
              "got '%s'", out);
    CHECK_MSG(memchr(out, 0x1b, len) == NULL, "an escape reached the log: '%s'", out);
    log_set_stream(NULL);
    fclose(fp);
    free(out);
    return TEST_REPORT();
}
