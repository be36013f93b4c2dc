/* json_writer.c - see json_writer.h. */
#include "json_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static void put(struct json_writer *w, const char *s, size_t n) {
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n + 1) cap *= 2;
        w->buf = xrealloc(w->buf, cap);
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = 0;
}

static void puts_(struct json_writer *w, const char *s) { put(w, s, strlen(s)); }

/* Before a value: a comma unless it is the first in its container, or the
 * value of a key (jw_key already placed the comma). */
static void before_value(struct json_writer *w) {
    if (w->need_comma[w->depth]) put(w, ",", 1);
    w->need_comma[w->depth] = true;
}

void jw_init(struct json_writer *w) { memset(w, 0, sizeof *w); }

void jw_object_begin(struct json_writer *w) {
    before_value(w);
    put(w, "{", 1);
    if (w->depth < 31) w->depth++;
    w->need_comma[w->depth] = false;
}

static void container_end(struct json_writer *w, const char *close) {
    if (w->depth > 0) w->depth--;
    put(w, close, 1);
}

void jw_object_end(struct json_writer *w) { container_end(w, "}"); }

void jw_array_begin(struct json_writer *w) {
    before_value(w);
    put(w, "[", 1);
    if (w->depth < 31) w->depth++;
    w->need_comma[w->depth] = false;
}

void jw_array_end(struct json_writer *w) { container_end(w, "]"); }

void jw_key(struct json_writer *w, const char *key) {
    jw_cstring(w, key);
    put(w, ":", 1);
    w->need_comma[w->depth] = false; /* the value follows without a comma */
}

int utf8_sequence_length(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07;
    else return 0;
    if ((size_t)n > avail) return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

void jw_string(struct json_writer *w, const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    if (w->need_comma[w->depth]) put(w, ",", 1);
    w->need_comma[w->depth] = true;
    put(w, "\"", 1);
    size_t run = 0; /* bytes [i-run, i) that need no escaping */
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        const char *esc = NULL;
        char tmp[8];
        int n = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20 || c == 0x7F) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            esc = tmp;
        } else if (c >= 0x80) {
            n = utf8_sequence_length(s + i, len - i);
            if (n == 0) esc = "\\ufffd", n = 1;
        }
        if (esc) {
            put(w, (const char *)s + i - run, run);
            run = 0;
            puts_(w, esc);
            i += (size_t)n;
        } else {
            run += (size_t)n;
            i += (size_t)n;
        }
    }
    put(w, (const char *)s + len - run, run);
    put(w, "\"", 1);
}

void jw_cstring(struct json_writer *w, const char *s) {
    if (!s) {
        jw_null(w);
        return;
    }
    jw_string(w, s, strlen(s));
}

void jw_int(struct json_writer *w, long long v) {
    char tmp[32];
    before_value(w);
    snprintf(tmp, sizeof tmp, "%lld", v);
    puts_(w, tmp);
}

void jw_double(struct json_writer *w, double v, int decimals) {
    char tmp[64];
    if (!isfinite(v)) {
        jw_null(w);
        return;
    }
    before_value(w);
    snprintf(tmp, sizeof tmp, "%.*f", decimals, v);
    puts_(w, tmp);
}

void jw_bool(struct json_writer *w, bool v) {
    before_value(w);
    puts_(w, v ? "true" : "false");
}

void jw_null(struct json_writer *w) {
    before_value(w);
    puts_(w, "null");
}

char *jw_finish(struct json_writer *w) {
    char *s = w->buf ? w->buf : xstrdup("");
    memset(w, 0, sizeof *w);
    return s;
}
