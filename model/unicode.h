/*
 * unicode.h - the little of Unicode the tokenizer needs: UTF-8 decoding that
 * keeps invalid bytes, the letter / number / white-space classes the
 * pre-tokenizer regex asks about, and NFC normalisation.
 *
 * The tables come from the Unicode Character Database (Debian's unicode-data
 * package) through model/unicode_gen.py at build time.
 *
 * Invalid UTF-8: each byte that does not start a well-formed sequence (RFC
 * 3629: no overlongs, no surrogates, nothing above U+10FFFF) is a character
 * of its own, UNI_RAW_BYTE(b).  It has no class (like U+FFFD, a symbol), a
 * combining class of 0 and no composition, so NFC passes it through and the
 * tokenizer turns it back into the same byte: encode/decode is byte-exact.
 */
#ifndef VIV_UNICODE_H
#define VIV_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define UNI_RAW_BASE 0x110000u
#define UNI_RAW_BYTE(b) (UNI_RAW_BASE + (uint32_t)(b))

enum { UNI_LETTER = 1, UNI_NUMBER = 2, UNI_SPACE = 4, UNI_NFC_MAYBE = 8 };

/* Generated tables (build/gen/unicode_tables.c). */
extern const uint16_t uni_stage1[];
extern const uint16_t uni_stage2[];
extern const uint32_t uni_decomp[][3];
extern const int uni_decomp_count;
extern const uint64_t uni_comp_key[];
extern const uint32_t uni_comp_val[];
extern const int uni_comp_count;

/* Property bits (UNI_LETTER...) of a code point; 0 for raw bytes. */
static inline unsigned uni_props(uint32_t cp) {
    if (cp >= UNI_RAW_BASE) return 0;
    return uni_stage2[(size_t)uni_stage1[cp >> 8] * 256 + (cp & 255)] & 0xff;
}

/* Canonical combining class. */
static inline unsigned uni_ccc(uint32_t cp) {
    if (cp >= UNI_RAW_BASE) return 0;
    return uni_stage2[(size_t)uni_stage1[cp >> 8] * 256 + (cp & 255)] >> 8;
}

/* Decode one character at s (n > 0 bytes left): the code point or
 * UNI_RAW_BYTE(s[0]), its length in *len (1 for a raw byte). */
uint32_t utf8_decode(const unsigned char *s, size_t n, int *len);

/* Append the UTF-8 of cp (or the raw byte) to out; returns bytes written (<= 4). */
int utf8_encode(uint32_t cp, unsigned char *out);

/* 1 if s[0..n) is well-formed UTF-8. */
int utf8_valid(const unsigned char *s, size_t n);

/* NFC of s[0..n): a malloc'd buffer in *out (length *out_len) or NULL in *out
 * when s is already in NFC (the common case, found by the quick check).
 * Returns 0, or -1 when out of memory. */
int uni_nfc(const unsigned char *s, size_t n, unsigned char **out, size_t *out_len);

#endif
