/*
 * graders_literal.c - json.loads and ast.literal_eval, as far as Eval1's
 * graders can tell them apart (see graders_literal.h).
 *
 * Both parsers are recursive descent over (pointer, length) with a depth cap,
 * so hostile input cannot overflow the stack; every failure returns NULL,
 * which the graders turn into a score of 0 exactly where Python would raise.
 */
#define _GNU_SOURCE
#include "graders_literal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"

#define PV_MAX_DEPTH 200   /* ast.literal_eval: CPython's parser refuses more than 200 nested brackets */
#define PV_JSON_DEPTH 900  /* json.loads: CPython recurses until its recursion limit (1000 frames, less
                              the caller's); 900 is that limit, approximately */

struct pstate {
    const char *s;
    size_t n, i;
    int depth;
};

/* --- values -------------------------------------------------------------------- */

static struct pyval *pv_new(enum pv_kind k) {
    struct pyval *v = xcalloc(1, sizeof *v);
    v->kind = k;
    return v;
}

void pv_free(struct pyval *v) {
    if (!v) return;
    size_t m = v->kind == PV_DICT ? 2 * v->n : v->n;
    for (size_t k = 0; k < m; k++) pv_free(v->items[k]);
    free(v->items);
    free(v->s);
    free(v);
}

static void pv_push(struct pyval *c, struct pyval *item, size_t *cap) {
    size_t m = c->kind == PV_DICT ? 2 * c->n : c->n;
    if (m + 2 > *cap) {
        *cap = *cap ? 2 * *cap : 8;
        c->items = xrealloc(c->items, *cap * sizeof *c->items);
    }
    c->items[m] = item;
}

static int is_num(const struct pyval *v) {
    return v->kind == PV_BOOL || v->kind == PV_INT || v->kind == PV_BIGINT || v->kind == PV_FLOAT || v->kind == PV_COMPLEX;
}

/* Real part of a number as a double (exact for INT up to 2^53). */
static double num_real(const struct pyval *v) {
    if (v->kind == PV_BOOL || v->kind == PV_INT) return (double)v->i;
    if (v->kind == PV_BIGINT) return strtod(v->s, NULL);
    return v->f;
}

static int int_eq_float(int64_t i, double f) {
    /* exact, like Python: a float equals an int only if it is that integer */
    if (!(f == floor(f)) || f < -9223372036854775808.0 || f >= 9223372036854775808.0) return 0;
    return (int64_t)f == i;
}

static int num_equal(const struct pyval *a, const struct pyval *b) {
    if (a->kind == PV_COMPLEX || b->kind == PV_COMPLEX) {
        double ai = a->kind == PV_COMPLEX ? a->imag : 0, bi = b->kind == PV_COMPLEX ? b->imag : 0;
        if (ai != bi) return 0;
        struct pyval ra = *a, rb = *b;
        if (ra.kind == PV_COMPLEX) ra.kind = PV_FLOAT;
        if (rb.kind == PV_COMPLEX) rb.kind = PV_FLOAT;
        return num_equal(&ra, &rb);
    }
    int ai = a->kind == PV_BOOL || a->kind == PV_INT, bi = b->kind == PV_BOOL || b->kind == PV_INT;
    if (ai && bi) return a->i == b->i;
    if (a->kind == PV_BIGINT && b->kind == PV_BIGINT) return strcmp(a->s, b->s) == 0;
    if ((a->kind == PV_BIGINT && bi) || (b->kind == PV_BIGINT && ai)) return 0; /* a BIGINT never fits int64 */
    if (ai && b->kind == PV_FLOAT) return int_eq_float(a->i, b->f);
    if (bi && a->kind == PV_FLOAT) return int_eq_float(b->i, a->f);
    return num_real(a) == num_real(b); /* float/float, BIGINT/float (through a double) */
}

static int contains(const struct pyval *c, const struct pyval *x) {
    for (size_t k = 0; k < c->n; k++)
        if (pv_equal(c->items[k], x)) return 1;
    return 0;
}

int pv_equal(const struct pyval *a, const struct pyval *b) {
    if (is_num(a) && is_num(b)) return num_equal(a, b);
    if (a->kind != b->kind) return 0;
    switch (a->kind) {
    case PV_NONE: return 1;
    case PV_STR:
    case PV_BYTES: return a->slen == b->slen && memcmp(a->s, b->s, a->slen) == 0;
    case PV_LIST:
    case PV_TUPLE:
        if (a->n != b->n) return 0;
        for (size_t k = 0; k < a->n; k++)
            if (!pv_equal(a->items[k], b->items[k])) return 0;
        return 1;
    case PV_SET:
        if (a->n != b->n) return 0;
        for (size_t k = 0; k < a->n; k++)
            if (!contains(b, a->items[k])) return 0;
        return 1;
    case PV_DICT:
        if (a->n != b->n) return 0;
        for (size_t k = 0; k < a->n; k++) {
            size_t j;
            for (j = 0; j < b->n; j++)
                if (pv_equal(a->items[2 * k], b->items[2 * j])) break;
            if (j == b->n || !pv_equal(a->items[2 * k + 1], b->items[2 * j + 1])) return 0;
        }
        return 1;
    default: return 0;
    }
}

int pv_hashable(const struct pyval *v) {
    if (v->kind == PV_LIST || v->kind == PV_DICT || v->kind == PV_SET) return 0;
    if (v->kind == PV_TUPLE)
        for (size_t k = 0; k < v->n; k++)
            if (!pv_hashable(v->items[k])) return 0;
    return 1;
}

const struct pyval *pv_dict_get(const struct pyval *d, const char *key) {
    if (!d || d->kind != PV_DICT) return NULL;
    struct pyval k = {.kind = PV_STR, .s = (char *)key, .slen = strlen(key)};
    for (size_t j = 0; j < d->n; j++)
        if (pv_equal(d->items[2 * j], &k)) return d->items[2 * j + 1];
    return NULL;
}

/* Insert into a dict (a later equal key replaces the value) or a set (dedup). */
static void dict_put(struct pyval *d, struct pyval *k, struct pyval *v, size_t *cap) {
    for (size_t j = 0; j < d->n; j++)
        if (pv_equal(d->items[2 * j], k)) {
            pv_free(k);
            pv_free(d->items[2 * j + 1]);
            d->items[2 * j + 1] = v;
            return;
        }
    pv_push(d, k, cap);
    d->items[2 * d->n + 1] = v;
    d->n++;
}

static void set_put(struct pyval *s, struct pyval *x, size_t *cap) {
    if (contains(s, x)) {
        pv_free(x);
        return;
    }
    pv_push(s, x, cap);
    s->n++;
}

/* --- a growable byte buffer ---------------------------------------------------- */

struct sbuf {
    char *p;
    size_t n, cap;
};

static void sb_add(struct sbuf *b, const void *d, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_utf8(struct sbuf *b, uint32_t cp) {
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) u[0] = (unsigned char)cp, n = 1;
    else if (cp < 0x800) u[0] = 0xC0 | (cp >> 6), u[1] = 0x80 | (cp & 63), n = 2;
    else if (cp < 0x10000) u[0] = 0xE0 | (cp >> 12), u[1] = 0x80 | ((cp >> 6) & 63), u[2] = 0x80 | (cp & 63), n = 3;
    else u[0] = 0xF0 | (cp >> 18), u[1] = 0x80 | ((cp >> 12) & 63), u[2] = 0x80 | ((cp >> 6) & 63), u[3] = 0x80 | (cp & 63), n = 4;
    sb_add(b, u, n);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* n hex digits at s[i..] or -1. */
static long hexn(const char *s, size_t len, size_t i, int n) {
    if (i + (size_t)n > len) return -1;
    long v = 0;
    for (int k = 0; k < n; k++) {
        int h = hexval((unsigned char)s[i + k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* An integer's decimal text (no sign, leading zeros gone) into INT or BIGINT. */
static struct pyval *make_int(int neg, const char *digits) {
    while (digits[0] == '0' && digits[1]) digits++;
    errno = 0;
    char *end;
    unsigned long long u = strtoull(digits, &end, 10);
    if (errno == 0 && *end == 0 && (u <= (unsigned long long)INT64_MAX || (neg && u == (unsigned long long)INT64_MAX + 1))) {
        struct pyval *v = pv_new(PV_INT);
        v->i = neg ? (int64_t)(0 - u) : (int64_t)u;
        return v;
    }
    struct pyval *v = pv_new(PV_BIGINT);
    v->s = xasprintf("%s%s", neg && strcmp(digits, "0") ? "-" : "", digits);
    v->slen = strlen(v->s);
    return v;
}

static void negate(struct pyval *v) {
    if (v->kind == PV_INT) {
        if (v->i == INT64_MIN) { /* -(-2^63) leaves int64 */
            v->kind = PV_BIGINT;
            v->s = xstrdup("9223372036854775808");
            v->slen = strlen(v->s);
        } else v->i = -v->i;
    } else if (v->kind == PV_BIGINT) {
        char *t = v->s[0] == '-' ? xstrdup(v->s + 1) : xasprintf("-%s", v->s);
        free(v->s);
        v->s = t;
        v->slen = strlen(t);
        if (strcmp(t, "-9223372036854775808") == 0) { /* back into int64 */
            free(v->s);
            v->s = NULL;
            v->kind = PV_INT;
            v->i = INT64_MIN;
        }
    } else if (v->kind == PV_FLOAT) v->f = -v->f;
    else if (v->kind == PV_COMPLEX) v->f = -v->f, v->imag = -v->imag;
}

/* --- json.loads ------------------------------------------------------------------ */

static void json_ws(struct pstate *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

static int lit(struct pstate *p, const char *w) {
    size_t m = strlen(w);
    if (p->i + m <= p->n && memcmp(p->s + p->i, w, m) == 0) {
        p->i += m;
        return 1;
    }
    return 0;
}

static struct pyval *json_string(struct pstate *p) {
    p->i++; /* opening quote */
    struct sbuf b = {0};
    sb_add(&b, "", 0);
    while (p->i < p->n) {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') {
            p->i++;
            struct pyval *v = pv_new(PV_STR);
            v->s = b.p, v->slen = b.n;
            return v;
        }
        if (c < 0x20) break; /* strict mode: no raw control characters */
        if (c != '\\') {
            sb_add(&b, &p->s[p->i++], 1);
            continue;
        }
        if (++p->i >= p->n) break;
        char e = p->s[p->i++], out;
        switch (e) {
        case '"': out = '"'; break;
        case '\\': out = '\\'; break;
        case '/': out = '/'; break;
        case 'b': out = '\b'; break;
        case 'f': out = '\f'; break;
        case 'n': out = '\n'; break;
        case 'r': out = '\r'; break;
        case 't': out = '\t'; break;
        case 'u': {
            long cp = hexn(p->s, p->n, p->i, 4);
            if (cp < 0) goto fail;
            p->i += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p->i + 6 <= p->n && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
                long lo = hexn(p->s, p->n, p->i + 2, 4);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p->i += 6;
                }
            }
            sb_utf8(&b, (uint32_t)cp);
            continue;
        }
        default: goto fail;
        }
        sb_add(&b, &out, 1);
    }
fail:
    free(b.p);
    return NULL;
}

static struct pyval *json_number(struct pstate *p) {
    size_t st = p->i;
    int neg = 0;
    if (p->s[p->i] == '-') neg = 1, p->i++;
    if (lit(p, "Infinity")) {
        struct pyval *v = pv_new(PV_FLOAT);
        v->f = neg ? -INFINITY : INFINITY;
        return v;
    }
    size_t ds = p->i;
    if (p->i < p->n && p->s[p->i] == '0') p->i++;
    else if (p->i < p->n && p->s[p->i] >= '1' && p->s[p->i] <= '9')
        while (p->i < p->n && isdigit((unsigned char)p->s[p->i])) p->i++;
    else return NULL;
    size_t de = p->i;
    int isfloat = 0;
    if (p->i + 1 < p->n && p->s[p->i] == '.' && isdigit((unsigned char)p->s[p->i + 1])) {
        isfloat = 1, p->i++;
        while (p->i < p->n && isdigit((unsigned char)p->s[p->i])) p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        size_t j = p->i + 1;
        if (j < p->n && (p->s[j] == '+' || p->s[j] == '-')) j++;
        if (j < p->n && isdigit((unsigned char)p->s[j])) {
            isfloat = 1, p->i = j;
            while (p->i < p->n && isdigit((unsigned char)p->s[p->i])) p->i++;
        }
    }
    char *txt = xmalloc(p->i - st + 1);
    if (!isfloat) {
        memcpy(txt, p->s + ds, de - ds), txt[de - ds] = 0;
        struct pyval *v = make_int(neg, txt);
        free(txt);
        return v;
    }
    memcpy(txt, p->s + st, p->i - st), txt[p->i - st] = 0;
    struct pyval *v = pv_new(PV_FLOAT);
    v->f = strtod(txt, NULL);
    free(txt);
    return v;
}

static struct pyval *json_value(struct pstate *p) {
    json_ws(p);
    if (p->i >= p->n) return NULL;
    char c = p->s[p->i];
    if (c == '"') return json_string(p);
    if (c == '{' || c == '[') {
        if (++p->depth > PV_JSON_DEPTH) return NULL;
        int obj = c == '{';
        char close = obj ? '}' : ']';
        struct pyval *v = pv_new(obj ? PV_DICT : PV_LIST);
        size_t cap = 0;
        p->i++;
        json_ws(p);
        if (p->i < p->n && p->s[p->i] == close) {
            p->i++, p->depth--;
            return v;
        }
        for (;;) {
            struct pyval *k = NULL;
            if (obj) {
                json_ws(p);
                if (p->i >= p->n || p->s[p->i] != '"' || !(k = json_string(p))) goto fail;
                json_ws(p);
                if (p->i >= p->n || p->s[p->i] != ':') {
                    pv_free(k);
                    goto fail;
                }
                p->i++;
            }
            struct pyval *x = json_value(p);
            if (!x) {
                pv_free(k);
                goto fail;
            }
            if (obj) dict_put(v, k, x, &cap);
            else pv_push(v, x, &cap), v->n++;
            json_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (p->i < p->n && p->s[p->i] == close) {
                p->i++, p->depth--;
                return v;
            }
            goto fail;
        }
    fail:
        pv_free(v);
        return NULL;
    }
    if (lit(p, "true") || lit(p, "false")) {
        struct pyval *v = pv_new(PV_BOOL);
        v->i = p->s[p->i - 1] == 'e' && p->s[p->i - 2] == 'u';
        return v;
    }
    if (lit(p, "null")) return pv_new(PV_NONE);
    if (lit(p, "NaN")) {
        struct pyval *v = pv_new(PV_FLOAT);
        v->f = NAN;
        return v;
    }
    if (c == '-' || isdigit((unsigned char)c) || c == 'I') {
        if (c == 'I') {
            if (!lit(p, "Infinity")) return NULL;
            struct pyval *v = pv_new(PV_FLOAT);
            v->f = INFINITY;
            return v;
        }
        return json_number(p);
    }
    return NULL;
}

struct pyval *pv_parse_json(const char *text, size_t len) {
    struct pstate p = {text, len, 0, 0};
    struct pyval *v = json_value(&p);
    if (!v) return NULL;
    json_ws(&p);
    if (p.i != p.n) { /* "Extra data" */
        pv_free(v);
        return NULL;
    }
    return v;
}

/* --- ast.literal_eval -------------------------------------------------------------- */

/* Skip blanks, comments and backslash-newlines; newlines only inside brackets. */
static void py_ws(struct pstate *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == ' ' || c == '\t' || c == '\f') p->i++;
        else if (c == '#')
            while (p->i < p->n && p->s[p->i] != '\n') p->i++;
        else if (c == '\\' && p->i + 1 < p->n && p->s[p->i + 1] == '\n') p->i += 2;
        else if (c == '\\' && p->i + 2 < p->n && p->s[p->i + 1] == '\r' && p->s[p->i + 2] == '\n') p->i += 3;
        else if ((c == '\n' || c == '\r') && p->depth > 0) p->i++;
        else break;
    }
}

static int ident_char(char c) { return isalnum((unsigned char)c) || c == '_' || (unsigned char)c >= 0x80; }

/* One string token (prefix already read into raw/bytes). */
static int py_string_token(struct pstate *p, int raw, int bytes, struct sbuf *b) {
    char q = p->s[p->i];
    int triple = p->i + 2 < p->n && p->s[p->i + 1] == q && p->s[p->i + 2] == q;
    p->i += triple ? 3 : 1;
    for (;;) {
        if (p->i >= p->n) return -1;
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == (unsigned char)q) {
            if (!triple) {
                p->i++;
                return 0;
            }
            if (p->i + 2 < p->n && p->s[p->i + 1] == q && p->s[p->i + 2] == q) {
                p->i += 3;
                return 0;
            }
        }
        if ((c == '\n' || c == '\r') && !triple) return -1;
        if (bytes && c >= 0x80) return -1; /* bytes can only contain ASCII literal characters */
        if (c != '\\') {
            sb_add(b, &p->s[p->i++], 1);
            continue;
        }
        if (p->i + 1 >= p->n) return -1;
        char e = p->s[p->i + 1];
        if (raw) { /* a backslash keeps the next character, both stay */
            sb_add(b, p->s + p->i, 2);
            p->i += 2;
            continue;
        }
        p->i += 2;
        char out;
        switch (e) {
        case '\n': continue;
        case '\\': out = '\\'; break;
        case '\'': out = '\''; break;
        case '"': out = '"'; break;
        case 'a': out = '\a'; break;
        case 'b': out = '\b'; break;
        case 'f': out = '\f'; break;
        case 'n': out = '\n'; break;
        case 'r': out = '\r'; break;
        case 't': out = '\t'; break;
        case 'v': out = '\v'; break;
        case 'x': {
            long h = hexn(p->s, p->n, p->i, 2);
            if (h < 0) return -1;
            p->i += 2;
            if (bytes) {
                char ch = (char)h;
                sb_add(b, &ch, 1);
            } else sb_utf8(b, (uint32_t)h);
            continue;
        }
        case 'u':
        case 'U':
            if (bytes) {
                sb_add(b, p->s + p->i - 2, 2);
                continue;
            } else {
                long h = hexn(p->s, p->n, p->i, e == 'u' ? 4 : 8);
                if (h < 0 || h > 0x10FFFF) return -1;
                p->i += e == 'u' ? 4 : 8;
                sb_utf8(b, (uint32_t)h);
                continue;
            }
        case 'N':
            if (bytes) {
                sb_add(b, p->s + p->i - 2, 2);
                continue;
            }
            return -1; /* \N{name}: we carry no Unicode name table; treated as an error */
        default:
            if (e >= '0' && e <= '7') {
                int v = e - '0', k = 1;
                while (k < 3 && p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '7') v = v * 8 + (p->s[p->i++] - '0'), k++;
                if (bytes) {
                    char ch = (char)(v & 0xFF);
                    sb_add(b, &ch, 1);
                } else sb_utf8(b, (uint32_t)v);
                continue;
            }
            sb_add(b, p->s + p->i - 2, 2); /* unknown escape: kept as written */
            continue;
        }
        sb_add(b, &out, 1);
    }
}

/* Adjacent string literals concatenate; str and bytes do not mix. 1 if a
 * string was here, 0 if not, -1 on error. */
static int py_strings(struct pstate *p, struct pyval **out) {
    struct sbuf b = {0};
    sb_add(&b, "", 0);
    int kind = -1; /* 0 str, 1 bytes */
    for (;;) {
        size_t j = p->i;
        int raw = 0, bytes = 0, fstr = 0, np = 0;
        while (j < p->n && np < 2 && strchr("rRbBuUfF", p->s[j]) && p->s[j]) {
            char c = (char)tolower((unsigned char)p->s[j]);
            raw |= c == 'r', bytes |= c == 'b', fstr |= c == 'f';
            j++, np++;
        }
        if (j >= p->n || (p->s[j] != '\'' && p->s[j] != '"')) {
            if (kind < 0) {
                free(b.p);
                return 0;
            }
            break;
        }
        if (fstr || (np == 2 && tolower((unsigned char)p->s[p->i]) == tolower((unsigned char)p->s[p->i + 1])) ||
            (np == 2 && (strchr("uU", p->s[p->i]) || strchr("uU", p->s[p->i + 1]))))
            goto fail; /* f-strings are not literals; "rr", "ur" are not prefixes */
        if (kind >= 0 && kind != bytes) goto fail;
        kind = bytes;
        p->i = j;
        if (py_string_token(p, raw, bytes, &b) < 0) goto fail;
        py_ws(p);
    }
    struct pyval *v = pv_new(kind ? PV_BYTES : PV_STR);
    v->s = b.p, v->slen = b.n;
    *out = v;
    return 1;
fail:
    free(b.p);
    return -1;
}

/* Digits with single underscores between them, in base `base`. Copies the
 * digits (without '_') into d. Returns the count, -1 on a misplaced '_'. */
static int py_digits(struct pstate *p, int base, struct sbuf *d) {
    int count = 0;
    for (;;) {
        if (p->i >= p->n) break;
        char c = p->s[p->i];
        int h = hexval((unsigned char)c);
        if (c == '_') {
            if (count == 0 || p->i + 1 >= p->n) return -1;
            int h2 = hexval((unsigned char)p->s[p->i + 1]);
            if (h2 < 0 || h2 >= base) return -1;
            p->i++;
            continue;
        }
        if (h < 0 || h >= base) break;
        sb_add(d, &c, 1);
        p->i++, count++;
    }
    return count;
}

static struct pyval *py_number(struct pstate *p) {
    struct sbuf d = {0};
    sb_add(&d, "", 0);
    struct pyval *v = NULL;
    char c0 = p->s[p->i];
    if (c0 == '0' && p->i + 1 < p->n && strchr("xXoObB", p->s[p->i + 1]) && p->s[p->i + 1]) {
        char t = (char)tolower((unsigned char)p->s[p->i + 1]);
        int base = t == 'x' ? 16 : t == 'o' ? 8 : 2;
        p->i += 2;
        if (p->i < p->n && p->s[p->i] == '_') p->i++; /* 0x_1f is allowed */
        if (py_digits(p, base, &d) <= 0) goto out;
        /* convert to decimal text through unsigned __int128 when it fits, else BIGINT is rare: refuse */
        unsigned __int128 acc = 0;
        for (size_t k = 0; k < d.n; k++) {
            if (acc > ((unsigned __int128)1 << 120)) goto out;
            acc = acc * (unsigned)base + (unsigned)hexval((unsigned char)d.p[k]);
        }
        char dec[64];
        int n = 0;
        do dec[n++] = (char)('0' + (int)(acc % 10)), acc /= 10;
        while (acc);
        char txt[64];
        for (int k = 0; k < n; k++) txt[k] = dec[n - 1 - k];
        txt[n] = 0;
        v = make_int(0, txt);
    } else {
        int nint = c0 == '.' ? 0 : py_digits(p, 10, &d);
        if (nint < 0) goto out;
        size_t intlen = d.n;
        int isfloat = 0;
        if (p->i < p->n && p->s[p->i] == '.') {
            isfloat = 1, p->i++;
            sb_add(&d, ".", 1);
            if (p->i < p->n && isdigit((unsigned char)p->s[p->i]) && py_digits(p, 10, &d) < 0) goto out;
            if (nint == 0 && d.n == intlen + 1) goto out; /* a lone "." */
        }
        if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
            size_t j = p->i + 1;
            if (j < p->n && (p->s[j] == '+' || p->s[j] == '-')) j++;
            if (j < p->n && isdigit((unsigned char)p->s[j])) {
                sb_add(&d, "e", 1);
                if (p->s[p->i + 1] == '-') sb_add(&d, "-", 1);
                p->i = j;
                isfloat = 1;
                if (py_digits(p, 10, &d) < 0) goto out;
            }
        }
        if (p->i < p->n && (p->s[p->i] == 'j' || p->s[p->i] == 'J')) {
            p->i++;
            v = pv_new(PV_COMPLEX);
            v->imag = strtod(d.p, NULL);
        } else if (isfloat) {
            v = pv_new(PV_FLOAT);
            v->f = strtod(d.p, NULL);
        } else {
            /* "012" is a syntax error; "00" is fine */
            int allzero = 1;
            for (size_t k = 0; k < d.n; k++) allzero &= d.p[k] == '0';
            if (d.n > 1 && d.p[0] == '0' && !allzero) goto out;
            v = make_int(0, d.p);
        }
    }
    if (p->i < p->n && ident_char(p->s[p->i])) { /* "1abc" */
        pv_free(v);
        v = NULL;
    }
out:
    free(d.p);
    return v;
}

static struct pyval *py_value(struct pstate *p);

/* A number with any one unary sign: literal_eval's signed constant. */
static struct pyval *py_signed(struct pstate *p) {
    int neg = 0, sign = 0;
    if (p->i < p->n && (p->s[p->i] == '-' || p->s[p->i] == '+')) {
        neg = p->s[p->i] == '-', sign = 1, p->i++;
        py_ws(p);
    }
    if (p->i >= p->n) return NULL;
    char c = p->s[p->i];
    if (!(isdigit((unsigned char)c) || (c == '.' && p->i + 1 < p->n && isdigit((unsigned char)p->s[p->i + 1])))) {
        (void)sign;
        return NULL;
    }
    struct pyval *v = py_number(p);
    if (v && neg) negate(v);
    return v;
}

static struct pyval *py_container(struct pstate *p, char open) {
    char close = open == '(' ? ')' : open == '[' ? ']' : '}';
    if (++p->depth > PV_MAX_DEPTH) return NULL;
    p->i++;
    py_ws(p);
    struct pyval *v = NULL;
    size_t cap = 0;
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++, p->depth--;
        return pv_new(open == '(' ? PV_TUPLE : open == '[' ? PV_LIST : PV_DICT);
    }
    int commas = 0;
    for (;;) {
        struct pyval *x = py_value(p);
        if (!x) goto fail;
        py_ws(p);
        if (!v) { /* the first element decides dict or set */
            int is_dict = open == '{' && p->i < p->n && p->s[p->i] == ':';
            v = pv_new(open == '(' ? PV_TUPLE : open == '[' ? PV_LIST : is_dict ? PV_DICT : PV_SET);
        }
        if (v->kind == PV_DICT) {
            if (p->i >= p->n || p->s[p->i] != ':' || !pv_hashable(x)) {
                pv_free(x);
                goto fail;
            }
            p->i++;
            struct pyval *y = py_value(p);
            if (!y) {
                pv_free(x);
                goto fail;
            }
            dict_put(v, x, y, &cap);
            py_ws(p);
        } else if (v->kind == PV_SET) {
            if (!pv_hashable(x)) {
                pv_free(x);
                goto fail;
            }
            set_put(v, x, &cap);
        } else {
            pv_push(v, x, &cap);
            v->n++;
        }
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++, commas++;
            py_ws(p);
            if (p->i < p->n && p->s[p->i] == close) {
                p->i++;
                break;
            }
            continue;
        }
        if (p->i < p->n && p->s[p->i] == close) {
            p->i++;
            if (open == '(' && commas == 0) { /* (x) is x */
                struct pyval *only = v->items[0];
                v->n = 0;
                pv_free(v);
                v = only;
            }
            break;
        }
        goto fail;
    }
    p->depth--;
    return v;
fail:
    pv_free(v);
    return NULL;
}

static struct pyval *py_value(struct pstate *p) {
    py_ws(p);
    if (p->i >= p->n) return NULL;
    char c = p->s[p->i];
    if (c == '(' || c == '[' || c == '{') return py_container(p, c);
    struct pyval *s = NULL;
    int r = py_strings(p, &s);
    if (r < 0) return NULL;
    if (r > 0) return s;
    if (c == '-' || c == '+' || isdigit((unsigned char)c) || c == '.') {
        struct pyval *v = py_signed(p);
        if (!v) return NULL;
        /* a + bj / a - bj: a real signed number and an imaginary literal */
        size_t save = p->i;
        py_ws(p);
        if (v->kind != PV_COMPLEX && p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) {
            int minus = p->s[p->i] == '-';
            p->i++;
            py_ws(p);
            struct pyval *im = (p->i < p->n && (isdigit((unsigned char)p->s[p->i]) || p->s[p->i] == '.')) ? py_number(p) : NULL;
            if (!im || im->kind != PV_COMPLEX) {
                pv_free(im), pv_free(v);
                return NULL;
            }
            im->f = num_real(v);
            if (minus) im->imag = -im->imag;
            pv_free(v);
            return im;
        }
        p->i = save;
        return v;
    }
    if (ident_char(c)) {
        size_t j = p->i;
        while (j < p->n && ident_char(p->s[j])) j++;
        size_t m = j - p->i;
        const char *w = p->s + p->i;
        struct pyval *v = NULL;
        if (m == 4 && memcmp(w, "True", 4) == 0) v = pv_new(PV_BOOL), v->i = 1;
        else if (m == 5 && memcmp(w, "False", 5) == 0) v = pv_new(PV_BOOL), v->i = 0;
        else if (m == 4 && memcmp(w, "None", 4) == 0) v = pv_new(PV_NONE);
        else if (m == 3 && memcmp(w, "set", 3) == 0) { /* set() is the one call literal_eval allows */
            p->i = j;
            py_ws(p);
            if (p->i + 1 < p->n + 1 && lit(p, "(")) {
                py_ws(p);
                if (lit(p, ")")) return pv_new(PV_SET);
            }
            return NULL;
        }
        if (v) p->i = j;
        return v;
    }
    return NULL;
}

struct pyval *pv_parse_literal(const char *text, size_t len) {
    if (memchr(text, 0, len)) return NULL; /* "source code string cannot contain null bytes" */
    struct pstate p = {text, len, 0, 0};
    while (p.i < p.n && (p.s[p.i] == ' ' || p.s[p.i] == '\t')) p.i++; /* literal_eval's lstrip(" \t") */
    /* blank and comment-only lines may come first; the first real line may not be indented */
    for (;;) {
        size_t j = p.i;
        while (j < p.n && (p.s[j] == ' ' || p.s[j] == '\t' || p.s[j] == '\f')) j++;
        if (j < p.n && p.s[j] == '#')
            while (j < p.n && p.s[j] != '\n') j++;
        if (j < p.n && (p.s[j] == '\n' || p.s[j] == '\r')) {
            p.i = j + 1;
            continue;
        }
        if (j == p.n) return NULL; /* nothing to evaluate */
        if (j != p.i) return NULL; /* unexpected indent */
        break;
    }
    struct pyval *v = py_value(&p);
    if (!v) return NULL;
    /* at top level, "a, b" is a tuple */
    py_ws(&p);
    if (p.i < p.n && p.s[p.i] == ',') {
        struct pyval *t = pv_new(PV_TUPLE);
        size_t cap = 0;
        pv_push(t, v, &cap), t->n++;
        while (p.i < p.n && p.s[p.i] == ',') {
            p.i++;
            py_ws(&p);
            if (p.i >= p.n || p.s[p.i] == '\n' || p.s[p.i] == '\r' || p.s[p.i] == '#') break;
            struct pyval *x = py_value(&p);
            if (!x) {
                pv_free(t);
                return NULL;
            }
            pv_push(t, x, &cap), t->n++;
            py_ws(&p);
        }
        v = t;
    }
    /* only newlines, blanks and comments may follow */
    while (p.i < p.n) {
        char c = p.s[p.i];
        if (c == '\n' || c == '\r' || c == ' ' || c == '\t' || c == '\f') p.i++;
        else if (c == '#')
            while (p.i < p.n && p.s[p.i] != '\n') p.i++;
        else {
            pv_free(v);
            return NULL;
        }
    }
    return v;
}
