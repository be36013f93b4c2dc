/*
 * tokenizer_scan.c - Qwen's pre-tokenizer regex as a hand-written scanner.
 *
 * The regex (tokenizer.json, pre_tokenizer Split, behaviour Isolated):
 *
 *   A  (?i:'s|'t|'re|'ve|'m|'ll|'d)
 *   B  [^\r\n\p{L}\p{N}]?\p{L}+
 *   C  \p{N}
 *   D   ?[^\s\p{L}\p{N}]+[\r\n]*
 *   E  \s*[\r\n]+
 *   F  \s+(?!\S)
 *   G  \s+
 *
 * A regex engine tries the alternatives in order at the current position
 * and takes the first that matches; every quantifier is greedy. Worked out
 * by hand (backtracking included), with "run" the maximal white-space run
 * starting at the position:
 *   A  an apostrophe and one of the suffixes, ASCII case-insensitive;
 *   B  an optional character that is not CR, LF, letter or number, then the
 *      whole run of letters that follows (the prefix is taken only when a
 *      letter follows it);
 *   C  one number character;
 *   D  an optional U+0020, then the run of characters that are neither
 *      white space, letters nor numbers, then any CR/LF after it;
 *   E  (run contains CR or LF) the run up to and including its last CR/LF;
 *   F  the whole run if it ends the text, else the run less its last
 *      character when that leaves at least one (the look-ahead must see
 *      white space or the end);
 *   G  the run (one white-space character before a non-space).
 * Every character starts some match (letters B, numbers C, white space E-G,
 * anything else D), so the pieces cover the text with no gaps.
 *
 * Classes: \p{L} and \p{N} are the general categories L* and N*; \s is
 * White_Space (what Oniguruma, the engine HF tokenizers uses, means by \s
 * in Unicode mode: TAB..CR, U+0085, Zs, U+2028, U+2029). Invalid UTF-8
 * bytes are in none of the classes, like U+FFFD.
 */
#include "tokenizer_internal.h"

#include "unicode.h"

/* Class bits of ASCII, precomputed: the hot path. */
static unsigned char ascii_class[128];
static int ascii_ready;

static void ascii_init(void) {
    for (int c = 0; c < 128; c++) ascii_class[c] = (unsigned char)uni_props((uint32_t)c);
    __atomic_store_n(&ascii_ready, 1, __ATOMIC_RELEASE);
}

/* The character at s[i] (i < n): its class bits, length in *len, code point in *cp. */
static inline unsigned char_at(const unsigned char *s, size_t n, size_t i, int *len, uint32_t *cp) {
    if (s[i] < 0x80) {
        *len = 1;
        *cp = s[i];
        return ascii_class[s[i]];
    }
    *cp = utf8_decode(s + i, n - i, len);
    return uni_props(*cp) & (UNI_LETTER | UNI_NUMBER | UNI_SPACE);
}

static inline int is_crlf(uint32_t cp) { return cp == '\r' || cp == '\n'; }

static inline int lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Alternative A: length of the match at i, or 0. */
static size_t match_contraction(const unsigned char *s, size_t n, size_t i) {
    if (s[i] != '\'' || i + 1 >= n) return 0;
    int a = lower(s[i + 1]);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= n) return 0;
    int b = lower(s[i + 2]);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* End of a run of letters starting at i. */
static size_t letters_end(const unsigned char *s, size_t n, size_t i) {
    while (i < n) {
        int len;
        uint32_t cp;
        if (!(char_at(s, n, i, &len, &cp) & UNI_LETTER)) break;
        i += (size_t)len;
    }
    return i;
}

size_t tok_scan_next(const unsigned char *s, size_t n, size_t i) {
    if (!__atomic_load_n(&ascii_ready, __ATOMIC_ACQUIRE)) ascii_init();
    size_t m = match_contraction(s, n, i);
    if (m) return i + m;

    int len;
    uint32_t cp;
    unsigned cls = char_at(s, n, i, &len, &cp);
    size_t next = i + (size_t)len;

    /* B: letters, or one non-CR/LF non-letter non-number prefix + letters */
    if (cls & UNI_LETTER) return letters_end(s, n, next);
    if (!(cls & UNI_NUMBER) && !is_crlf(cp) && next < n) {
        int l2;
        uint32_t c2;
        if (char_at(s, n, next, &l2, &c2) & UNI_LETTER) return letters_end(s, n, next + (size_t)l2);
    }
    /* C */
    if (cls & UNI_NUMBER) return next;

    /* D: optional space, then "other" characters, then CR/LF */
    {
        size_t j = i;
        if (cp == ' ' && next < n) j = next;
        size_t k = j;
        while (k < n) {
            int l;
            uint32_t c;
            if (char_at(s, n, k, &l, &c)) break; /* letter, number or space */
            k += (size_t)l;
        }
        if (k > j) {
            while (k < n && (s[k] == '\r' || s[k] == '\n')) k++;
            return k;
        }
    }

    /* E, F, G: cls has UNI_SPACE here (every other case returned above) */
    size_t end = i, last_crlf = 0, last_start = i;
    int have_crlf = 0;
    while (end < n) {
        int l;
        uint32_t c;
        if (!(char_at(s, n, end, &l, &c) & UNI_SPACE)) break;
        if (is_crlf(c)) { have_crlf = 1; last_crlf = end + 1; }
        last_start = end;
        end += (size_t)l;
    }
    if (end == i) return next; /* cannot happen; keeps the scanner moving */
    if (have_crlf) return last_crlf;                  /* E */
    if (end == n) return end;                         /* F, at the end */
    if (last_start > i) return last_start;            /* F, less the last */
    return end;                                       /* G */
}
