/*
 * json_writer.h - build JSON text into a growing buffer.
 *
 * cJSON is used to parse; for output we write JSON ourselves because job
 * output is arbitrary bytes: embedded NULs must survive as \u0000 and bytes
 * that are not valid UTF-8 must become U+FFFD so the result is always a valid
 * JSON document, whatever the job printed.
 */
#ifndef VIV_JSON_WRITER_H
#define VIV_JSON_WRITER_H

#include <stdbool.h>
#include <stddef.h>

struct json_writer {
    char *buf;
    size_t len, cap;
    int depth;
    bool need_comma[32];
};

void jw_init(struct json_writer *w);
void jw_object_begin(struct json_writer *w);
void jw_object_end(struct json_writer *w);
void jw_array_begin(struct json_writer *w);
void jw_array_end(struct json_writer *w);
void jw_key(struct json_writer *w, const char *key);
void jw_string(struct json_writer *w, const char *s, size_t len); /* any bytes */
void jw_cstring(struct json_writer *w, const char *s);             /* NULL -> null */
void jw_int(struct json_writer *w, long long v);
void jw_double(struct json_writer *w, double v, int decimals);
void jw_bool(struct json_writer *w, bool v);
void jw_null(struct json_writer *w);
/* Take the text (NUL-terminated); the writer is reset. */
char *jw_finish(struct json_writer *w);

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if the bytes there are
 * not valid UTF-8 (overlong forms, surrogates and values past U+10FFFF are
 * invalid). */
int utf8_sequence_length(const unsigned char *s, size_t avail);

#endif
