/*
 * fuzz_mcp.c - libFuzzer target for `viv mcp`'s JSON-RPC handling
 * (envs/mcp.c, mcp_reply): each input is one line from an MCP client.
 * Nothing may crash, leak, read out of bounds or hang, and a reply, when
 * one is due, must be one JSON text.
 *
 * Tool calls really go out: a stand-in vivd on a thread answers each
 * request line on the Unix socket, its `policies` with its four tools and
 * everything else with the next of a few answers vivd can give (a job with
 * NUL and invalid UTF-8 in its output, a timeout, a signal, busy, a session
 * opened, session_lost), so the replies built from vivd's answers are
 * fuzzed too.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../envs/mcp.h"
#include "../../sandbox/client/client.h"

static const char policies_answer[] =
    "\"ok\":true,\"policies\":["
    "{\"name\":\"python\",\"description\":\"Python.\",\"timeout_ms\":10000,\"timeout_ms_max\":600000,\"memory_mb\":2048,"
    "\"output_bytes\":1048576,\"code_bytes\":1048576},"
    "{\"name\":\"shell\",\"description\":\"sh\",\"timeout_ms\":10000,\"timeout_ms_max\":600000,\"memory_mb\":1024,"
    "\"output_bytes\":1048576,\"code_bytes\":1048576},"
    "{\"name\":\"r\",\"description\":\"R.\",\"timeout_ms\":10000,\"timeout_ms_max\":600000,\"memory_mb\":2048,"
    "\"output_bytes\":1048576,\"code_bytes\":1048576},"
    "{\"name\":\"sql\",\"description\":\"\",\"timeout_ms\":5000,\"timeout_ms_max\":60000,\"memory_mb\":512,"
    "\"output_bytes\":65536,\"code_bytes\":65536}]";

static const char *const answers[] = {
    "\"ok\":true,\"exit_code\":0,\"signal\":0,\"timed_out\":false,\"stdout\":\"a\\u0000b\\ufffd\\n\",\"stderr\":\"\","
    "\"stdout_dropped\":0,\"stderr_dropped\":0,\"wall_ms\":1.5",
    "\"ok\":true,\"exit_code\":null,\"signal\":9,\"timed_out\":true,\"stdout\":\"\",\"stderr\":\"late\","
    "\"stdout_dropped\":7,\"stderr_dropped\":0,\"session_lost\":true",
    "\"ok\":true,\"exit_code\":null,\"signal\":11,\"timed_out\":false,\"stdout\":\"\",\"stderr\":\"\"",
    "\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"queue full\"}",
    "\"ok\":true,\"session\":\"s-0123456789abcdef0123456789abcdef\"",
    "\"ok\":false,\"error\":{\"code\":\"session_lost\",\"message\":\"expired\"}",
    "\"ok\":true,\"exit_code\":3,\"cpu_exceeded\":true,\"stdout\":\"x\",\"stderr\":\"y\"",
};

static void answer_connection(int fd) {
    FILE *in = fdopen(fd, "r");
    char *line = NULL;
    size_t cap = 0;
    unsigned k = 0;
    for (ssize_t n; in && (n = getline(&line, &cap, in)) > 0;) {
        cJSON *req = cJSON_ParseWithLength(line, (size_t)n);
        char *id = cJSON_PrintUnformatted(cJSON_GetObjectItem(req, "id"));
        const char *op = cJSON_GetStringValue(cJSON_GetObjectItem(req, "op"));
        const char *body = op && !strcmp(op, "policies") ? policies_answer : answers[k++ % (sizeof answers / sizeof answers[0])];
        char *out = NULL;
        int len = asprintf(&out, "{\"id\":%s,%s}\n", id ? id : "null", body);
        if (len > 0 && write(fd, out, (size_t)len) != len) len = -1;
        free(out), free(id);
        cJSON_Delete(req);
        if (len < 0) break;
    }
    free(line);
    if (in) fclose(in);
}

static void *stand_in_vivd(void *arg) {
    int lfd = (int)(intptr_t)arg;
    for (int fd; (fd = accept(lfd, NULL, NULL)) >= 0;) answer_connection(fd);
    return NULL;
}

static struct mcp *server(void) {
    static struct mcp *m;
    if (m) return m;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "/tmp/fuzz-mcp-%d.sock", (int)getpid());
    unlink(sa.sun_path);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4)) abort();
    pthread_t t;
    if (pthread_create(&t, NULL, stand_in_vivd, (void *)(intptr_t)lfd)) abort();
    char err[256];
    struct viv_client *c = viv_connect(sa.sun_path, err, sizeof err);
    unlink(sa.sun_path);
    if (!c || !(m = mcp_new(c, "/data/db.sqlite", err, sizeof err))) {
        fprintf(stderr, "fuzz_mcp: %s\n", err);
        abort();
    }
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct mcp *m = server();
    char *line = malloc(size + 1);
    memcpy(line, data, size);
    line[size] = 0;
    char *reply = mcp_reply(m, size % 2 == 0, line, size);
    if (reply) {
        cJSON *r = cJSON_Parse(reply);
        if (!r) {
            fprintf(stderr, "fuzz_mcp: a reply that is not JSON: %s\n", reply);
            abort();
        }
        cJSON_Delete(r);
    }
    free(reply);
    free(line);
    return 0;
}
