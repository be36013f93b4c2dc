/*
 * cmd_serve.c - `viv serve`: a checkpoint as an OpenAI-compatible
 * chat-completions endpoint, so other agent frameworks can use a model
 * trained here.
 *
 *   viv serve --model DIR [--port 8000] [--host 127.0.0.1] [--threads N]
 *             [--max-tokens-cap 4096] [--max-body BYTES] [--name ID]
 *
 *   POST /v1/chat/completions   messages (system/developer, user, assistant,
 *                               tool), model (any name is accepted), max_tokens
 *                               (or max_completion_tokens), temperature, top_p,
 *                               stop (a string or up to 4), seed, n (1 only),
 *                               stream (+ stream_options.include_usage),
 *                               chat_template_kwargs.enable_thinking
 *   GET  /v1/models             the one model
 *   GET  /health
 * (the same without /v1 too). Errors are OpenAI's error object with the
 * status a client expects: 400 bad JSON / bad field, 404 path, 405 method,
 * 413 body over --max-body, 500 generation failed, 503 shutting down.
 *
 * The prompt is Qwen3's chat template (model/chat.h, thinking on unless
 * enable_thinking is false); generation is rl/serve/textgen.h on the CPU model, so
 * greedy output equals `viv gen`'s for the same prompt. The content is the
 * text as generated, <think> blocks included (no reasoning parser), up to a
 * stop: an end-of-sequence token, a stop string (reported as "stop_reason",
 * as vLLM does) or the token limit ("length").
 *
 * HTTP is GNU libmicrohttpd, a thread per connection. Generation is either
 * serialised by one mutex (the default: the CPU model already spreads one
 * generation over every core) or, with --batch N, continuously batched
 * (rl/serve/serve_batch.h): up to N requests decode together, one row each in a
 * single forward pass, which turns N matrix-vector products into one matrix
 * product. TLS is not built in: serve on localhost or behind a proxy that
 * terminates it.
 * SIGINT / SIGTERM cancel running generations and stop the server cleanly.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../model/chat.h"
#include "../../model/kernels.h"
#include "../../model/qwen3.h"
#include "../../model/tokenizer.h"
#include "../../sandbox/base/json_text.h"
#include "../../sandbox/base/json_writer.h"
#include "../../sandbox/base/util.h"
#include "http_cmds.h"
#include "serve_batch.h"
#include "serve_request.h"
#include "textgen.h"
#include "../../model/config.h"
#include "../../sandbox/base/args.h"

struct server {
    struct qwen3 *m;
    struct tokenizer *tok;
    struct textgen gen;
    char *name;
    long max_tokens_cap;
    size_t max_body;
    pthread_mutex_t lock;    /* one generation at a time (without --batch) */
    struct batcher *batch;   /* --batch N > 1: continuous batching (rl/serve/serve_batch.h) */
    int ctx;                 /* tokens a request may span (prompt + completion); 0: no limit */
    volatile int stopping;   /* SIGINT/SIGTERM: cancels generations */
    unsigned long requests;
};

/* ---- responses -------------------------------------------------------------------------- */

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, char *text) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* OpenAI's error object: {"error": {"message", "type", "param", "code"}}. */
static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *param, const char *code,
                                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *param, const char *code,
                                  const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "error");
    jw_object_begin(&w);
    jw_key(&w, "message"), jw_cstring(&w, msg);
    jw_key(&w, "type"), jw_cstring(&w, status >= 500 ? "server_error" : status == 404 ? "not_found_error"
                                                                                      : "invalid_request_error");
    jw_key(&w, "param"), jw_cstring(&w, param);
    jw_key(&w, "code"), jw_cstring(&w, code);
    jw_object_end(&w);
    jw_object_end(&w);
    fprintf(stderr, "viv serve: %u %s\n", status, msg);
    return send_json(conn, status, jw_finish(&w));
}

/* One generation: through the batcher, or alone under the lock. */
static int generate(struct server *s, const int32_t *ids, int n, const struct textgen_params *p, textgen_delta_fn on_delta,
                    void *user, struct textgen_result *r, char *err, size_t errlen) {
    if (s->batch) return batcher_run(s->batch, ids, n, p, on_delta, user, r, err, errlen);
    pthread_mutex_lock(&s->lock);
    int rc = textgen_run(&s->gen, ids, n, p, on_delta, user, r, err, errlen);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* ---- the answer's JSON ----------------------------------------------------------------------- */

static void make_id(char *out, size_t n, unsigned long seq) {
    static uint64_t salt;
    if (!salt) salt = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
    snprintf(out, n, "chatcmpl-%016llx", (unsigned long long)((salt + seq) * 0xBF58476D1CE4E5B9ull));
}

static void usage_json(struct json_writer *w, int prompt, int completion) {
    jw_key(w, "usage");
    jw_object_begin(w);
    jw_key(w, "prompt_tokens"), jw_int(w, prompt);
    jw_key(w, "completion_tokens"), jw_int(w, completion);
    jw_key(w, "total_tokens"), jw_int(w, prompt + completion);
    jw_object_end(w);
}

static void head_json(struct json_writer *w, const char *id, const char *object, long created, const char *model) {
    jw_object_begin(w);
    jw_key(w, "id"), jw_cstring(w, id);
    jw_key(w, "object"), jw_cstring(w, object);
    jw_key(w, "created"), jw_int(w, created);
    jw_key(w, "model"), jw_cstring(w, model);
}

static char *completion_json(const char *id, long created, const char *model, const struct textgen_result *r,
                             const struct creq *q) {
    struct json_writer w;
    jw_init(&w);
    head_json(&w, id, "chat.completion", created, model);
    jw_key(&w, "choices");
    jw_array_begin(&w);
    jw_object_begin(&w);
    jw_key(&w, "index"), jw_int(&w, 0);
    jw_key(&w, "message");
    jw_object_begin(&w);
    jw_key(&w, "role"), jw_cstring(&w, "assistant");
    jw_key(&w, "content"), jw_string(&w, r->text, r->len);
    jw_object_end(&w);
    jw_key(&w, "logprobs"), jw_null(&w);
    jw_key(&w, "finish_reason"), jw_cstring(&w, r->finish_reason);
    jw_key(&w, "stop_reason"), jw_cstring(&w, r->stop_index >= 0 ? q->stop[r->stop_index] : NULL);
    jw_object_end(&w);
    jw_array_end(&w);
    usage_json(&w, r->prompt_tokens, r->completion_tokens);
    jw_object_end(&w);
    return jw_finish(&w);
}

/* ---- streaming: a generator thread feeds SSE bytes to MHD's reader callback -------------- */

struct stream {
    struct server *s;
    struct creq q;
    int32_t *ids;
    int n_ids;
    char id[40];
    long created;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;               /* SSE bytes not yet taken by MHD */
    size_t len, off;
    int done;
    volatile int cancel;     /* the client went away */
};

static void stream_put(struct stream *st, const char *data, size_t n) {
    pthread_mutex_lock(&st->mu);
    st->buf = xrealloc(st->buf, st->len + n + 1);
    memcpy(st->buf + st->len, data, n);
    st->len += n;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

/* One "data: {chunk}\n\n" event; delta content (len bytes) or the finish. */
static void stream_chunk(struct stream *st, int role, const char *text, size_t len, const char *finish,
                         const char *stop_reason) {
    struct json_writer w;
    jw_init(&w);
    head_json(&w, st->id, "chat.completion.chunk", st->created, st->s->name);
    jw_key(&w, "choices");
    jw_array_begin(&w);
    jw_object_begin(&w);
    jw_key(&w, "index"), jw_int(&w, 0);
    jw_key(&w, "delta");
    jw_object_begin(&w);
    if (role) jw_key(&w, "role"), jw_cstring(&w, "assistant");
    if (text) jw_key(&w, "content"), jw_string(&w, text, len);
    jw_object_end(&w);
    jw_key(&w, "logprobs"), jw_null(&w);
    jw_key(&w, "finish_reason"), jw_cstring(&w, finish);
    if (finish) jw_key(&w, "stop_reason"), jw_cstring(&w, stop_reason);
    jw_object_end(&w);
    jw_array_end(&w);
    jw_object_end(&w);
    char *j = jw_finish(&w), *ev = xasprintf("data: %s\n\n", j);
    stream_put(st, ev, strlen(ev));
    free(j), free(ev);
}

static int on_stream_delta(const char *bytes, size_t len, void *user) {
    struct stream *st = user;
    stream_chunk(st, 0, bytes, len, NULL, NULL);
    return st->cancel || st->s->stopping;
}

static void *stream_main(void *arg) {
    struct stream *st = arg;
    struct server *s = st->s;
    stream_chunk(st, 1, "", 0, NULL, NULL);
    struct textgen_params p = {.max_tokens = (int)st->q.max_tokens, .temperature = (float)st->q.temperature,
                               .top_p = (float)st->q.top_p, .seed = st->q.seed, .stop = st->q.stop,
                               .n_stop = st->q.n_stop, .cancel = &st->cancel}; /* shutdown: on_stream_delta */
    struct textgen_result r;
    char err[512];
    double t0 = now_ms();
    int rc = generate(s, st->ids, st->n_ids, &p, on_stream_delta, st, &r, err, sizeof err);
    if (rc == 0) {
        stream_chunk(st, 0, NULL, 0, r.finish_reason, r.stop_index >= 0 ? st->q.stop[r.stop_index] : NULL);
        if (st->q.include_usage) {
            struct json_writer w;
            jw_init(&w);
            head_json(&w, st->id, "chat.completion.chunk", st->created, s->name);
            jw_key(&w, "choices"), jw_array_begin(&w), jw_array_end(&w);
            usage_json(&w, r.prompt_tokens, r.completion_tokens);
            jw_object_end(&w);
            char *j = jw_finish(&w), *ev = xasprintf("data: %s\n\n", j);
            stream_put(st, ev, strlen(ev));
            free(j), free(ev);
        }
        fprintf(stderr, "viv serve: 200 stream %d prompt + %d completion tokens (%s), %.2f s\n", r.prompt_tokens,
                r.completion_tokens, r.finish_reason, (now_ms() - t0) / 1000.0);
        textgen_result_free(&r);
    } else {
        struct json_writer w;
        jw_init(&w);
        jw_object_begin(&w);
        jw_key(&w, "error"), jw_object_begin(&w);
        jw_key(&w, "message"), jw_cstring(&w, err);
        jw_key(&w, "type"), jw_cstring(&w, "server_error");
        jw_object_end(&w), jw_object_end(&w);
        char *j = jw_finish(&w), *ev = xasprintf("data: %s\n\n", j);
        stream_put(st, ev, strlen(ev));
        free(j), free(ev);
        fprintf(stderr, "viv serve: stream failed: %s\n", err);
    }
    stream_put(st, "data: [DONE]\n\n", 14);
    pthread_mutex_lock(&st->mu);
    st->done = 1;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    struct stream *st = cls;
    pthread_mutex_lock(&st->mu);
    while (st->off == st->len && !st->done) pthread_cond_wait(&st->cv, &st->mu);
    ssize_t n;
    if (st->off == st->len) n = MHD_CONTENT_READER_END_OF_STREAM;
    else {
        size_t k = st->len - st->off < max ? st->len - st->off : max;
        memcpy(out, st->buf + st->off, k);
        st->off += k;
        if (st->off == st->len) st->off = st->len = 0;
        n = (ssize_t)k;
    }
    pthread_mutex_unlock(&st->mu);
    return n;
}

static void stream_free(void *cls) {
    struct stream *st = cls;
    st->cancel = 1;
    pthread_join(st->th, NULL);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    creq_free(&st->q);
    free(st->ids);
    free(st->buf);
    free(st);
}

/* ---- routing ------------------------------------------------------------------------------ */

struct conn {
    char *body;
    size_t len;
    int too_large;
};

static enum MHD_Result chat_completions(struct server *s, struct MHD_Connection *conn, struct conn *cc) {
    if (cc->too_large)
        return send_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "body_too_large",
                          "the request body is over the limit of %zu bytes", s->max_body);
    if (s->stopping) return send_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, NULL, "the server is shutting down");
    /* cJSON's strings end at \u0000, and the chat format keeps C strings:
     * a message holding one is refused rather than rendered cut short */
    if (cc->body && json_text_has_nul(cc->body, cc->len))
        return send_error(conn, MHD_HTTP_BAD_REQUEST, "messages", "invalid_value",
                          "a string of the request holds \\u0000 (NUL), which this server does not accept");
    cJSON *j = cc->body ? cJSON_ParseWithLength(cc->body, cc->len) : NULL;
    if (!j) return send_error(conn, MHD_HTTP_BAD_REQUEST, NULL, "invalid_json", "the body is not valid JSON");
    struct creq q;
    const char *param = NULL;
    char why[256];
    if (parse_creq(j, s->max_tokens_cap, &q, &param, why, sizeof why) != 0) {
        creq_free(&q);
        cJSON_Delete(j);
        return send_error(conn, MHD_HTTP_BAD_REQUEST, param, "invalid_value", "%s", why);
    }
    /* the prompt: Qwen3's chat template, tokenised piece by piece */
    struct chat c;
    chat_init(&c);
    if (chat_append_messages(&c, s->tok, q.msgs, q.n, 1, q.enable_thinking) != 0) {
        chat_free(&c);
        creq_free(&q);
        cJSON_Delete(j);
        return send_error(conn, MHD_HTTP_BAD_REQUEST, "messages", NULL, "the messages cannot be rendered");
    }
    int ctx = s->ctx;
    if (ctx > 0 && c.n >= ctx) {
        int n = c.n;
        chat_free(&c);
        creq_free(&q);
        cJSON_Delete(j);
        return send_error(conn, MHD_HTTP_BAD_REQUEST, "messages", "context_length_exceeded",
                          "the prompt has %d tokens; this model's context is %d", n, ctx);
    }
    char id[40];
    long created = (long)time(NULL);
    make_id(id, sizeof id, __atomic_add_fetch(&s->requests, 1, __ATOMIC_RELAXED));
    if (q.stream) {
        /* the stream outlives this call and j: it takes the prompt ids, the request's owned
         * strings and copies of the stop strings (which point into j) */
        struct stream *st = xcalloc(1, sizeof *st);
        st->s = s;
        st->created = created;
        snprintf(st->id, sizeof st->id, "%s", id);
        st->ids = c.ids, st->n_ids = c.n;
        c.ids = NULL;
        chat_free(&c);
        st->q = q;
        st->q.msgs = NULL;
        free(q.msgs);
        for (int i = 0; i < st->q.n_stop; i++) {
            char *copy = xstrdup(q.stop[i]);
            st->q.owned = xrealloc(st->q.owned, (size_t)(st->q.n_owned + 1) * sizeof *st->q.owned);
            st->q.owned[st->q.n_owned++] = copy;
            st->q.stop[i] = copy;
        }
        cJSON_Delete(j);
        pthread_mutex_init(&st->mu, NULL);
        pthread_cond_init(&st->cv, NULL);
        if (pthread_create(&st->th, NULL, stream_main, st) != 0) {
            pthread_mutex_destroy(&st->mu);
            pthread_cond_destroy(&st->cv);
            creq_free(&st->q);
            free(st->ids);
            free(st);
            return send_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, NULL, "cannot start a thread");
        }
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
    }
    struct textgen_params p = {.max_tokens = (int)q.max_tokens, .temperature = (float)q.temperature,
                               .top_p = (float)q.top_p, .seed = q.seed, .stop = q.stop, .n_stop = q.n_stop,
                               .cancel = &s->stopping};
    struct textgen_result r;
    char err[512];
    double t0 = now_ms();
    int rc = generate(s, c.ids, c.n, &p, NULL, NULL, &r, err, sizeof err);
    chat_free(&c);
    enum MHD_Result ret;
    if (rc != 0) ret = send_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, NULL, "generation failed: %s", err);
    else {
        fprintf(stderr, "viv serve: 200 %d prompt + %d completion tokens (%s), %.2f s\n", r.prompt_tokens,
                r.completion_tokens, r.finish_reason, (now_ms() - t0) / 1000.0);
        ret = send_json(conn, MHD_HTTP_OK, completion_json(id, created, s->name, &r, &q));
        textgen_result_free(&r);
    }
    creq_free(&q);
    cJSON_Delete(j);
    return ret;
}

static enum MHD_Result models(struct server *s, struct MHD_Connection *conn) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "object"), jw_cstring(&w, "list");
    jw_key(&w, "data");
    jw_array_begin(&w);
    jw_object_begin(&w);
    jw_key(&w, "id"), jw_cstring(&w, s->name);
    jw_key(&w, "object"), jw_cstring(&w, "model");
    jw_key(&w, "created"), jw_int(&w, (long long)time(NULL));
    jw_key(&w, "owned_by"), jw_cstring(&w, "vivarium");
    jw_key(&w, "max_model_len"), jw_int(&w, s->ctx);
    jw_object_end(&w);
    jw_array_end(&w);
    jw_object_end(&w);
    return send_json(conn, MHD_HTTP_OK, jw_finish(&w));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    struct server *s = cls;
    struct conn *cc = *con_cls;
    if (!cc) { /* first call: headers only */
        *con_cls = xcalloc(1, sizeof *cc);
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        if (!cc->too_large && cc->len + *upload_size <= s->max_body) {
            cc->body = xrealloc(cc->body, cc->len + *upload_size + 1);
            memcpy(cc->body + cc->len, upload, *upload_size);
            cc->len += *upload_size;
            cc->body[cc->len] = 0;
        } else {
            cc->too_large = 1; /* read and drop the rest, then answer 413 */
            free(cc->body);
            cc->body = NULL, cc->len = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    const char *path = !strncmp(url, "/v1/", 4) ? url + 3 : url;
    int is_post = !strcmp(method, "POST"), is_get = !strcmp(method, "GET");
    if (!strcmp(path, "/chat/completions")) {
        if (!is_post) return send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, NULL, NULL, "use POST for %s", url);
        return chat_completions(s, conn, cc);
    }
    if (!strcmp(path, "/models")) {
        if (!is_get) return send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, NULL, NULL, "use GET for %s", url);
        return models(s, conn);
    }
    if (!strcmp(url, "/health") && is_get) return send_json(conn, MHD_HTTP_OK, xstrdup("{\"status\":\"ok\"}"));
    return send_error(conn, MHD_HTTP_NOT_FOUND, NULL, "unknown_url", "no such endpoint: %.16s %.200s", method, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)conn, (void)toe;
    struct conn *cc = *con_cls;
    if (cc) free(cc->body);
    free(cc);
    *con_cls = NULL;
}

/* ---- the command ------------------------------------------------------------------------- */

/* What `viv serve`'s flags fill in. */
static struct {
    const char *model, *host, *name;
    long port, threads, cap, max_body, batch, batch_ctx;
} sa;

/* One line per flag; the help is generated from this table (sandbox/base/args.h). */
static const struct arg_opt serve_opts[] = {
    {"--model", ARG_STR, &sa.model, 0, 0, "DIR", "the checkpoint (config.json, safetensors, tokenizer.json), a run\n"
                                                 "directory or its checkpoints/ (the latest checkpoint); required"},
    {"--port", ARG_LONG, &sa.port, 0, 65535, "P", "TCP port (0: any free one; the address is printed) (default 8000)"},
    {"--host", ARG_STR, &sa.host, 0, 0, "ADDR", "numeric IPv4 or IPv6 address to listen on (default 127.0.0.1)"},
    {"--threads", ARG_LONG, &sa.threads, 1, 256, "N", "CPU threads of the model (default: all cores)"},
    {"--max-tokens-cap", ARG_LONG, &sa.cap, 1, 1 << 24, "N", "most tokens one request generates (default 4096)"},
    {"--max-body", ARG_LONG, &sa.max_body, 1024, 1073741824, "BYTES", "largest request body (default 8388608); larger gets 413"},
    {"--name", ARG_STR, &sa.name, 0, 0, "ID", "the model id clients see (default: the --model path's last part)"},
    {"--batch", ARG_LONG, &sa.batch, 1, 256, "N", "generate up to N requests together (continuous batching; default 1:\n"
                                                  "one at a time)"},
    {"--batch-context", ARG_LONG, &sa.batch_ctx, 16, 1 << 20, "T", "with --batch: tokens per request, prompt + completion (default: the\n"
                                                                   "model's context, at most 4096); the KV cache holds N x T positions"},
    {0},
};

static const struct arg_cmd serve_cmd = {
    .prog = "viv serve",
    .synopsis = "viv serve --model DIR [--port 8000] [--host 127.0.0.1] [options]",
    .about = "Serves a Qwen3 checkpoint as an OpenAI-compatible endpoint: POST /v1/chat/completions\n"
             "(stream too), GET /v1/models. HTTP has no TLS: serve on localhost or behind a proxy\n"
             "that terminates TLS. SIGINT/SIGTERM stop it (exit 0).\n",
    .opts = serve_opts,
    .examples = "  viv serve --model runs/viv-bio-tiny\n"
                "  viv serve --model runs/viv-bio-tiny --port 0 --batch 8 --name tiny\n",
};

static int serve_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int serve_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return args_error(&serve_cmd, "%s", msg);
}

static int serve_main(const char *model, const char *name);

int cmd_serve(int argc, char **argv) {
    sa = (typeof(sa)){.host = "127.0.0.1", .port = 8000, .cap = 4096, .max_body = 8 << 20, .batch = 1};
    int prc = args_parse(&serve_cmd, argc, argv, NULL);
    if (prc) return prc == ARGS_HELP ? 0 : 2;
    if (!sa.model) return serve_err("--model DIR is required");
    char err[512];
    char *dir = qwen3_model_dir_resolve(sa.model, err, sizeof err);
    if (!dir) {
        fprintf(stderr, "viv serve: --model: %s\n", err);
        return 2;
    }
    /* the id clients see is named after what the user gave, not after step-NNNNNN */
    char *copy = xstrdup(sa.model);
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') copy[--n] = 0;
    char *name = xstrdup(sa.name ? sa.name : basename(copy));
    int rc = serve_main(dir, name);
    free(copy), free(name), free(dir);
    return rc;
}

/* viv serve with the flags parsed and the model directory found */
static int serve_main(const char *model, const char *name) {
    const char *host = sa.host;
    long port = sa.port, threads = sa.threads, cap = sa.cap, max_body = sa.max_body, batch = sa.batch, batch_ctx = sa.batch_ctx;
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    int v6 = strchr(host, ':') != NULL;
    if (v6 ? inet_pton(AF_INET6, host, &a6.sin6_addr) != 1 : inet_pton(AF_INET, host, &a4.sin_addr) != 1)
        return serve_err("--host: '%s' is not a numeric IPv4 or IPv6 address", host);
    if (threads > 0) par_set_threads((int)threads);

    char err[512];
    struct server s = {.max_tokens_cap = cap, .max_body = (size_t)max_body};
    if (!(s.m = qwen3_load(model, err, sizeof err))) {
        fprintf(stderr, "viv serve: %s\n", err);
        return 1;
    }
    if (!(s.tok = tokenizer_load(model, err, sizeof err))) {
        fprintf(stderr, "viv serve: the model's tokenizer: %s\n", err);
        qwen3_free(s.m);
        return 1;
    }
    textgen_init(&s.gen, s.m, s.tok, model);
    s.ctx = s.m->cfg.max_position > 0 ? s.m->cfg.max_position : 0;
    if (batch > 1) {
        int T = batch_ctx ? (int)batch_ctx : s.ctx > 0 && s.ctx < 4096 ? s.ctx : 4096;
        if (s.ctx > 0 && T > s.ctx) T = s.ctx;
        if (!(s.batch = batcher_start(&s.gen, (int)batch, T, err, sizeof err))) {
            fprintf(stderr, "viv serve: --batch %ld: %s\n", batch, err);
            tokenizer_free(s.tok);
            qwen3_free(s.m);
            return 1;
        }
        s.ctx = T;
    }
    s.name = xstrdup(name);
    pthread_mutex_init(&s.lock, NULL);

    /* signals: blocked in every thread (MHD's inherit the mask), taken by sigwait below */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | (v6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, &s, MHD_OPTION_SOCK_ADDR,
        v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, 256u, MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
    int rc = 0;
    if (!d) {
        fprintf(stderr, "viv serve: cannot listen on %s port %ld (in use, or not an address of this machine?)\n",
                host, port);
        rc = 1;
    } else {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        long bound = info ? (long)info->port : port;
        char how[96];
        if (s.batch) snprintf(how, sizeof how, "batches of up to %ld requests x %d tokens", batch, s.ctx);
        else snprintf(how, sizeof how, "one request at a time");
        fprintf(stderr, "viv serve: model %s (%s: %d layers, width %d, vocab %d) on http://%s%s%s:%ld/v1 "
                        "(%s, %d threads)\n",
                s.name, model, s.m->cfg.num_layers, s.m->cfg.hidden_size, s.m->cfg.vocab_size, v6 ? "[" : "", host,
                v6 ? "]" : "", bound, how, par_threads());
        printf("listening on http://%s%s%s:%ld\n", v6 ? "[" : "", host, v6 ? "]" : "", bound);
        fflush(stdout);
        int sig = 0;
        sigwait(&sigs, &sig);
        fprintf(stderr, "viv serve: %s: stopping\n", strsignal(sig));
        s.stopping = 1;
        MHD_stop_daemon(d); /* waits for the connections; the batcher keeps serving them (cancelled) */
    }
    if (s.batch) {
        long steps, rows;
        int most;
        batcher_stats(s.batch, &steps, &rows, &most);
        fprintf(stderr, "viv serve: %ld batched decode steps, %.2f requests per step on average, %d at most\n", steps,
                steps ? (double)rows / (double)steps : 0.0, most);
    }
    batcher_stop(s.batch);
    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
    pthread_mutex_destroy(&s.lock);
    free(s.name);
    tokenizer_free(s.tok);
    qwen3_free(s.m);
    return rc;
}
