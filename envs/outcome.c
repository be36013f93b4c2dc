/*
 * outcome.c - who decided a tool call's outcome (see outcome.h).
 */
#include "outcome.h"

#include <string.h>

/* Error codes that say the sandbox, not the call's code, ended the call. */
static const char *const sandbox_codes[] = {
    "busy",          /* vivd's queue or session cap: the client retried and gave up */
    "shutting_down", /* vivd is stopping */
    "zygote_lost",   /* the warm worker that ran it died */
    "session_lost",  /* the session was already gone when the call came (its jail ended, its worker died) */
    "not_found",     /* the session is not known on this connection (it reconnected: the session died with it) */
    "sandbox_error", /* the jail could not be set up */
    "internal",      /* vivd's own failure */
    "disconnected",  /* the client: the host's connection broke */
    "unreachable",   /* the client: no host could be reached */
    "timeout",       /* the client: no answer within its own deadline (a hung host) */
    NULL,
};

bool outcome_sandbox_decided(const struct call_outcome *o) {
    if (o->answered) {
        /* The call ran. Its session gone with it is the model's doing when the
         * call overran (vivd kills the jail at the deadline) or its code died
         * of a signal (killed the interpreter, ran out of memory); otherwise
         * the session vanished under a call that did neither. */
        return o->session_lost && !o->timed_out && o->signal == 0;
    }
    if (!o->error_code) return true; /* no answer and no reason: nothing the model did */
    for (int i = 0; sandbox_codes[i]; i++)
        if (!strcmp(o->error_code, sandbox_codes[i])) return true;
    return false; /* bad_request and the like: the request the model wrote was refused */
}

static bool jtrue(const cJSON *o, const char *k) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k)); }

bool outcome_response_sandbox_decided(const cJSON *resp) {
    if (!resp) return true;
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(resp, "error");
    const cJSON *code = err ? cJSON_GetObjectItemCaseSensitive(err, "code") : NULL;
    const cJSON *sig = cJSON_GetObjectItemCaseSensitive(resp, "signal");
    struct call_outcome o = {.answered = jtrue(resp, "ok"),
                             .error_code = cJSON_IsString(code) ? code->valuestring : NULL,
                             .session_lost = jtrue(resp, "session_lost"),
                             .timed_out = jtrue(resp, "timed_out"),
                             .signal = cJSON_IsNumber(sig) ? (int)sig->valuedouble : 0};
    return outcome_sandbox_decided(&o);
}
