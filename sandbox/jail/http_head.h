/*
 * http_head.h - the request head a job sends to its egress proxy.
 *
 * The proxy (egress_proxy.c) accepts exactly two shapes, the two that
 * HTTP_PROXY/HTTPS_PROXY clients send:
 *   CONNECT host:port HTTP/1.1            (HTTPS: a tunnel, bytes only)
 *   METHOD http://host[:port]/path HTTP/1.x  (plain HTTP in absolute form)
 * Anything else (origin-form targets, https:// in absolute form, bare LF line
 * ends, obsolete line folding, NULs, more than HTTP_HEAD_MAX_HEADERS headers,
 * a conflicting Content-Length) is refused with a reason. The parser is pure:
 * no allocation, no I/O, so it is fuzzed on its own (test/fuzz/fuzz_egress_head.c).
 */
#ifndef VIV_HTTP_HEAD_H
#define VIV_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_HEAD_MAX_HEADERS 64
#define HTTP_HEAD_HOST_MAX 255

struct http_header {
    size_t name, name_len;   /* offsets into the head */
    size_t value, value_len; /* without surrounding blanks */
};

struct http_head {
    char method[24];
    bool connect;                   /* CONNECT host:port */
    char host[HTTP_HEAD_HOST_MAX + 1]; /* as written; "[v6]" keeps its brackets off */
    int port;
    size_t target, target_len;      /* the request target as written */
    size_t path, path_len;          /* absolute form: "/path?query" ("/" when empty) */
    int minor_version;              /* HTTP/1.<minor> */
    long long content_length;       /* -1: none */
    bool chunked;                   /* Transfer-Encoding present */
    int nheaders;
    struct http_header headers[HTTP_HEAD_MAX_HEADERS];
    size_t head_len;                /* bytes up to and including the blank line */
};

/* The length of the head in buf (through "\r\n\r\n"), or 0 if it has not
 * ended within len bytes. */
size_t http_head_end(const char *buf, size_t len);

/* Parse a complete head (buf[0..len), len from http_head_end). 0, or -1
 * with err saying what is wrong. */
int http_head_parse(const char *buf, size_t len, struct http_head *h, char *err, size_t errlen);

/* Is header i's name `name` (case-insensitive)? */
bool http_header_is(const char *buf, const struct http_header *hd, const char *name);

#endif
