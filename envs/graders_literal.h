/*
 * graders_literal.h - the values Eval1's graders compare, parsed the way
 * Python's json.loads and ast.literal_eval parse them.
 *
 * The rare-disease and patient-gene graders do
 *     try: d = json.loads(answer)  except JSONDecodeError: d = ast.literal_eval(answer)
 * and then compare with Python's == and set(). To grade exactly like them we
 * need Python's value model, not JSON's: ints and floats compare equal across
 * types (1 == 1.0 == True), tuples are not lists, bytes are not str, only
 * hashable values go into a set. This file is that small value model.
 *
 * Supported literal syntax: dict, list, tuple, set (and set()), str with
 * r/u/b prefixes, single/double/triple quotes, escapes and implicit
 * concatenation, int (decimal, 0x, 0o, 0b, with _), float, complex (j), unary
 * +/- on numbers, a+bj / a-bj, True/False/None, comments, parentheses.
 * Ints beyond 64 bits are kept as decimal text (exact equality on text;
 * compared with floats through a double).
 */
#ifndef VIV_GRADERS_LITERAL_H
#define VIV_GRADERS_LITERAL_H

#include <stddef.h>
#include <stdint.h>

enum pv_kind { PV_NONE, PV_BOOL, PV_INT, PV_BIGINT, PV_FLOAT, PV_COMPLEX, PV_STR, PV_BYTES,
               PV_LIST, PV_TUPLE, PV_SET, PV_DICT };

struct pyval {
    enum pv_kind kind;
    int64_t i;          /* BOOL, INT */
    double f, imag;     /* FLOAT, COMPLEX (f is the real part) */
    char *s;            /* STR, BYTES (UTF-8 / raw), BIGINT (decimal text) */
    size_t slen;
    struct pyval **items; /* LIST, TUPLE, SET; DICT: keys[k] = items[2k], values[k] = items[2k+1] */
    size_t n;           /* element count (DICT: number of pairs) */
};

/* json.loads(text): NULL when Python would raise JSONDecodeError. */
struct pyval *pv_parse_json(const char *text, size_t len);
/* ast.literal_eval(text): NULL when Python would raise. */
struct pyval *pv_parse_literal(const char *text, size_t len);
void pv_free(struct pyval *v);

/* Python's a == b. */
int pv_equal(const struct pyval *a, const struct pyval *b);
/* Python's hash() would succeed (no list/dict/set inside). */
int pv_hashable(const struct pyval *v);
/* d.get(key) for a dict and a str key; NULL if absent (or d not a dict). */
const struct pyval *pv_dict_get(const struct pyval *d, const char *key);

#endif
