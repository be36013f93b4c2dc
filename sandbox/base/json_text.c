/* json_text.c - see json_text.h. */
#include "json_text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static int hex4(const char *s, size_t n, size_t i, unsigned *v) {
    if (i + 4 > n) return 0;
    unsigned x = 0;
    for (size_t k = i; k < i + 4; k++) {
        char c = s[k];
        x <<= 4;
        if (c >= '0' && c <= '9') x |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') x |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') x |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *v = x;
    return 1;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The code point of the \uXXXX escape at s[i] ('\\'), a surrogate pair
 * taken together and a lone surrogate as U+FFFD; *used: bytes read. 0 if
 * the escape is malformed. */
static int unicode_escape(const char *s, size_t n, size_t i, uint32_t *cp, size_t *used) {
    unsigned hi, lo;
    if (!hex4(s, n, i + 2, &hi)) return 0;
    *used = 6, *cp = hi;
    if (hi >= 0xD800 && hi <= 0xDBFF && i + 12 <= n && s[i + 6] == '\\' && s[i + 7] == 'u' &&
        hex4(s, n, i + 8, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
        *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
        *used = 12;
    } else if (hi >= 0xD800 && hi <= 0xDFFF) {
        *cp = 0xFFFD; /* what TextEncoder writes for a lone surrogate */
    }
    return 1;
}

size_t json_string_decode(const char *s, size_t n, char **out, size_t *out_len) {
    if (n == 0 || s[0] != '"') return 0;
    /* the decoded text is never longer than the literal: \uXXXX (6) gives
     * at most 3 bytes, a pair (12) 4 */
    char *o = xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 1; i < n;) {
        char c = s[i];
        if (c == '"') {
            o[k] = 0;
            *out = o, *out_len = k;
            return i + 1;
        }
        if (c != '\\') {
            o[k++] = c, i++;
            continue;
        }
        if (i + 1 >= n) break;
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *p = s[i + 1] ? strchr(from, s[i + 1]) : NULL;
        if (p) {
            o[k++] = to[p - from], i += 2;
            continue;
        }
        uint32_t cp;
        size_t used;
        if (s[i + 1] != 'u' || !unicode_escape(s, n, i, &cp, &used)) break;
        k += put_utf8(o + k, cp);
        i += used;
    }
    free(o);
    return 0;
}

static size_t skip_ws(const char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

/* The end of the string literal at s[i], or 0. */
static size_t string_end(const char *s, size_t n, size_t i) {
    for (size_t k = i + 1; k < n; k++) {
        if (s[k] == '\\') k++;
        else if (s[k] == '"') return k + 1;
    }
    return 0;
}

size_t json_value_end(const char *s, size_t n, size_t i) {
    i = skip_ws(s, n, i);
    if (i >= n) return 0;
    if (s[i] == '"') return string_end(s, n, i);
    if (s[i] != '[' && s[i] != '{') {
        size_t k = i;
        while (k < n && s[k] && strchr("+-.0123456789eEtrufalsn", s[k])) k++;
        return k > i ? k : 0;
    }
    /* a container: its members in turn, keys included, to the closing bracket */
    char close = s[i] == '[' ? ']' : '}';
    size_t k = skip_ws(s, n, i + 1);
    if (k < n && s[k] == close) return k + 1;
    for (;;) {
        if (close == '}') {
            if (k >= n || s[k] != '"' || !(k = string_end(s, n, k))) return 0;
            k = skip_ws(s, n, k);
            if (k >= n || s[k] != ':') return 0;
            k++;
        }
        if (!(k = json_value_end(s, n, k))) return 0;
        k = skip_ws(s, n, k);
        if (k < n && s[k] == close) return k + 1;
        if (k >= n || s[k] != ',') return 0;
        k = skip_ws(s, n, k + 1);
    }
}

int json_member_span(const char *s, size_t n, const char *key, size_t *at, size_t *end) {
    size_t k = skip_ws(s, n, 0);
    if (k >= n || s[k] != '{') return -1;
    k = skip_ws(s, n, k + 1);
    if (k < n && s[k] == '}') return 0;
    for (;;) {
        char *name;
        size_t name_len, used = k < n ? json_string_decode(s + k, n - k, &name, &name_len) : 0;
        if (!used) return -1;
        int match = name_len == strlen(key) && memcmp(name, key, name_len) == 0;
        free(name);
        k = skip_ws(s, n, k + used);
        if (k >= n || s[k] != ':') return -1;
        k = skip_ws(s, n, k + 1);
        size_t e = json_value_end(s, n, k);
        if (!e) return -1;
        if (match) return *at = k, *end = e, 1;
        k = skip_ws(s, n, e);
        if (k < n && s[k] == '}') return 0;
        if (k >= n || s[k] != ',') return -1;
        k = skip_ws(s, n, k + 1);
    }
}

int json_member_text(const char *s, size_t n, const char *key, char **out, size_t *out_len) {
    size_t at, end;
    int rc = json_member_span(s, n, key, &at, &end);
    if (rc != 1) return rc;
    return s[at] == '"' && json_string_decode(s + at, end - at, out, out_len) ? 1 : 0;
}

int json_array_item(const char *s, size_t n, size_t i, size_t index, size_t *at, size_t *end) {
    i = skip_ws(s, n, i);
    if (i >= n || s[i] != '[') return -1;
    size_t k = skip_ws(s, n, i + 1);
    if (k < n && s[k] == ']') return 0;
    for (size_t item = 0;; item++) {
        size_t e = json_value_end(s, n, k);
        if (!e) return -1;
        if (item == index) return *at = k, *end = e, 1;
        k = skip_ws(s, n, e);
        if (k < n && s[k] == ']') return 0;
        if (k >= n || s[k] != ',') return -1;
        k = skip_ws(s, n, k + 1);
    }
}

int json_text_has_nul(const char *s, size_t n) {
    if (memchr(s, 0, n)) return 1;
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') in_string = !in_string;
        else if (in_string && s[i] == '\\') {
            if (i + 6 <= n && s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4)) return 1;
            i++; /* the escaped character cannot end the string */
        }
    }
    return 0;
}
