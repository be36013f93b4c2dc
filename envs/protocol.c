/*
 * protocol.c - parse and score the Biomni tag protocol (see protocol.h).
 *
 * Everything here works on (pointer, length) spans so that a message with
 * NUL bytes or without a terminator (the fuzzer's inputs) is handled the same
 * way as a normal one. Searches are linear; nothing here can loop on garbage.
 */
#define _GNU_SOURCE
#include "protocol.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../sandbox/base/util.h"

const char *const proto_correction_text =
    "Your last message had no usable tags. Every reply must hold your reasoning in <think>...</think> "
    "followed by exactly one of <execute>code</execute> or <solution>answer</solution>. "
    "Please write the reply again in that format.";
const char *const proto_terminated_text = "The episode ended after repeated replies without usable tags.";

/* --- small span helpers ------------------------------------------------------ */

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* First occurrence of needle in [s, s+n) at or after `from`; -1 if none. */
static long find(const char *s, size_t n, size_t from, const char *needle, int nocase) {
    size_t m = strlen(needle);
    if (m == 0 || n < m) return -1;
    for (size_t i = from; i + m <= n; i++) {
        size_t k = 0;
        if (nocase)
            while (k < m && tolower((unsigned char)s[i + k]) == needle[k]) k++;
        else
            while (k < m && s[i + k] == needle[k]) k++;
        if (k == m) return (long)i;
    }
    return -1;
}

static char *span_dup(const char *s, size_t n) {
    char *r = xmalloc(n + 1);
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

/* The regex <tag>(.*?)</tag> with re.DOTALL|re.IGNORECASE: the first opening
 * tag followed somewhere by a closing one, content up to the first closing
 * tag after it. A later opening tag cannot have a closing tag after it if the
 * first one has none, so trying only the first opening is exact. */
static int find_block(const char *s, size_t n, const char *tag, size_t *cstart, size_t *clen) {
    char open[32], close[32];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    long o = find(s, n, 0, open, 1);
    if (o < 0) return 0;
    size_t start = (size_t)o + strlen(open);
    long c = find(s, n, start, close, 1);
    if (c < 0) return 0;
    *cstart = start;
    *clen = (size_t)c - start;
    return 1;
}

/* The fallback regex ```(?:python|bash|r)?\s*(.*?)``` (DOTALL, case-sensitive). */
static int find_fenced(const char *s, size_t n, size_t *cstart, size_t *clen) {
    long o = find(s, n, 0, "```", 0);
    if (o < 0) return 0;
    size_t i = (size_t)o + 3;
    static const char *const langs[] = {"python", "bash", "r"};
    for (int k = 0; k < 3; k++) {
        size_t m = strlen(langs[k]);
        if (i + m <= n && memcmp(s + i, langs[k], m) == 0) {
            i += m;
            break;
        }
    }
    while (i < n && is_ws((unsigned char)s[i])) i++;
    long c = find(s, n, i, "```", 0);
    if (c < 0) return 0;
    *cstart = i;
    *clen = (size_t)c - i;
    return 1;
}

/* --- stop strings ---------------------------------------------------------------- */

size_t proto_stop_len(const char *text, size_t len) {
    long e = find(text, len, 0, "</execute>", 0), s = find(text, len, 0, "</solution>", 0);
    if (e >= 0 && (s < 0 || e < s)) return (size_t)e + strlen("</execute>");
    if (s >= 0) return (size_t)s + strlen("</solution>");
    return len;
}

/* --- parsing ------------------------------------------------------------------------ */

void proto_parse(const char *text, size_t len, struct proto_msg *out) {
    memset(out, 0, sizeof *out);
    /* Auto-close, exactly as upstream: a lower-case opening tag without its
     * lower-case closing tag gets one appended (execute, solution, think). */
    size_t cap = len + 40, n = len;
    char *msg = xmalloc(cap);
    if (len) memcpy(msg, text, len);
    static const char *const tags[] = {"execute", "solution", "think"};
    for (int k = 0; k < 3; k++) {
        char open[32], close[32];
        snprintf(open, sizeof open, "<%s>", tags[k]);
        snprintf(close, sizeof close, "</%s>", tags[k]);
        if (find(msg, n, 0, open, 0) >= 0 && find(msg, n, 0, close, 0) < 0) {
            memcpy(msg + n, close, strlen(close));
            n += strlen(close);
        }
    }
    size_t ts, tl, es, el, ss, sl;
    int has_think = find_block(msg, n, "think", &ts, &tl);
    int has_exec = find_block(msg, n, "execute", &es, &el);
    int has_sol = find_block(msg, n, "solution", &ss, &sl);
    if (!has_exec && !has_sol) has_exec = find_fenced(msg, n, &es, &el);
    /* an answer or code holding a NUL byte cannot be graded or run whole
     * (Python refuses such source; a C string would end there): the
     * message is malformed rather than read cut short */
    int nul = (has_sol && memchr(msg + ss, 0, sl)) || (has_exec && memchr(msg + es, 0, el));
    if (has_think) out->think = span_dup(msg + ts, tl);
    if (has_exec && !nul) out->code = span_dup(msg + es, el);
    if (has_sol && !nul) out->solution = span_dup(msg + ss, sl);
    if (nul) out->action = PROTO_PARSE_ERROR;
    else if (has_sol) out->action = PROTO_SOLUTION;
    else if (has_exec) out->action = PROTO_EXECUTE;
    else if (has_think) out->action = PROTO_THINK_ONLY;
    else out->action = PROTO_PARSE_ERROR;
    free(msg);
}

void proto_msg_free(struct proto_msg *m) {
    free(m->think), free(m->code), free(m->solution);
    memset(m, 0, sizeof *m);
}

/* --- tool selection ---------------------------------------------------------------- */

static int starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* A copy of [s, s+n) without surrounding whitespace. */
static char *trim_dup(const char *s, size_t n) {
    while (n && is_ws((unsigned char)*s)) s++, n--;
    while (n && is_ws((unsigned char)s[n - 1])) n--;
    return span_dup(s, n);
}

char *proto_select_tool(const char *code, enum proto_tool *tool) {
    char *c = trim_dup(code, strlen(code));
    /* Upstream's order: R first, then the shell markers, else Python. */
    static const struct { const char *marker; enum proto_tool tool; } markers[] = {
        {"#!R", PROTO_TOOL_R},       {"# R code", PROTO_TOOL_R},           {"# R script", PROTO_TOOL_R},
        {"#!BASH", PROTO_TOOL_SHELL}, {"# Bash script", PROTO_TOOL_SHELL}, {"#!CLI", PROTO_TOOL_SHELL},
        {"#!SQL", PROTO_TOOL_SQL},
    };
    *tool = PROTO_TOOL_PYTHON;
    for (size_t k = 0; k < sizeof markers / sizeof markers[0]; k++) {
        if (!starts_with(c, markers[k].marker)) continue;
        *tool = markers[k].tool;
        size_t m = strlen(markers[k].marker);
        char *body = trim_dup(c + m, strlen(c + m));
        if (strcmp(markers[k].marker, "#!CLI") == 0)
            for (char *p = body; *p; p++)
                if (*p == '\n') *p = ' '; /* a CLI call is one command line */
        free(c);
        return body;
    }
    return c;
}

const char *proto_tool_name(enum proto_tool t) {
    switch (t) {
    case PROTO_TOOL_PYTHON: return "python";
    case PROTO_TOOL_SQL: return "sql";
    case PROTO_TOOL_SHELL: return "shell";
    case PROTO_TOOL_R: return "r";
    }
    return "?";
}


/* --- observations -------------------------------------------------------------- */

/* Bytes of the UTF-8 sequence at s (1 for an invalid byte: Python's decoder
 * with errors="replace" makes it one character). */
static size_t utf8_step(const unsigned char *s, size_t n) {
    unsigned char b = s[0];
    size_t need = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (need <= 1 || need > n) return 1;
    for (size_t k = 1; k < need; k++)
        if ((s[k] & 0xC0) != 0x80) return 1;
    return need;
}

char *proto_render_observation(const char *result, size_t len, size_t *out_len) {
    static const char note[] = "The output is too long for the context; here are its first 10,000 characters:\n";
    size_t i = 0, chars = 0;
    while (i < len && chars < PROTO_OBS_MAX_CHARS) i += utf8_step((const unsigned char *)result + i, len - i), chars++;
    int cut = i < len;
    size_t keep = i;
    size_t total = strlen("<observation>") + (cut ? sizeof note - 1 : 0) + keep + strlen("</observation>") + 1;
    char *o = xmalloc(total), *p = o;
    p = stpcpy(p, "<observation>");
    if (cut) p = stpcpy(p, note);
    memcpy(p, result, keep);
    p += keep;
    p = stpcpy(p, "</observation>");
    if (out_len) *out_len = (size_t)(p - o);
    return o;
}

/* --- the format reward ---------------------------------------------------------- */

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_ws((unsigned char)s[i])) return 0;
    return 1;
}

static int holds_tag(const char *s, size_t n) {
    static const char *const all[] = {"<think>", "</think>", "<execute>", "</execute>", "<solution>", "</solution>"};
    for (int k = 0; k < 6; k++)
        if (find(s, n, 0, all[k], 1) >= 0) return 1;
    return 0;
}

int proto_message_shape(const char *s, size_t n) {
    while (n && is_ws((unsigned char)*s)) s++, n--;
    while (n && is_ws((unsigned char)s[n - 1])) n--;
    if (n < 7 || memcmp(s, "<think>", 7) != 0) return 0;
    long tc = find(s, n, 7, "</think>", 0);
    if (tc < 0) return 0;
    if (blank(s + 7, (size_t)tc - 7) || holds_tag(s + 7, (size_t)tc - 7)) return 0;
    size_t i = (size_t)tc + 8;
    while (i < n && is_ws((unsigned char)s[i])) i++;
    int shape;
    const char *close;
    if (n - i >= 9 && memcmp(s + i, "<execute>", 9) == 0) shape = 1, i += 9, close = "</execute>";
    else if (n - i >= 10 && memcmp(s + i, "<solution>", 10) == 0) shape = 2, i += 10, close = "</solution>";
    else return 0;
    long c = find(s, n, i, close, 0);
    if (c < 0) return 0;
    if (blank(s + i, (size_t)c - i) || holds_tag(s + i, (size_t)c - i)) return 0;
    if ((size_t)c + strlen(close) != n) return 0; /* nothing may follow the block */
    return shape;
}

#define SAY(...)                                         \
    do {                                                 \
        if (why && whylen) snprintf(why, whylen, __VA_ARGS__); \
    } while (0)

int proto_format_reward(const char *const *msgs, const size_t *lens, int n, char *why, size_t whylen) {
    if (n <= 0) {
        SAY("no assistant messages");
        return 0;
    }
    for (int k = 0; k < n; k++) {
        int shape = proto_message_shape(msgs[k], lens ? lens[k] : strlen(msgs[k]));
        if (shape == 0) {
            SAY("message %d is not <think>...</think> then one <execute> or <solution> block", k + 1);
            return 0;
        }
        if (k < n - 1 && shape == 2) {
            SAY("message %d has a <solution> but is not the last", k + 1);
            return 0;
        }
        if (k == n - 1 && shape != 2) {
            SAY("the last message (%d) has no <solution>", k + 1);
            return 0;
        }
    }
    if (why && whylen) why[0] = 0;
    return 1;
}

/* ---- task inputs in the Python tool ------------------------------------------------ */

/* One line defining TASK from the JSON text of `inputs`: the JSON text is
 * written as a double-quoted literal that Python reads back unchanged (JSON
 * string escapes are Python string escapes). One line, so the agent's own
 * line numbers in a traceback are off by exactly one. */
static char *python_prelude(const cJSON *inputs) {
    char *json = cJSON_PrintUnformatted(inputs);
    if (!json) return NULL;
    size_t n = strlen(json), k = 0;
    char *out = xmalloc(64 + 6 * n);
    k += (size_t)sprintf(out, "TASK = __import__(\"json\").loads(\"");
    for (const unsigned char *p = (const unsigned char *)json; *p; p++) {
        if (*p == '"' || *p == '\\') out[k++] = '\\', out[k++] = (char)*p;
        else if (*p < 0x20 || *p == 0x7f) k += (size_t)sprintf(out + k, "\\u%04x", *p);
        else out[k++] = (char)*p;
    }
    k += (size_t)sprintf(out + k, "\")\n");
    out[k] = 0;
    free(json);
    return out;
}

char *proto_with_task_inputs(const cJSON *meta, const char *code) {
    const cJSON *inputs = meta ? cJSON_GetObjectItemCaseSensitive(meta, "inputs") : NULL;
    char *pre = cJSON_IsObject(inputs) ? python_prelude(inputs) : NULL;
    char *r = xasprintf("%s%s", pre ? pre : "", code ? code : "");
    free(pre);
    return r;
}
