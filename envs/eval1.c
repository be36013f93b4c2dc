/*
 * eval1.c - load a task set from JSONL (see eval1.h).
 */
#define _GNU_SOURCE
#include "eval1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/json_text.h"
#include "../sandbox/base/util.h"
#include "graders.h"

#define TASKSET_MAX_BYTES (1L << 30)

/* A field as text: strings as they are, numbers and others as compact JSON. */
static char *field_text(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return NULL;
    if (cJSON_IsString(v)) return xstrdup(v->valuestring);
    if (cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble)
        return xasprintf("%lld", (long long)v->valuedouble);
    char *p = cJSON_PrintUnformatted(v);
    char *r = xstrdup(p ? p : "");
    cJSON_free(p);
    return r;
}

static void task_free(struct task *t) {
    free(t->instance_id), free(t->task_name), free(t->split), free(t->prompt), free(t->answer);
    free(t->grader), free(t->ref_tool), free(t->ref_code);
    cJSON_Delete(t->meta);
}

/* One row into *t; 0 or -1 with err. */
static int parse_row(const cJSON *o, struct task *t, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    if (!cJSON_IsObject(o)) return snprintf(err, errlen, "not a JSON object"), -1;
    t->task_name = field_text(o, "task_name");
    t->prompt = field_text(o, "prompt");
    t->answer = field_text(o, "answer");
    if (!t->task_name || !t->prompt || !t->answer) {
        snprintf(err, errlen, "needs task_name, prompt and answer");
        return -1;
    }
    t->instance_id = field_text(o, "instance_id");
    if (!t->instance_id) t->instance_id = field_text(o, "task_instance_id");
    t->split = field_text(o, "split");
    t->grader = field_text(o, "grader");
    if (!t->grader) t->grader = xstrdup(t->task_name);
    if (!grader_known(t->grader)) {
        snprintf(err, errlen, "no Eval1 grading rule named '%s'", t->grader);
        return -1;
    }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(o, "reference");
    if (ref && !cJSON_IsNull(ref)) {
        const cJSON *tool = cJSON_GetObjectItemCaseSensitive(ref, "tool"), *code = cJSON_GetObjectItemCaseSensitive(ref, "code");
        if (!cJSON_IsString(tool) || !cJSON_IsString(code)) {
            snprintf(err, errlen, "reference needs string fields tool and code");
            return -1;
        }
        if (strcmp(tool->valuestring, "python") && strcmp(tool->valuestring, "sql") && strcmp(tool->valuestring, "bash")) {
            snprintf(err, errlen, "reference tool '%s' is not python, sql or bash", tool->valuestring);
            return -1;
        }
        t->ref_tool = xstrdup(tool->valuestring);
        t->ref_code = xstrdup(code->valuestring);
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(o, "meta");
    if (meta && !cJSON_IsNull(meta)) t->meta = cJSON_Duplicate(meta, 1);
    if (!t->instance_id) t->instance_id = xstrdup("");
    return 0;
}

int taskset_load(const char *path, const char *split, struct task_set *ts, char *err, size_t errlen) {
    memset(ts, 0, sizeof *ts);
    size_t len;
    char rerr[256];
    char *data = read_file(path, TASKSET_MAX_BYTES, &len, rerr, sizeof rerr);
    if (!data) {
        snprintf(err, errlen, "%s", rerr); /* read_file names the path */
        return -1;
    }
    size_t cap = 0;
    long lineno = 0;
    /* a NUL byte would end the file here without a word: refuse it */
    const char *nul = memchr(data, 0, len);
    if (nul) {
        snprintf(err, errlen, "%s: a NUL byte at offset %zu (a task file is JSON text)", path, (size_t)(nul - data));
        free(data);
        return -1;
    }
    for (char *line = data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (!*p) continue;
        /* cJSON's strings end at \u0000: a prompt or answer holding one would
         * be cut short, so such a task is refused, not shortened */
        if (json_text_has_nul(p, strlen(p))) {
            snprintf(err, errlen, "%s:%ld: a string holds \\u0000 (NUL), which task text cannot", path, lineno);
            goto fail;
        }
        cJSON *o = cJSON_Parse(p);
        if (!o) {
            snprintf(err, errlen, "%s:%ld: not valid JSON", path, lineno);
            goto fail;
        }
        struct task t;
        char why[200];
        int rc = parse_row(o, &t, why, sizeof why);
        cJSON_Delete(o);
        if (rc < 0) {
            task_free(&t);
            snprintf(err, errlen, "%s:%ld: %s", path, lineno, why);
            goto fail;
        }
        if (split && (!t.split || strcmp(t.split, split) != 0)) {
            task_free(&t);
            continue;
        }
        if (ts->n == cap) {
            cap = cap ? 2 * cap : 64;
            ts->t = xrealloc(ts->t, cap * sizeof *ts->t);
        }
        ts->t[ts->n++] = t;
    }
    free(data);
    return 0;
fail:
    free(data);
    taskset_free(ts);
    return -1;
}

void taskset_free(struct task_set *ts) {
    for (size_t i = 0; i < ts->n; i++) task_free(&ts->t[i]);
    free(ts->t);
    memset(ts, 0, sizeof *ts);
}

size_t taskset_with_reference(const struct task_set *ts) {
    size_t k = 0;
    for (size_t i = 0; i < ts->n; i++) k += ts->t[i].ref_code != NULL;
    return k;
}

/* Keep the rows whose task_name is in the comma list (NULL: all), at most limit (0: all),
 * taking shapes round-robin so a limit keeps the mix. */
void taskset_filter(struct task_set *ts, const char *list, int limit) {
    size_t k = 0;
    for (size_t i = 0; i < ts->n; i++) {
        int keep = 1;
        if (list) {
            keep = 0;
            size_t nl = strlen(ts->t[i].task_name);
            for (const char *p = list; *p;) {
                const char *e = strchr(p, ',');
                size_t l = e ? (size_t)(e - p) : strlen(p);
                if (l == nl && !strncmp(p, ts->t[i].task_name, l)) keep = 1;
                p += l + (e != NULL);
            }
        }
        if (keep) ts->t[k++] = ts->t[i];
        else {
            struct task_set one = {.t = &ts->t[i], .n = 1};
            struct task *copy = xmalloc(sizeof *copy);
            *copy = ts->t[i];
            one.t = copy;
            taskset_free(&one);
        }
    }
    ts->n = k;
    if (limit > 0 && (size_t)limit <= ts->n) {
        /* interleave shapes: the j-th task of every shape before the (j+1)-th */
        struct task *out = xcalloc((size_t)limit, sizeof *out);
        uint8_t *used = xcalloc(ts->n, 1);
        /* rank[i]: the index of row i among the rows of its shape (one pass,
         * shapes few), then rounds by rank: linear per round */
        int *rank = xcalloc(ts->n, sizeof *rank), maxrank = 0;
        const char *names[64];
        int counts[64], nn = 0;
        for (size_t i = 0; i < ts->n; i++) {
            int s = 0;
            while (s < nn && strcmp(names[s], ts->t[i].task_name)) s++;
            if (s == nn && nn < 64) names[nn] = ts->t[i].task_name, counts[nn++] = 0;
            rank[i] = s < 64 ? counts[s]++ : (int)i; /* past 64 shapes: file order */
            if (rank[i] > maxrank) maxrank = rank[i];
        }
        int got = 0;
        for (int round = 0; got < limit && round <= maxrank; round++)
            for (size_t i = 0; i < ts->n && got < limit; i++)
                if (!used[i] && rank[i] == round) out[got++] = ts->t[i], used[i] = 1;
        free(rank);
        for (size_t i = 0; i < ts->n; i++)
            if (!used[i]) {
                struct task *copy = xmalloc(sizeof *copy);
                *copy = ts->t[i];
                struct task_set one = {.t = copy, .n = 1};
                taskset_free(&one);
            }
        free(used);
        free(ts->t);
        ts->t = out;
        ts->n = (size_t)got;
    }
}
