/*
 * http_head.c - a strict parser of the request head a proxy client sends
 * (see http_head.h). Written here rather than taken from a library: the
 * proxy needs two request shapes, not HTTP, and every byte it accepts is a
 * byte a hostile job chose; a hundred lines we fuzz are easier to trust than
 * a general parser's leniency (bare LF, folding, duplicate lengths).
 */
#include "http_head.h"

#include <stdio.h>
#include <string.h>

#include "../base/util.h"

size_t http_head_end(const char *buf, size_t len) {
    for (size_t i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') return i + 1;
    return 0;
}

/* RFC 9110 tchar */
static bool is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool lower_eq(const char *a, size_t n, const char *lit) {
    if (strlen(lit) != n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (c != lit[i]) return false;
    }
    return true;
}

bool http_header_is(const char *buf, const struct http_header *hd, const char *name) {
    return lower_eq(buf + hd->name, hd->name_len, name);
}

/* "1..65535", decimal digits only. */
static int parse_port(const char *s, size_t n) {
    if (n == 0 || n > 5 || s[0] == '0') return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

/* "host:port", "[v6]:port", or (port_default > 0) either without ":port".
 * The host is copied without brackets; its syntax is checked by the caller
 * against the allowlist rules (egress_host_normalize). */
static int parse_authority(const char *s, size_t n, int port_default, struct http_head *h, char *err,
                           size_t errlen) {
    size_t host_start = 0, host_end;
    const char *port = NULL;
    size_t port_len = 0;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) return fail_with(err, errlen, "'[' without ']' in the host");
        host_start = 1;
        host_end = (size_t)(close - s);
        size_t rest = host_end + 1;
        if (rest < n) {
            if (s[rest] != ':') return fail_with(err, errlen, "junk after ']' in the host");
            port = s + rest + 1, port_len = n - rest - 1;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        host_end = colon ? (size_t)(colon - s) : n;
        if (colon) port = colon + 1, port_len = n - host_end - 1;
    }
    if (host_end <= host_start) return fail_with(err, errlen, "empty host");
    if (host_end - host_start > HTTP_HEAD_HOST_MAX) return fail_with(err, errlen, "host longer than %d bytes", HTTP_HEAD_HOST_MAX);
    for (size_t i = host_start; i < host_end; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f || strchr("/?#@[]\\%", s[i]) ||
            (s[i] == ':' && host_start == 0))
            return fail_with(err, errlen, "bad character in the host");
    memcpy(h->host, s + host_start, host_end - host_start);
    h->host[host_end - host_start] = 0;
    if (port) {
        h->port = parse_port(port, port_len);
        if (h->port < 0) return fail_with(err, errlen, "bad port");
    } else if (port_default > 0) {
        h->port = port_default;
    } else {
        return fail_with(err, errlen, "CONNECT needs host:port");
    }
    return 0;
}

/* The request line: METHOD SP target SP HTTP/1.x */
static int parse_request_line(const char *buf, size_t n, struct http_head *h, char *err, size_t errlen) {
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)buf[i])) i++;
    if (i == 0 || i >= sizeof h->method || i >= n || buf[i] != ' ') return fail_with(err, errlen, "bad method");
    memcpy(h->method, buf, i);
    h->method[i] = 0;
    size_t t = ++i;
    while (i < n && (unsigned char)buf[i] > ' ' && (unsigned char)buf[i] < 0x7f) i++;
    if (i == t || i >= n || buf[i] != ' ') return fail_with(err, errlen, "bad request target");
    h->target = t, h->target_len = i - t;
    i++;
    if (n - i != 8 || memcmp(buf + i, "HTTP/1.", 7) != 0 || buf[i + 7] < '0' || buf[i + 7] > '1')
        return fail_with(err, errlen, "not HTTP/1.0 or HTTP/1.1");
    h->minor_version = buf[i + 7] - '0';
    const char *tg = buf + h->target;
    size_t tl = h->target_len;
    h->connect = strcmp(h->method, "CONNECT") == 0;
    if (h->connect) return parse_authority(tg, tl, 0, h, err, errlen);
    if (tl >= 8 && lower_eq(tg, 8, "https://"))
        return fail_with(err, errlen, "https:// goes through CONNECT (set HTTPS_PROXY)");
    if (tl < 7 || !lower_eq(tg, 7, "http://"))
        return fail_with(err, errlen, "the target must be an absolute http:// URL (a proxy request)");
    size_t a = 7, e = a;
    while (e < tl && tg[e] != '/' && tg[e] != '?' && tg[e] != '#') e++;
    if (memchr(tg + a, '@', e - a)) return fail_with(err, errlen, "user info in the URL");
    if (parse_authority(tg + a, e - a, 80, h, err, errlen)) return -1;
    if (memchr(tg, '#', tl)) return fail_with(err, errlen, "a fragment in the request target");
    h->path = h->target + e, h->path_len = tl - e;
    return 0;
}

static int parse_length(const char *v, size_t n, long long *out) {
    if (n == 0 || n > 15) return -1;
    long long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        x = x * 10 + (v[i] - '0');
    }
    *out = x;
    return 0;
}

int http_head_parse(const char *buf, size_t len, struct http_head *h, char *err, size_t errlen) {
    memset(h, 0, sizeof *h);
    h->content_length = -1;
    if (len < 4 || http_head_end(buf, len) != len) return fail_with(err, errlen, "incomplete head");
    if (memchr(buf, 0, len)) return fail_with(err, errlen, "NUL in the head");
    h->head_len = len;
    const char *eol = NULL;
    for (size_t i = 0; i + 1 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n') { eol = buf + i; break; }
    if (!eol) return fail_with(err, errlen, "no request line");
    if (parse_request_line(buf, (size_t)(eol - buf), h, err, errlen)) return -1;
    size_t pos = (size_t)(eol - buf) + 2;
    while (pos + 2 <= len) {
        if (buf[pos] == '\r' && buf[pos + 1] == '\n') return pos + 2 == len ? 0 : fail_with(err, errlen, "bytes after the head");
        size_t end = pos;
        while (end < len && buf[end] != '\r' && buf[end] != '\n') end++;
        if (end + 1 >= len || buf[end] != '\r' || buf[end + 1] != '\n') return fail_with(err, errlen, "a header line without CRLF");
        if (buf[pos] == ' ' || buf[pos] == '\t') return fail_with(err, errlen, "obsolete line folding");
        size_t c = pos;
        while (c < end && is_tchar((unsigned char)buf[c])) c++;
        if (c == pos || c >= end || buf[c] != ':') return fail_with(err, errlen, "bad header name");
        if (h->nheaders == HTTP_HEAD_MAX_HEADERS) return fail_with(err, errlen, "more than %d headers", HTTP_HEAD_MAX_HEADERS);
        struct http_header *hd = &h->headers[h->nheaders++];
        hd->name = pos, hd->name_len = c - pos;
        size_t v = c + 1, ve = end;
        while (v < ve && (buf[v] == ' ' || buf[v] == '\t')) v++;
        while (ve > v && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t')) ve--;
        for (size_t k = v; k < ve; k++)
            if ((unsigned char)buf[k] < ' ' && buf[k] != '\t') return fail_with(err, errlen, "control character in a header value");
        hd->value = v, hd->value_len = ve - v;
        if (http_header_is(buf, hd, "content-length")) {
            long long cl;
            if (parse_length(buf + v, ve - v, &cl)) return fail_with(err, errlen, "bad Content-Length");
            if (h->content_length >= 0 && h->content_length != cl) return fail_with(err, errlen, "two different Content-Length values");
            h->content_length = cl;
        } else if (http_header_is(buf, hd, "transfer-encoding")) {
            h->chunked = true;
        }
        pos = end + 2;
    }
    return fail_with(err, errlen, "incomplete head");
}
