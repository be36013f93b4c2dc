/*
 * teacher.c - the scripted teacher and the random agent (see teacher.h).
 *
 * The teacher is a pure function of (seeds, conversation): it counts its own
 * messages to know where it is in its plan, and reads the last observation
 * when it needs a result. It keeps no state between calls, so the trainer
 * may call it for any number of episodes in any order.
 */
#define _GNU_SOURCE
#include "teacher.h"

#include <ctype.h>
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

uint64_t teacher_rng(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static double unit(uint64_t *s) { return (double)(teacher_rng(s) >> 11) / 9007199254740992.0; }
static size_t pick(uint64_t *s, size_t n) { return n ? (size_t)(teacher_rng(s) % n) : 0; }
#define PICK(rng, arr) (arr[pick(rng, sizeof arr / sizeof arr[0])])

const char *teacher_mistake_name(enum teacher_mistake m) {
    static const char *const names[] = {"none", "perturbed_query", "wrong_format", "give_up", "malformed_tag"};
    return m < TM_COUNT ? names[m] : "?";
}

/* --- the plan ------------------------------------------------------------------------ */

enum step { ST_EXPLORE, ST_TYPO, ST_RUN, ST_PERTURBED, ST_ANSWER, ST_GIVE_UP, ST_NOTAGS };

struct plan {
    enum teacher_mistake mistake;
    int variant;         /* which flavour of the mistake */
    enum step steps[8];
    int nsteps;
    uint64_t seed;
};

static uint64_t episode_seed(const struct teacher *t, const struct episode *ep) {
    uint64_t s = t->seed ^ (ep->seed * 0xD6E8FEB86659FD93ull) ^ hash_str(ep->task->instance_id);
    teacher_rng(&s);
    return s;
}

static struct plan make_plan(const struct teacher *t, const struct episode *ep) {
    struct plan p = {0};
    p.seed = episode_seed(t, ep);
    uint64_t r = p.seed;
    p.mistake = unit(&r) < t->error_rate ? (enum teacher_mistake)(1 + pick(&r, TM_COUNT - 1)) : TM_NONE;
    p.variant = (int)pick(&r, 2);
    int explore = unit(&r) < 0.35;
    int typo = ep->task->ref_tool && !strcmp(ep->task->ref_tool, "python") && strstr(ep->task->ref_code, "print(") &&
               unit(&r) < 0.2;
    int n = 0;
    if (p.mistake == TM_MALFORMED) {
        p.steps[n++] = ST_NOTAGS;
        if (p.variant) p.steps[n++] = ST_NOTAGS; /* the second one ends the episode */
    }
    if (p.mistake == TM_GIVE_UP) {
        p.steps[n++] = ST_EXPLORE;
        p.steps[n++] = ST_GIVE_UP;
        p.nsteps = n;
        return p;
    }
    if (explore) p.steps[n++] = ST_EXPLORE;
    if (p.mistake == TM_PERTURBED) p.steps[n++] = ST_PERTURBED;
    else {
        if (typo) p.steps[n++] = ST_TYPO;
        p.steps[n++] = ST_RUN;
    }
    p.steps[n++] = ST_ANSWER;
    p.nsteps = n;
    return p;
}

enum teacher_mistake teacher_plan(const struct teacher *t, const struct episode *ep) { return make_plan(t, ep).mistake; }

/* --- code ------------------------------------------------------------------------------- */

static const char *tool_marker(const char *ref_tool) {
    if (!strcmp(ref_tool, "sql")) return "#!SQL\n";
    if (!strcmp(ref_tool, "bash")) return "#!BASH\n";
    return "";
}

static const char *comment_prefix(const char *ref_tool) { return !strcmp(ref_tool, "sql") ? "-- " : "# "; }

static char *explore_code(const char *ref_tool, uint64_t *r) {
    if (!strcmp(ref_tool, "sql")) {
        static const char *const q[] = {"SELECT name FROM sqlite_master WHERE type='table' ORDER BY name;",
                                        "SELECT name, type FROM sqlite_master WHERE type IN ('table','view') ORDER BY name;"};
        return xasprintf("#!SQL\n%s", PICK(r, q));
    }
    if (!strcmp(ref_tool, "bash")) return xstrdup("#!BASH\nls -l /db 2>/dev/null || echo 'no /db directory here'");
    static const char *const py[] = {
        "import os\nprint(sorted(os.listdir('/db')) if os.path.isdir('/db') else 'no /db directory here')",
        "import sys, os\nprint(sys.version.split()[0])\nprint(os.path.isdir('/db') and sorted(os.listdir('/db')))"};
    return xstrdup(PICK(r, py));
}

static char *run_code(const struct task *t, uint64_t *r) {
    static const char *const notes[] = {"compute the answer", "the lookup this task needs", "final check",
                                        "answer query", "run the full analysis"};
    if (unit(r) < 0.5) return xasprintf("%s%s", tool_marker(t->ref_tool), t->ref_code);
    return xasprintf("%s%s%s\n%s", tool_marker(t->ref_tool), comment_prefix(t->ref_tool), PICK(r, notes), t->ref_code);
}

/* The first print( misspelt: a NameError the teacher then fixes. */
static char *typo_code(const struct task *t) {
    char *c = xstrdup(t->ref_code), *p = strstr(c, "print(");
    if (p) memmove(p + 2, p + 3, strlen(p + 3) + 1); /* print( -> prnt( */
    return c;
}

/* A perturbed query: the first digit after the tool line changed, else the
 * last character of the first quoted literal dropped, else the last line
 * commented out. */
static char *perturbed_code(const struct task *t) {
    char *c = xstrdup(t->ref_code);
    for (char *p = c; *p; p++)
        if (isdigit((unsigned char)*p)) {
            *p = (char)('0' + (*p - '0' + 3) % 10);
            goto done;
        }
    for (char *p = c; *p; p++)
        if (*p == '\'' || *p == '"') {
            char *q = strchr(p + 1, *p);
            if (q && q - p > 2) {
                memmove(q - 1, q, strlen(q) + 1);
                goto done;
            }
            if (q) p = q;
        }
    {
        char *last = strrchr(c, '\n');
        char *r = xasprintf("%.*s\n%s%s", last ? (int)(last - c) : 0, c, comment_prefix(t->ref_tool), last ? last + 1 : c);
        free(c);
        c = r;
    }
done:;
    char *r = xasprintf("%s%s", tool_marker(t->ref_tool), c);
    free(c);
    return r;
}

/* --- reading observations ------------------------------------------------------------------ */

/* The last non-blank line the last tool call printed (malloc'd), NULL if
 * none. The teacher reads stdout, not the whole observation, the way a person
 * tells a result from a library's warning on stderr. */
static char *last_result_line(const struct episode *ep) {
    const struct turn *o = conv_last(&ep->conv, ROLE_TOOL);
    if (!o) return NULL;
    const char *s = o->text, *e = o->text + o->len;
    if (ep->last_stdout) s = ep->last_stdout, e = s + ep->last_stdout_len;
    if (!strncmp(s, "<observation>", 13)) s += 13;
    if (e - s >= 14 && !strncmp(e - 14, "</observation>", 14)) e -= 14;
    while (e > s) {
        const char *ls = e;
        while (ls > s && ls[-1] != '\n') ls--;
        const char *a = ls, *b = e;
        while (a < b && isspace((unsigned char)*a)) a++;
        while (b > a && isspace((unsigned char)b[-1])) b--;
        if (b > a) return xstrndup(a, (size_t)(b - a));
        e = ls > s ? ls - 1 : s;
    }
    return NULL;
}

static int observation_failed(const struct episode *ep) {
    const struct turn *o = conv_last(&ep->conv, ROLE_TOOL);
    if (!o) return 1;
    return strstr(o->text, "Traceback (most recent call last)") || strstr(o->text, "[exit code") ||
           strstr(o->text, "[timed out") || strstr(o->text, "Error from the sandbox") || strstr(o->text, "Error: ") ||
           strstr(o->text, "Parse error") || o->len <= strlen("<observation></observation>");
}

/* --- wording ------------------------------------------------------------------------------------ */

static const char *const think_explore[] = {
    "Before writing the real query I want to see what data is available.",
    "Let me first look around: which tables or files do I have to work with?",
    "I'll start by checking the environment so the next step targets the right data.",
    "A quick look at the available data first, then the actual analysis.",
    "I am not yet sure of the layout, so I'll inspect the data sources before querying.",
};
static const char *const think_run[] = {
    "Now I can compute the answer directly; the code below does the lookup and prints the result last.",
    "The task reduces to one lookup. I'll run it and read the last line of the output.",
    "I'll run the analysis that answers the question and print the result at the end.",
    "Next step: query the data for exactly what the task asks and print the answer.",
    "With the data in view, I'll write the code that produces the answer.",
    "Let me run the computation; its final printed line should be the answer.",
};
static const char *const think_retry[] = {
    "That did not work; let me fix the mistake and run it again.",
    "The last run failed. I'll correct the code and retry.",
    "An error came back, so I'll rerun with the problem fixed.",
};
/* answer thoughts: text before and after the answer */
static const char *const think_answer[][2] = {
    {"The output gives the result: ", ". That is the answer in the requested format."},
    {"The last line of the observation is ", ", which answers the question."},
    {"From the observation, the answer is ", "."},
    {"The computation returned ", "; I'm confident in this answer."},
    {"Reading the output: ", ". I'll give that as the final answer."},
};
static const char *const think_giveup[] = {
    "I can't find a reliable way to get this from the available data.",
    "The data I looked at does not seem to contain what I need; I'll stop here.",
};
static const char *const notags[] = {
    "Let me look at the data first and then decide what to compute.",
    "I will query the database for the relevant genes now.",
    "Okay, running the analysis.",
};
static const char *const think_random[] = {
    "Going with my best guess from the candidates listed in the task.",
    "I'll pick one of the listed options.",
    "Answering directly from the options in the prompt.",
};

static char *msg_execute(const char *think, const char *code) { return xasprintf("<think>%s</think>\n<execute>\n%s\n</execute>", think, code); }
static char *msg_solution(const char *think, const char *answer) { return xasprintf("<think>%s</think>\n<solution>%s</solution>", think, answer); }

/* --- the teacher ---------------------------------------------------------------------------------- */

char *teacher_next(void *ctx, const struct episode *ep) {
    const struct teacher *t = ctx;
    const struct task *task = ep->task;
    if (!task->ref_code) return msg_solution("There is no reference procedure for this task.", "unknown");
    struct plan p = make_plan(t, ep);
    int k = ep->turns;
    uint64_t r = p.seed + 0x632BE59BD9B4E019ull * (uint64_t)(k + 1);
    enum step st = k < p.nsteps ? p.steps[k] : ST_ANSWER;
    /* a careful solver reruns a failed run instead of answering from an error */
    if (st == ST_ANSWER && p.mistake != TM_PERTURBED && observation_failed(ep) && k < ep->cfg.max_turns - 1 && k < 8)
        st = ST_RUN;
    char *code, *out, *line, *ans;
    switch (st) {
    case ST_NOTAGS: return xstrdup(PICK(&r, notags));
    case ST_EXPLORE:
        code = explore_code(task->ref_tool, &r);
        out = msg_execute(PICK(&r, think_explore), code);
        free(code);
        return out;
    case ST_TYPO: {
        char *c = typo_code(task);
        code = xasprintf("%s%s", tool_marker(task->ref_tool), c);
        free(c);
        out = msg_execute(PICK(&r, think_run), code);
        free(code);
        return out;
    }
    case ST_RUN:
        code = run_code(task, &r);
        out = msg_execute(k > 0 && observation_failed(ep) && conv_last(&ep->conv, ROLE_TOOL) ? PICK(&r, think_retry) : PICK(&r, think_run), code);
        free(code);
        return out;
    case ST_PERTURBED:
        code = perturbed_code(task);
        out = msg_execute(PICK(&r, think_run), code);
        free(code);
        return out;
    case ST_GIVE_UP: return msg_solution(PICK(&r, think_giveup), "I could not determine the answer.");
    case ST_ANSWER:
        line = last_result_line(ep);
        ans = line && !(p.mistake == TM_PERTURBED && observation_failed(ep)) ? xstrdup(line) : random_answer(task, &r);
        free(line);
        size_t w = pick(&r, sizeof think_answer / sizeof think_answer[0]);
        char *think = xasprintf("%s%s%s", think_answer[w][0], ans, think_answer[w][1]);
        if (p.mistake == TM_FORMAT && p.variant == 0) {
            char *prose = xasprintf("Based on my analysis, the answer is %s.", ans);
            out = msg_solution(think, prose);
            free(prose);
        } else if (p.mistake == TM_FORMAT) out = xasprintf("<solution>%s</solution>", ans); /* no <think> */
        else out = msg_solution(think, ans);
        free(ans), free(think);
        return out;
    }
    return NULL;
}

/* --- the random agent ------------------------------------------------------------------------------ */

struct cands {
    char **v;
    size_t n, cap;
};

static void cand_add(struct cands *c, const char *s, size_t n) {
    for (size_t i = 0; i < c->n; i++)
        if (strlen(c->v[i]) == n && !strncmp(c->v[i], s, n)) return;
    if (c->n == c->cap) c->cap = c->cap ? 2 * c->cap : 16, c->v = xrealloc(c->v, c->cap * sizeof *c->v);
    c->v[c->n++] = xstrndup(s, n);
}

static void cand_free(struct cands *c) {
    for (size_t i = 0; i < c->n; i++) free(c->v[i]);
    free(c->v);
}

static int word_char(char ch) { return isalnum((unsigned char)ch) || ch == '-' || ch == '_' || ch == '.'; }

/* Words of the prompt accepted by `ok`, in order, without duplicates. */
static void scan_words(const char *s, int (*ok)(const char *w, size_t n), struct cands *c) {
    for (const char *p = s; *p;) {
        if (!word_char(*p)) {
            p++;
            continue;
        }
        const char *q = p;
        while (*q && word_char(*q)) q++;
        size_t n = (size_t)(q - p);
        while (n && (p[n - 1] == '.' || p[n - 1] == '-')) n--; /* sentence punctuation */
        if (n && ok(p, n)) cand_add(c, p, n);
        p = q;
    }
}

static int is_rsid(const char *w, size_t n) {
    if (n < 3 || strncmp(w, "rs", 2)) return 0;
    for (size_t i = 2; i < n; i++)
        if (!isdigit((unsigned char)w[i])) return 0;
    return 1;
}

/* Variant positions as our tasks write them: "chr7:117559590". */
static void scan_positions(const char *s, struct cands *c) {
    for (const char *p = strstr(s, "chr"); p; p = strstr(p + 1, "chr")) {
        const char *q = p + 3;
        while (isalnum((unsigned char)*q)) q++;
        if (q == p + 3 || *q != ':' || !isdigit((unsigned char)q[1])) continue;
        q++;
        while (isdigit((unsigned char)*q)) q++;
        cand_add(c, p, (size_t)(q - p));
    }
}

static int is_ensg(const char *w, size_t n) {
    if (n < 5 || strncmp(w, "ENSG", 4)) return 0;
    for (size_t i = 4; i < n; i++)
        if (!isdigit((unsigned char)w[i])) return 0;
    return 1;
}

static int is_omim(const char *w, size_t n) {
    if (n != 6) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)w[i])) return 0;
    return 1;
}

/* Gene-symbol shaped: starts with a capital, capitals/digits/hyphens after,
 * not a common acronym of these prompts. */
static int is_symbol(const char *w, size_t n) {
    static const char *const stop[] = {"GWAS", "DNA", "RNA", "SNP", "SNPS", "ID", "IDS", "JSON", "OMIM", "HPO", "GO",
                                       "CRISPR", "USA", "NCBI", "KEGG", "UNIPROT", "ENSEMBL", "HGNC", "MHC", "HLA",
                                       "OR", "AND", "NOT", "THE", "A", "I", "II", "III", "IV", "QC", "PCR", "ENTREZ"};
    if (n < 2 || n > 15 || !isupper((unsigned char)w[0])) return 0;
    int letters = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(isupper((unsigned char)w[i]) || isdigit((unsigned char)w[i]) || w[i] == '-')) return 0;
        letters += isupper((unsigned char)w[i]) != 0;
    }
    if (letters < 2 && n < 3) return 0;
    if (is_ensg(w, n)) return 0;
    for (size_t k = 0; k < sizeof stop / sizeof stop[0]; k++)
        if (strlen(stop[k]) == n && !strncmp(stop[k], w, n)) return 0;
    return 1;
}

/* Option letters: lines like "A. ...", "A) ...", "(A) ...", "[A] ...", "A: ...". */
static void scan_letters(const char *s, struct cands *c) {
    for (const char *line = s; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        int open = *p == '(' || *p == '[';
        if (open) p++;
        if (isalpha((unsigned char)p[0]) && !isalpha((unsigned char)p[1]) &&
            ((open && (p[1] == ')' || p[1] == ']')) || (!open && (p[1] == '.' || p[1] == ')' || p[1] == ':'))))
            cand_add(c, p, 1);
    }
}

/* The line with the most gene-shaped words (a locus or candidate list). */
static void scan_gene_list(const char *s, struct cands *out) {
    struct cands best = {0};
    const char *line = s;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        char *l = end ? xstrndup(line, (size_t)(end - line)) : xstrdup(line);
        struct cands c = {0};
        scan_words(l, is_symbol, &c);
        if (c.n > best.n) {
            cand_free(&best);
            best = c;
        } else cand_free(&c);
        free(l);
        line = end ? end + 1 : NULL;
    }
    if (best.n >= 2) *out = best;
    else {
        cand_free(&best);
        scan_words(s, is_symbol, out);
    }
}

char *random_answer(const struct task *t, uint64_t *rng) {
    const char *g = t->grader;
    struct cands c = {0};
    char *ans;
    if (!strcmp(g, "crispr_delivery")) {
        static const char *const l[] = {"a", "b", "c", "d", "e", "f"};
        return xstrdup(PICK(rng, l));
    }
    if (!strncmp(g, "lab_bench", 9) || !strcmp(g, "hle")) {
        scan_letters(t->prompt, &c);
        if (c.n < 2) {
            cand_free(&c);
            memset(&c, 0, sizeof c);
            for (const char *x = "ABCD"; *x; x++) cand_add(&c, x, 1);
        }
        ans = xstrdup(c.v[pick(rng, c.n)]);
    } else if (!strcmp(g, "gwas_variant_prioritization")) {
        scan_words(t->prompt, is_rsid, &c); /* Eval1: rsIDs; our tasks: chrN:position */
        if (!c.n) scan_positions(t->prompt, &c);
        ans = c.n ? xstrdup(c.v[pick(rng, c.n)]) : xstrdup("rs1");
    } else if (!strcmp(g, "patient_gene_detection")) {
        scan_words(t->prompt, is_ensg, &c);
        ans = xasprintf("{\"causal_gene\": [\"%s\"]}", c.n ? c.v[pick(rng, c.n)] : "ENSG00000000003");
    } else if (!strcmp(g, "rare_disease_diagnosis")) {
        scan_words(t->prompt, is_omim, &c);
        char buf[16];
        snprintf(buf, sizeof buf, "%06u", (unsigned)(100000 + pick(rng, 900000)));
        ans = xasprintf("{\"disease_name\": \"unknown\", \"OMIM_ID\": \"%s\"}", c.n ? c.v[pick(rng, c.n)] : buf);
    } else { /* gene symbols: gwas_causal_gene*, screen_gene_retrieval */
        scan_gene_list(t->prompt, &c);
        ans = c.n ? xstrdup(c.v[pick(rng, c.n)]) : xstrdup("TP53");
    }
    cand_free(&c);
    return ans;
}

char *random_next(void *ctx, const struct episode *ep) {
    uint64_t s = (ctx ? *(uint64_t *)ctx : 0) ^ (ep->seed * 0xA24BAED4963EE407ull) ^ hash_str(ep->task->instance_id);
    teacher_rng(&s);
    char *a = random_answer(ep->task, &s);
    char *m = msg_solution(PICK(&s, think_random), a);
    free(a);
    return m;
}
