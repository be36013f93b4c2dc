/*
 * graders.c - the Eval1 rules (see graders.h for each rule in words).
 */
#define _GNU_SOURCE
#include "graders.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"

static char *xstrndup(const char *s, size_t n) {
    char *r = xmalloc(n + 1);
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}
#include "graders_literal.h"

/* --- Python's str.strip() -------------------------------------------------------- */

/* Bytes of a white-space character at s (per str.isspace), 0 if none. */
static size_t space_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) return 1;
    if (n >= 2 && c == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2; /* U+0085, U+00A0 */
    if (n >= 3 && c == 0xE1 && s[1] == 0x9A && s[2] == 0x80) return 3;  /* U+1680 */
    if (n >= 3 && c == 0xE2 && s[1] == 0x80 && ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
        return 3;                                                         /* U+2000-200A, 2028, 2029, 202F */
    if (n >= 3 && c == 0xE2 && s[1] == 0x81 && s[2] == 0x9F) return 3;  /* U+205F */
    if (n >= 3 && c == 0xE3 && s[1] == 0x80 && s[2] == 0x80) return 3;  /* U+3000 */
    return 0;
}

char *py_strip(const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str), k;
    while ((k = space_len(s, n))) s += k, n -= k;
    /* from the right: find the last character that is not white space */
    size_t end = 0, i = 0;
    while (i < n) {
        size_t sp = space_len(s + i, n - i);
        if (sp) i += sp;
        else {
            i++;
            while (i < n && (s[i] & 0xC0) == 0x80) i++; /* the rest of a UTF-8 sequence */
            end = i;
        }
    }
    char *r = xmalloc(end + 1);
    memcpy(r, s, end);
    r[end] = 0;
    return r;
}

/* --- the string rules -------------------------------------------------------------- */

enum fold { FOLD_NONE, FOLD_UPPER, FOLD_LOWER };

static double exact_match(const char *answer, const char *truth, enum fold f) {
    char *a = py_strip(answer), *t = py_strip(truth);
    for (char *p = a; *p && f != FOLD_NONE; p++) *p = (char)(f == FOLD_UPPER ? toupper((unsigned char)*p) : tolower((unsigned char)*p));
    for (char *p = t; *p && f != FOLD_NONE; p++) *p = (char)(f == FOLD_UPPER ? toupper((unsigned char)*p) : tolower((unsigned char)*p));
    double r = strcmp(a, t) == 0 ? 1.0 : 0.0;
    free(a), free(t);
    return r;
}

/* --- the JSON rules ------------------------------------------------------------------- */

/* try: json.loads(answer) except JSONDecodeError: ast.literal_eval(answer) */
static struct pyval *parse_answer(const char *answer) {
    size_t n = strlen(answer);
    struct pyval *v = pv_parse_json(answer, n);
    return v ? v : pv_parse_literal(answer, n);
}

static double rare_disease(const char *answer, const char *truth) {
    struct pyval *u = parse_answer(answer), *g = pv_parse_json(truth, strlen(truth));
    double r = 0.0;
    /* user_dict.get("OMIM_ID") == gt_dict.get("OMIM_ID"): both must be dicts
     * (anything else has no .get and raises, which scores 0); a missing key is None. */
    if (u && g && u->kind == PV_DICT && g->kind == PV_DICT) {
        struct pyval none = {.kind = PV_NONE};
        const struct pyval *a = pv_dict_get(u, "OMIM_ID"), *b = pv_dict_get(g, "OMIM_ID");
        r = pv_equal(a ? a : &none, b ? b : &none) ? 1.0 : 0.0;
    }
    pv_free(u), pv_free(g);
    return r;
}

static double patient_gene(const char *answer, const char *truth) {
    struct pyval *u = parse_answer(answer);
    if (!u || u->kind != PV_DICT) { /* no dict, no .get: the except branch */
        pv_free(u);
        return 0.0;
    }
    const struct pyval *pred = pv_dict_get(u, "causal_gene");
    /* .get("causal_gene", []) and a non-list wrapped in a list */
    const struct pyval *const *items = NULL;
    size_t npred = 0;
    if (!pred) npred = 0;
    else if (pred->kind == PV_LIST) items = (const struct pyval *const *)pred->items, npred = pred->n;
    else items = &pred, npred = 1;
    double r = 0.0;
    int hashable = 1;
    for (size_t k = 0; k < npred; k++) hashable &= pv_hashable(items[k]);
    if (npred > 0 && hashable) {
        /* truth: ground_truth.split(",") with each field stripped when it holds
         * a comma (empty fields included, as Python keeps them), else whole */
        int has_comma = strchr(truth, ',') != NULL;
        const char *f = truth;
        while (r == 0.0) {
            const char *e = has_comma ? strchr(f, ',') : NULL;
            size_t flen = e ? (size_t)(e - f) : strlen(f);
            char *raw = xstrndup(f, flen), *g = has_comma ? py_strip(raw) : xstrdup(raw);
            struct pyval gv = {.kind = PV_STR, .s = g, .slen = strlen(g)};
            for (size_t k = 0; k < npred; k++)
                if (pv_equal(items[k], &gv)) r = 1.0;
            free(raw), free(g);
            if (!e) break;
            f = e + 1;
        }
    }
    pv_free(u);
    return r;
}

static double crispr_partial(const char *answer, const cJSON *scores) {
    /* SkyRL's training reward: the chosen letter's reference score (0-2) / 2 */
    char *a = py_strip(answer);
    for (char *p = a; *p; p++) *p = (char)tolower((unsigned char)*p);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(scores, a);
    double r = cJSON_IsNumber(s) ? s->valuedouble / 2.0 : 0.0;
    free(a);
    if (r < 0) r = 0;
    if (r > 1) r = 1;
    return r;
}

/* --- dispatch --------------------------------------------------------------------------- */

static int prefixed(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

int grader_known(const char *rule) {
    static const char *const exact[] = {"crispr_delivery", "gwas_variant_prioritization", "hle", "rare_disease_diagnosis",
                                        "screen_gene_retrieval", "patient_gene_detection"};
    for (size_t k = 0; k < sizeof exact / sizeof exact[0]; k++)
        if (strcmp(rule, exact[k]) == 0) return 1;
    return prefixed(rule, "gwas_causal_gene") || prefixed(rule, "lab_bench");
}

double grade(const char *rule, const char *answer, const char *truth, enum grade_mode mode,
             const cJSON *option_scores, char *err, size_t errlen) {
    if (!answer) answer = "";
    if (!truth) truth = "";
    /* the same order of tests as upstream */
    if (strcmp(rule, "crispr_delivery") == 0) {
        if (mode == GRADE_TRAIN && cJSON_IsObject(option_scores)) return crispr_partial(answer, option_scores);
        return exact_match(answer, truth, FOLD_LOWER);
    }
    if (prefixed(rule, "gwas_causal_gene")) return exact_match(answer, truth, FOLD_UPPER);
    if (strcmp(rule, "gwas_variant_prioritization") == 0) return exact_match(answer, truth, FOLD_NONE);
    if (strcmp(rule, "hle") == 0) return exact_match(answer, truth, FOLD_UPPER);
    if (prefixed(rule, "lab_bench")) return exact_match(answer, truth, FOLD_UPPER);
    if (strcmp(rule, "rare_disease_diagnosis") == 0) return rare_disease(answer, truth);
    if (strcmp(rule, "screen_gene_retrieval") == 0) return exact_match(answer, truth, FOLD_UPPER);
    if (strcmp(rule, "patient_gene_detection") == 0) return patient_gene(answer, truth);
    if (err && errlen) snprintf(err, errlen, "unknown task '%s' (no Eval1 grading rule)", rule);
    return -1.0;
}
