/*
 * oai_request.c - one chat completion through rl/serve/openai_client.c, for
 * test/http/run.sh (built with ASan + UBSan against the glibc libcurl).
 *
 *   oai_request URL [--model M] [--prompt TEXT] [--system TEXT] [--max-tokens N]
 *               [--temperature T] [--seed S] [--stop S]... [--retries N]
 *               [--backoff-ms N] [--timeout-ms N] [--connect-timeout-ms N]
 *               [--api-key-env VAR]
 *   oai_request --url-of BASE      print the completions URL for a base URL
 *
 * Prints one JSON line: ok, content, finish_reason, stop_reason, attempts,
 * status, prompt_tokens, completion_tokens, error, elapsed_ms. Exit 0 when
 * the request succeeded, 1 when it failed, 2 on bad arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../rl/serve/openai_client.h"
#include "../../sandbox/base/json_writer.h"
#include "../../sandbox/base/util.h"

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--url-of")) {
        char *u = oai_completions_url(argv[2]);
        printf("%s\n", u ? u : "(bad)");
        free(u);
        return u ? 0 : 1;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: oai_request URL [options]\n");
        return 2;
    }
    struct oai_config cfg = {.base_url = argv[1], .max_retries = -1};
    struct oai_request rq = {.model = "m", .temperature = -1, .top_p = -1};
    const char *prompt = "hello", *system = NULL, *stop[4];
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return fprintf(stderr, "oai_request: %s needs a value\n", o), 2;
        i++;
        if (!strcmp(o, "--model")) rq.model = v;
        else if (!strcmp(o, "--prompt")) prompt = v;
        else if (!strcmp(o, "--system")) system = v;
        else if (!strcmp(o, "--max-tokens")) rq.max_tokens = atoi(v);
        else if (!strcmp(o, "--temperature")) rq.temperature = atof(v);
        else if (!strcmp(o, "--seed")) rq.has_seed = 1, rq.seed = strtoull(v, NULL, 10);
        else if (!strcmp(o, "--stop") && rq.n_stop < 4) stop[rq.n_stop++] = v;
        else if (!strcmp(o, "--retries")) cfg.max_retries = atoi(v);
        else if (!strcmp(o, "--backoff-ms")) cfg.backoff_ms = atol(v);
        else if (!strcmp(o, "--timeout-ms")) cfg.timeout_ms = atol(v);
        else if (!strcmp(o, "--connect-timeout-ms")) cfg.connect_timeout_ms = atol(v);
        else if (!strcmp(o, "--api-key-env")) cfg.api_key_env = v;
        else return fprintf(stderr, "oai_request: unknown option %s\n", o), 2;
    }
    rq.stop = stop;
    struct oai_message msgs[2];
    int n = 0;
    if (system) msgs[n++] = (struct oai_message){.role = "system", .content = system};
    msgs[n++] = (struct oai_message){.role = "user", .content = prompt};
    rq.messages = msgs, rq.n_messages = n;
    char err[1024] = "";
    struct oai_client *c = oai_client_new(&cfg, err, sizeof err);
    struct oai_response r = {0};
    double t0 = now_ms();
    int rc = c ? oai_chat(c, &rq, &r, err, sizeof err) : -1;
    double el = now_ms() - t0;
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "ok"), jw_bool(&w, rc == 0);
    jw_key(&w, "content"), rc == 0 ? jw_string(&w, r.content, r.len) : jw_null(&w);
    jw_key(&w, "finish_reason"), jw_cstring(&w, r.finish_reason);
    jw_key(&w, "stop_reason"), jw_cstring(&w, r.stop_reason);
    jw_key(&w, "attempts"), jw_int(&w, r.attempts);
    jw_key(&w, "status"), jw_int(&w, r.status);
    jw_key(&w, "prompt_tokens"), jw_int(&w, r.prompt_tokens);
    jw_key(&w, "completion_tokens"), jw_int(&w, r.completion_tokens);
    jw_key(&w, "error"), jw_cstring(&w, rc == 0 ? NULL : err);
    jw_key(&w, "elapsed_ms"), jw_int(&w, (long long)el);
    jw_object_end(&w);
    char *s = jw_finish(&w);
    printf("%s\n", s);
    free(s);
    oai_response_free(&r);
    oai_client_free(c);
    return rc == 0 ? 0 : 1;
}
