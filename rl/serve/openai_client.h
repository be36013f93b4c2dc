/*
 * openai_client.h - a client of OpenAI-compatible chat-completions servers
 * (vLLM, SGLang, a hosted API, our own `viv serve`) over libcurl.
 *
 *   POST {base}/chat/completions   base "http(s)://host[:port]" or ".../v1"
 *
 * One request is retried on what a retry can fix: a refused or failed
 * connection, a timeout, HTTP 408/409/429 and 5xx. The wait before retry k
 * (k = 1, 2, ...) is drawn uniformly from [d/2, d] with d = backoff_ms *
 * 2^(k-1) capped at backoff_max_ms ("equal jitter": clients that failed
 * together do not come back together); a Retry-After header in seconds
 * replaces the draw when it asks for longer (capped at retry_after_max_ms).
 * Every other failure is returned at once as one line: the HTTP status and
 * the server's error.message, or curl's reason.
 *
 * The key is read from an environment variable (default OPENAI_API_KEY) and
 * sent as "Authorization: Bearer KEY"; when the variable is unset no header
 * is sent (local servers need none). https certificates are verified against
 * the system's CA bundle ($VIV_CA_BUNDLE names another file). Functions
 * return errors, never print.
 * A client is one libcurl handle: use it from one thread at a time.
 */
#ifndef VIV_RL_OPENAI_CLIENT_H
#define VIV_RL_OPENAI_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct oai_config {
    const char *base_url;
    const char *api_key_env;   /* NULL: OPENAI_API_KEY, optional; named: must be set */
    long connect_timeout_ms;   /* 0: 10 s */
    long timeout_ms;           /* the whole request; 0: 600 s */
    int max_retries;           /* retries after the first attempt; < 0: 4 */
    long backoff_ms;           /* 0: 500 */
    long backoff_max_ms;       /* 0: 30 s */
    long retry_after_max_ms;   /* 0: 120 s */
};

struct oai_message {
    const char *role;          /* "system", "user", "assistant", "tool" */
    const char *content;
    size_t len;                /* bytes of content; 0: strlen */
};

struct oai_request {
    const char *model;
    const struct oai_message *messages;
    int n_messages;
    int max_tokens;            /* 0: not sent */
    double temperature;        /* < 0: not sent (the server's default) */
    double top_p;              /* < 0: not sent */
    const char *const *stop;   /* up to 4 strings */
    int n_stop;
    int has_seed;
    uint64_t seed;
};

struct oai_response {
    char *content;             /* the assistant message ("" if the server sent null) */
    size_t len;
    char *finish_reason;       /* "stop", "length", ... ("" if absent) */
    char *stop_reason;         /* the stop string that ended it, when the server says (vLLM and
                                  viv serve do, as "stop_reason"), else NULL */
    long prompt_tokens, completion_tokens;
    int attempts;              /* HTTP attempts made */
    long status;               /* the last HTTP status (0: no response) */
};

struct oai_client;

/* Check the URL (http:// or https://) and the key variable. NULL + err. */
struct oai_client *oai_client_new(const struct oai_config *cfg, char *err, size_t errlen);
void oai_client_free(struct oai_client *c);
/* The chat-completions URL the client posts to. */
const char *oai_client_url(const struct oai_client *c);

/* Whether anything listens at the endpoint: a connection (TCP, and TLS for
 * https) within the connect timeout, no request, no retries. 0, or -1 with
 * err. For commands that should fail before their work, not during it. */
int oai_probe(struct oai_client *c, char *err, size_t errlen);

/* One completion (retried as above). 0, or -1 with err (out->attempts and
 * out->status are set either way). Free out with oai_response_free. */
int oai_chat(struct oai_client *c, const struct oai_request *rq, struct oai_response *out, char *err,
             size_t errlen);
void oai_response_free(struct oai_response *r);

/* The endpoint's chat-completions URL for a base URL (malloc'd), or NULL
 * when the URL is not http(s)://host... */
char *oai_completions_url(const char *base);

#endif
