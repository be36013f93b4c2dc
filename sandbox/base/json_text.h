/*
 * json_text.h - JSON strings read with their length, NULs included.
 *
 * cJSON keeps a string as a C string, so "a\u0000b" reads back as "a" with
 * nothing to say the rest was there. Where text must arrive whole (a job's
 * output on its way to a model, text given to the tokenizer) the string
 * literal is decoded here from the JSON text itself; a reader whose text
 * has no use for NUL (task files, chat requests) asks json_text_has_nul()
 * and refuses the input instead of letting cJSON cut it short.
 *
 * Decoding follows JavaScript's JSON.parse followed by TextEncoder (what
 * the reference tokenizer sees): escapes become UTF-8, a surrogate pair one
 * code point, a lone surrogate U+FFFD; bytes outside escapes are kept as
 * they are (cJSON does the same).
 */
#ifndef VIV_JSON_TEXT_H
#define VIV_JSON_TEXT_H

#include <stddef.h>

/* Decode the string literal starting at s[0] (a '"') within s[0..n): the
 * bytes in a malloc'd *out (NUL-terminated after *out_len bytes, which may
 * hold NULs). Returns the literal's length in s (quotes included), or 0 if
 * s does not start with a complete, well-formed literal (*out untouched). */
size_t json_string_decode(const char *s, size_t n, char **out, size_t *out_len);

/* The end (index one past) of the JSON value starting at s[i] after any
 * white space, or 0 if there is no well-formed value there. Containers are
 * followed by bracket and string structure; scalars are the run of
 * characters that can make one (cJSON checks them where it matters). */
size_t json_value_end(const char *s, size_t n, size_t i);

/* The member `key` of the object that is the JSON text s[0..n), decoded
 * whole when it is a string: 1 (*out malloc'd, *out_len), 0 when the member
 * is absent or not a string, -1 when s is not a well-formed object. */
int json_member_text(const char *s, size_t n, const char *key, char **out, size_t *out_len);

/* Where the value of member `key` of the object s[0..n) lies: s[*at..*end).
 * 1 found, 0 absent, -1 when s is not a well-formed object. */
int json_member_span(const char *s, size_t n, const char *key, size_t *at, size_t *end);

/* Where element `index` of the array at s[i] (after any white space) lies
 * within s[0..n): s[*at..*end). 1 found, 0 past the end, -1 malformed. */
int json_array_item(const char *s, size_t n, size_t i, size_t index, size_t *at, size_t *end);

/* Whether a string of the JSON text s[0..n) holds U+0000 (a \u0000 escape,
 * or a raw NUL byte anywhere). */
int json_text_has_nul(const char *s, size_t n);

#endif
