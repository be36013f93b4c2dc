/*
 * unicode.c - UTF-8 coding and NFC normalisation (UAX #15).
 *
 * NFC = canonical decomposition, canonical ordering of combining marks, then
 * canonical composition.  Most text is already NFC, which the quick check
 * (UAX #15 section 9) tells without doing the work: no character whose
 * NFC_Quick_Check is No or Maybe, and combining classes never decreasing.
 */
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

uint32_t utf8_decode(const unsigned char *s, size_t n, int *len) {
    unsigned c = s[0];
    *len = 1;
    if (c < 0x80) return c;
    int need;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) need = 1, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) need = 2, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) need = 3, cp = c & 0x07, min = 0x10000;
    else return UNI_RAW_BYTE(c);
    if ((size_t)need >= n) return UNI_RAW_BYTE(c);
    for (int i = 1; i <= need; i++) {
        if ((s[i] & 0xC0) != 0x80) return UNI_RAW_BYTE(c);
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return UNI_RAW_BYTE(c);
    *len = need + 1;
    return cp;
}

int utf8_encode(uint32_t cp, unsigned char *o) {
    if (cp >= UNI_RAW_BASE) { o[0] = (unsigned char)(cp - UNI_RAW_BASE); return 1; }
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xC0 | (cp >> 6)); o[1] = (unsigned char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int len;
        if (utf8_decode(s + i, n - i, &len) >= UNI_RAW_BASE) return 0;
        i += (size_t)len;
    }
    return 1;
}

/* Hangul syllables decompose and compose by arithmetic (Unicode ch. 3.12). */
enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21, TCOUNT = 28,
       NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static const uint32_t *decomp_of(uint32_t cp) {
    int lo = 0, hi = uni_decomp_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (uni_decomp[mid][0] == cp) return uni_decomp[mid];
        if (uni_decomp[mid][0] < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

/* Full canonical decomposition of cp appended to buf (room checked by caller:
 * a canonical decomposition is at most 4 code points). Returns count. */
static int decompose(uint32_t cp, uint32_t *buf) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE;
        int n = 0;
        buf[n++] = LBASE + s / NCOUNT;
        buf[n++] = VBASE + (s % NCOUNT) / TCOUNT;
        if (s % TCOUNT) buf[n++] = TBASE + s % TCOUNT;
        return n;
    }
    const uint32_t *d = cp < UNI_RAW_BASE ? decomp_of(cp) : NULL;
    if (!d) { buf[0] = cp; return 1; }
    int n = decompose(d[1], buf);
    if (d[2]) n += decompose(d[2], buf + n);
    return n;
}

/* Primary composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    if (a >= UNI_RAW_BASE || b >= UNI_RAW_BASE) return 0;
    uint64_t key = ((uint64_t)a << 21) | b;
    int lo = 0, hi = uni_comp_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (uni_comp_key[mid] == key) return uni_comp_val[mid];
        if (uni_comp_key[mid] < key) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

static int nfc_quick_check(const unsigned char *s, size_t n) {
    unsigned last = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) { last = 0; i++; continue; }
        int len;
        uint32_t cp = utf8_decode(s + i, n - i, &len);
        i += (size_t)len;
        unsigned p = uni_props(cp), c = uni_ccc(cp);
        if (p & UNI_NFC_MAYBE) return 0;
        if (c && last > c) return 0;
        last = c;
    }
    return 1;
}

int uni_nfc(const unsigned char *s, size_t n, unsigned char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (nfc_quick_check(s, n)) return 0;
    /* Each input byte yields at most 4 code points after decomposition
     * (a decomposition of up to 4 comes from >= 2 bytes, so 4n is generous). */
    uint32_t *cps = malloc((n * 4 + 4) * sizeof *cps);
    if (!cps) return -1;
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        int len;
        uint32_t cp = utf8_decode(s + i, n - i, &len);
        i += (size_t)len;
        m += (size_t)decompose(cp, cps + m);
    }
    /* Canonical ordering: stable insertion sort of each run of non-starters. */
    for (size_t i = 1; i < m; i++) {
        unsigned c = uni_ccc(cps[i]);
        if (!c) continue;
        size_t j = i;
        uint32_t x = cps[i];
        while (j > 0 && uni_ccc(cps[j - 1]) > c) { cps[j] = cps[j - 1]; j--; }
        cps[j] = x;
    }
    /* Canonical composition: a character C composes with the last starter L
     * unless something between them blocks it (a starter, or a mark of
     * combining class >= C's). */
    if (m > 0) {
        size_t starter = 0, w = 1;
        uint32_t sc = cps[0];
        int last = uni_ccc(sc) ? 256 : 0;
        for (size_t i = 1; i < m; i++) {
            uint32_t c = cps[i];
            int cc = (int)uni_ccc(c);
            uint32_t comp = compose(sc, c);
            if (comp && (last < cc || last == 0)) {
                cps[starter] = sc = comp;
                continue;
            }
            if (cc == 0) { starter = w; sc = c; }
            last = cc;
            cps[w++] = c;
        }
        m = w;
    }
    unsigned char *o = malloc(m * 4 + 1);
    if (!o) { free(cps); return -1; }
    size_t k = 0;
    for (size_t i = 0; i < m; i++) k += (size_t)utf8_encode(cps[i], o + k);
    free(cps);
    *out = o;
    *out_len = k;
    return 0;
}
