/* openai_client.c - see openai_client.h. */
#define _GNU_SOURCE
#include "openai_client.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../../sandbox/base/json_text.h"
#include "../../sandbox/base/json_writer.h"
#include "../../sandbox/base/util.h"

#define MAX_BODY (64u << 20) /* a chat completion is far smaller; a runaway server is cut here */

struct oai_client {
    CURL *curl;
    char *url;
    char *auth;               /* "Authorization: Bearer ..." or NULL */
    const char *ca_bundle;    /* CURLOPT_CAINFO, NULL: libcurl's built-in path */
    struct oai_config cfg;
    uint64_t rng;             /* the jitter's stream */
};

/* The CA certificates https is verified against. libcurl was built with
 * Debian's /etc/ssl/certs/ca-certificates.crt; a static viv may run where the
 * bundle lives elsewhere, so $VIV_CA_BUNDLE overrides it and otherwise the
 * other distributions' usual places are tried when Debian's is missing. */
static const char *ca_bundle(void) {
    static const char *const paths[] = {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                                        "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem"};
    const char *env = getenv("VIV_CA_BUNDLE");
    if (env && *env) return env;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], R_OK) == 0) return i == 0 ? NULL : paths[i];
    return NULL;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

char *oai_completions_url(const char *base) {
    if (!base || (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)) return NULL;
    const char *host = base + (base[4] == 's' ? 8 : 7);
    if (!*host || *host == '/' || *host == ':' || strpbrk(base, " \t\r\n\"<>\\^`{|}")) return NULL;
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/') n--;
    const char *tail = "/chat/completions";
    size_t tl = strlen(tail);
    if (n >= tl && !strncmp(base + n - tl, tail, tl)) return xasprintf("%.*s", (int)n, base);
    if (n >= 3 && !strncmp(base + n - 3, "/v1", 3)) return xasprintf("%.*s%s", (int)n, base, tail);
    return xasprintf("%.*s/v1%s", (int)n, base, tail);
}

struct oai_client *oai_client_new(const struct oai_config *cfg, char *err, size_t errlen) {
    char *url = oai_completions_url(cfg->base_url);
    if (!url) {
        fail_with(err, errlen, "bad endpoint URL '%s' (want http://HOST[:PORT][/v1] or https://...)",
                  cfg->base_url ? cfg->base_url : "");
        return NULL;
    }
    const char *var = cfg->api_key_env ? cfg->api_key_env : "OPENAI_API_KEY";
    const char *key = getenv(var);
    if (cfg->api_key_env && (!key || !*key)) {
        fail_with(err, errlen, "the API key variable %s is not set", var);
        free(url);
        return NULL;
    }
    pthread_once(&curl_once, curl_init);
    CURL *curl = curl_init_rc == CURLE_OK ? curl_easy_init() : NULL;
    if (!curl) {
        fail_with(err, errlen, "libcurl failed to initialise");
        free(url);
        return NULL;
    }
    struct oai_client *c = xcalloc(1, sizeof *c);
    c->curl = curl;
    c->url = url;
    c->auth = key && *key ? xasprintf("Authorization: Bearer %s", key) : NULL;
    c->ca_bundle = ca_bundle();
    c->cfg = *cfg;
    if (c->cfg.connect_timeout_ms <= 0) c->cfg.connect_timeout_ms = 10000;
    if (c->cfg.timeout_ms <= 0) c->cfg.timeout_ms = 600000;
    if (c->cfg.max_retries < 0) c->cfg.max_retries = 4;
    if (c->cfg.backoff_ms <= 0) c->cfg.backoff_ms = 500;
    if (c->cfg.backoff_max_ms <= 0) c->cfg.backoff_max_ms = 30000;
    if (c->cfg.retry_after_max_ms <= 0) c->cfg.retry_after_max_ms = 120000;
    c->rng = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
    return c;
}

void oai_client_free(struct oai_client *c) {
    if (!c) return;
    curl_easy_cleanup(c->curl);
    free(c->url);
    if (c->auth) memset(c->auth, 0, strlen(c->auth));
    free(c->auth);
    free(c);
}

const char *oai_client_url(const struct oai_client *c) { return c->url; }

void oai_response_free(struct oai_response *r) {
    free(r->content);
    free(r->finish_reason);
    free(r->stop_reason);
    memset(r, 0, sizeof *r);
}

/* ---- one HTTP attempt ------------------------------------------------------------------- */

struct body {
    char *buf;
    size_t len;
    int overflow;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg) {
    struct body *b = arg;
    size_t n = size * nmemb;
    if (b->len + n > MAX_BODY) {
        b->overflow = 1;
        return 0; /* aborts the transfer */
    }
    b->buf = xrealloc(b->buf, b->len + n + 1);
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = 0;
    return n;
}

/* Retry-After: delay-seconds (the HTTP-date form is rare from APIs; ignored) */
static size_t on_header(char *p, size_t size, size_t nmemb, void *arg) {
    long *retry_after_ms = arg;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && !strncasecmp(p, name, sizeof name - 1)) {
        char tmp[32];
        size_t k = n - (sizeof name - 1);
        if (k >= sizeof tmp) k = sizeof tmp - 1;
        memcpy(tmp, p + sizeof name - 1, k);
        tmp[k] = 0;
        char *s = tmp, *end;
        while (*s == ' ' || *s == '\t') s++;
        double sec = strtod(s, &end);
        if (end != s && sec >= 0 && sec < 1e6) *retry_after_ms = (long)(sec * 1000.0);
    }
    return n;
}

static char *request_json(const struct oai_request *rq) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "model");
    jw_cstring(&w, rq->model ? rq->model : "default");
    jw_key(&w, "messages");
    jw_array_begin(&w);
    for (int i = 0; i < rq->n_messages; i++) {
        const struct oai_message *m = &rq->messages[i];
        jw_object_begin(&w);
        jw_key(&w, "role");
        jw_cstring(&w, m->role);
        jw_key(&w, "content");
        jw_string(&w, m->content ? m->content : "", m->content ? (m->len ? m->len : strlen(m->content)) : 0);
        jw_object_end(&w);
    }
    jw_array_end(&w);
    if (rq->max_tokens > 0) jw_key(&w, "max_tokens"), jw_int(&w, rq->max_tokens);
    if (rq->temperature >= 0) jw_key(&w, "temperature"), jw_double(&w, rq->temperature, 6);
    if (rq->top_p >= 0) jw_key(&w, "top_p"), jw_double(&w, rq->top_p, 6);
    if (rq->has_seed) jw_key(&w, "seed"), jw_int(&w, (long long)(rq->seed & 0x7fffffffffffffffull));
    if (rq->n_stop > 0) {
        jw_key(&w, "stop");
        jw_array_begin(&w);
        for (int i = 0; i < rq->n_stop && i < 4; i++) jw_cstring(&w, rq->stop[i]);
        jw_array_end(&w);
    }
    jw_object_end(&w);
    return jw_finish(&w);
}

/* The server's error.message (or "message", or the start of the body). */
static void server_message(const struct body *b, char *out, size_t outlen) {
    out[0] = 0;
    if (!b->buf) return;
    cJSON *j = cJSON_Parse(b->buf);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error"), *m = NULL;
    if (cJSON_IsObject(e)) m = cJSON_GetObjectItemCaseSensitive(e, "message");
    else if (cJSON_IsString(e)) m = e;
    if (!m) m = cJSON_GetObjectItemCaseSensitive(j, "message");
    if (!m) m = cJSON_GetObjectItemCaseSensitive(j, "detail");
    if (cJSON_IsString(m)) snprintf(out, outlen, "%s", m->valuestring);
    else snprintf(out, outlen, "%.200s", b->buf);
    cJSON_Delete(j);
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' '; /* one line */
}

static int parse_completion(const struct body *b, struct oai_response *out, char *err, size_t errlen) {
    /* cJSON's strings end at \u0000: an answer holding one is refused, not
     * handed on cut short */
    if (b->buf && json_text_has_nul(b->buf, b->len))
        return fail_with(err, errlen, "the server's answer holds \\u0000 (NUL), which a message here cannot carry");
    cJSON *j = b->buf ? cJSON_Parse(b->buf) : NULL;
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    const cJSON *ch = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ch, "message");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    if (!cJSON_IsObject(msg) || !(cJSON_IsString(content) || cJSON_IsNull(content))) {
        cJSON_Delete(j);
        return fail_with(err, errlen, "the server's answer is not a chat completion: %.200s", b->buf ? b->buf : "(empty)");
    }
    out->content = xstrdup(cJSON_IsString(content) ? content->valuestring : "");
    out->len = strlen(out->content);
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
    out->finish_reason = xstrdup(cJSON_IsString(fr) ? fr->valuestring : "");
    const cJSON *sr = cJSON_GetObjectItemCaseSensitive(ch, "stop_reason");
    out->stop_reason = cJSON_IsString(sr) ? xstrdup(sr->valuestring) : NULL;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
    out->prompt_tokens = cJSON_IsNumber(pt) ? (long)pt->valuedouble : -1;
    out->completion_tokens = cJSON_IsNumber(ct) ? (long)ct->valuedouble : -1;
    cJSON_Delete(j);
    return 0;
}

static int retryable_curl(CURLcode r) {
    return r == CURLE_COULDNT_CONNECT || r == CURLE_OPERATION_TIMEDOUT || r == CURLE_SEND_ERROR ||
           r == CURLE_RECV_ERROR || r == CURLE_GOT_NOTHING || r == CURLE_PARTIAL_FILE ||
           r == CURLE_COULDNT_RESOLVE_HOST;
}

static int retryable_status(long s) { return s == 408 || s == 409 || s == 429 || s >= 500; }

static uint64_t next_rand(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* The wait before retry k (1-based), see the header. */
static long backoff_wait(struct oai_client *c, int k, long retry_after_ms) {
    double d = (double)c->cfg.backoff_ms;
    for (int i = 1; i < k && d < (double)c->cfg.backoff_max_ms; i++) d *= 2;
    if (d > (double)c->cfg.backoff_max_ms) d = (double)c->cfg.backoff_max_ms;
    double u = (double)(next_rand(&c->rng) >> 11) / 9007199254740992.0;
    long wait = (long)(d / 2 + u * d / 2);
    if (retry_after_ms >= 0) {
        long ra = retry_after_ms < c->cfg.retry_after_max_ms ? retry_after_ms : c->cfg.retry_after_max_ms;
        if (ra > wait) wait = ra;
    }
    return wait;
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

int oai_probe(struct oai_client *c, char *err, size_t errlen) {
    CURL *h = c->curl;
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L); /* TCP (and TLS) only: no request is sent */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->cfg.connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (c->ca_bundle) curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_bundle);
    CURLcode r = curl_easy_perform(h);
    /* the handle is reset again before its next request, which closes this connection's use */
    curl_easy_reset(h);
    if (r == CURLE_OK) return 0;
    return fail_with(err, errlen, "%s: %s", c->url, cerr[0] ? cerr : curl_easy_strerror(r));
}

int oai_chat(struct oai_client *c, const struct oai_request *rq, struct oai_response *out, char *err,
             size_t errlen) {
    memset(out, 0, sizeof *out);
    char *payload = request_json(rq);
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Accept: application/json");
    hdr = curl_slist_append(hdr, "Expect:"); /* no 100-continue round trip for long conversations */
    if (c->auth) hdr = curl_slist_append(hdr, c->auth);
    CURL *h = c->curl;
    int rc = -1;
    char cerr[CURL_ERROR_SIZE];
    for (int attempt = 0;; attempt++) {
        struct body b = {0};
        long retry_after_ms = -1;
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, c->url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &retry_after_ms);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->cfg.connect_timeout_ms);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->cfg.timeout_ms);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* timeouts without SIGALRM: safe in threads */
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "vivarium/1 (libcurl)");
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        if (c->ca_bundle) curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_bundle);
        cerr[0] = 0;
        CURLcode r = curl_easy_perform(h);
        out->attempts = attempt + 1;
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        out->status = status;
        int retry = 0;
        if (r != CURLE_OK) {
            if (b.overflow)
                fail_with(err, errlen, "%s: the answer is larger than %u MiB", c->url, MAX_BODY >> 20);
            else
                fail_with(err, errlen, "%s: %s%s%s", c->url, curl_easy_strerror(r), cerr[0] ? ": " : "", cerr);
            retry = retryable_curl(r) && !b.overflow;
        } else if (status < 200 || status >= 300) {
            char msg[512];
            server_message(&b, msg, sizeof msg);
            fail_with(err, errlen, "%s: HTTP %ld%s%s", c->url, status, msg[0] ? ": " : "", msg);
            retry = retryable_status(status);
        } else {
            rc = parse_completion(&b, out, err, errlen);
            free(b.buf);
            break;
        }
        free(b.buf);
        if (!retry || attempt >= c->cfg.max_retries) {
            if (retry) {
                size_t l = strlen(err);
                snprintf(err + l, errlen > l ? errlen - l : 0, " (gave up after %d attempts)", attempt + 1);
            }
            break;
        }
        sleep_ms(backoff_wait(c, attempt + 1, retry_after_ms));
    }
    curl_slist_free_all(hdr);
    free(payload);
    return rc;
}
