/*
 * util.h - small helpers shared by the sandbox: allocation that cannot
 * return NULL, file reading with a size cap, monotonic time, full writes.
 */
#ifndef VIV_UTIL_H
#define VIV_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Out of memory is the one error we do not try to recover from. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Read a whole file of at most `max` bytes (NUL-terminated). NULL + err on failure. */
char *read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen);

/* Write a file's content atomically: temp file, fsync, rename. 0 or -1 (errno). */
int write_file_atomic(const char *path, const void *data, size_t len);

/* write(2) until done, retrying on EINTR. 0 or -1. */
int write_all(int fd, const void *buf, size_t len);

/* Monotonic clock in milliseconds (fractional). */
double now_ms(void);

/* Write a message into err (when err and errlen allow) and return -1: the
 * usual last line of a function that reports errors through (err, errlen). */
int fail_with(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Parse a decimal integer in [min, max]; 0 on success, -1 otherwise. */
int parse_long(const char *s, long min, long max, long *out);

/* Standard base64 (RFC 4648, padding required, no whitespace). Decode
 * returns a malloc'd buffer (NUL-terminated after *len) or NULL if the text
 * is not base64. Encode: caller frees. */
char *base64_decode(const char *text, size_t text_len, size_t *len);
char *base64_encode(const char *data, size_t len);

#endif
