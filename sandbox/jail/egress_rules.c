/*
 * egress_rules.c - what an egress allowlist entry means, and which
 * addresses the proxy may connect to. Pure functions: policy.c parses with
 * them, the proxy decides with them, the unit tests and the fuzzer call them
 * directly.
 *
 * Names are LDH labels (letters, digits, '-'), lower-cased; a name whose
 * last label is all digits is refused, so the numeric spellings of
 * addresses that some resolvers accept ("2130706433", "127.1", "0x7f.1")
 * are never names. Addresses are strict dotted quads or RFC 4291 IPv6.
 */
#define _GNU_SOURCE
#include "egress.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../base/util.h"

/* Strict dotted quad: four decimal parts 0-255, no leading zeros. */
static int parse_ipv4(const char *s, unsigned char out[4]) {
    for (int i = 0; i < 4; i++) {
        if (*s < '0' || *s > '9') return -1;
        int v = 0, digits = 0;
        if (s[0] == '0' && s[1] >= '0' && s[1] <= '9') return -1;
        while (*s >= '0' && *s <= '9' && digits < 4) v = v * 10 + (*s++ - '0'), digits++;
        if (digits > 3 || v > 255) return -1;
        out[i] = (unsigned char)v;
        if (i < 3 && *s++ != '.') return -1;
    }
    return *s ? -1 : 0;
}

static int parse_ipv6(const char *s, unsigned char out[16]) {
    if (strlen(s) > 45 || strchr(s, '%')) return -1; /* no zone ids */
    return inet_pton(AF_INET6, s, out) == 1 ? 0 : -1;
}

static bool is_v4_mapped(const unsigned char *a) {
    static const unsigned char pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, pre, 12) == 0;
}

/* Lower-case LDH labels of 1-63, at most 253 in all, last label not all digits. */
static int normalize_name(const char *s, char *out, size_t outlen) {
    size_t n = strlen(s);
    if (n && s[n - 1] == '.') n--;
    if (n == 0 || n > 253 || n >= outlen) return -1;
    size_t label = 0;
    bool all_digits = true;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? s[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || out[i - 1] == '-' || out[i - label] == '-') return -1;
            if (i < n) out[i] = '.', label = 0, all_digits = true;
            continue;
        }
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return -1;
        if (c < '0' || c > '9') all_digits = false;
        out[i] = c;
        label++;
    }
    out[n] = 0;
    return all_digits ? -1 : 0;
}

int egress_host_normalize(const char *host, char *name, size_t namelen, int *family, unsigned char addr[16]) {
    *family = 0;
    if (namelen) name[0] = 0;
    memset(addr, 0, 16);
    if (parse_ipv4(host, addr) == 0) return *family = AF_INET, 0;
    if (strchr(host, ':')) {
        if (parse_ipv6(host, addr)) return -1;
        if (is_v4_mapped(addr)) {
            memmove(addr, addr + 12, 4);
            memset(addr + 4, 0, 12);
            return *family = AF_INET, 0;
        }
        return *family = AF_INET6, 0;
    }
    return normalize_name(host, name, namelen);
}

static int parse_port(const char *s) {
    if (!*s || strlen(s) > 5 || s[0] == '0') return -1;
    int v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

int egress_rule_parse(const char *text, struct egress_rule *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    char host[300];
    const char *colon;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') return fail_with(err, errlen, "an IPv6 address is written [address]:port");
        if ((size_t)(close - text - 1) >= sizeof host) return fail_with(err, errlen, "too long");
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = 0;
        colon = close + 1;
        if (!strchr(host, ':')) return fail_with(err, errlen, "brackets are for IPv6 addresses only");
    } else {
        colon = strrchr(text, ':');
        if (!colon) return fail_with(err, errlen, "needs a port: host:port");
        if ((size_t)(colon - text) >= sizeof host) return fail_with(err, errlen, "too long");
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = 0;
        if (strchr(host, ':')) return fail_with(err, errlen, "an IPv6 address is written [address]:port");
    }
    r->port = parse_port(colon + 1);
    if (r->port < 0) return fail_with(err, errlen, "port '%s' must be 1 to 65535", colon + 1);
    char name[256];
    const char *h = host;
    if (strncmp(host, "*.", 2) == 0) {
        r->wildcard = true;
        h = host + 2;
        if (!strchr(h, '.') || h[strlen(h) - 1] == '.')
            return fail_with(err, errlen, "a wildcard needs a suffix of two labels or more (\"*.example.org\")");
    } else if (strchr(host, '*')) {
        return fail_with(err, errlen, "'*' is allowed only as a leading \"*.\"");
    }
    if (text[0] == '[' || !r->wildcard) {
        int fam;
        unsigned char a[16];
        if (egress_host_normalize(h, name, sizeof name, &fam, a) != 0)
            return fail_with(err, errlen, "'%s' is neither a host name nor an IP address", h);
        if (text[0] == '[' && fam != AF_INET6) return fail_with(err, errlen, "'%s' is not an IPv6 address", h);
        if (fam) {
            r->family = fam;
            memcpy(r->addr, a, 16);
        } else {
            r->name = xstrdup(name);
        }
    } else {
        if (normalize_name(h, name, sizeof name) != 0)
            return fail_with(err, errlen, "'%s' is not a host name suffix", h);
        r->name = xstrdup(name);
    }
    r->text = xstrdup(text);
    return 0;
}

void egress_rule_free(struct egress_rule *r) {
    free(r->text);
    free(r->name);
    memset(r, 0, sizeof *r);
}

/* name ends with "." + suffix (so "evil-example.org" is not under "example.org") */
static bool under_suffix(const char *name, const char *suffix) {
    size_t n = strlen(name), s = strlen(suffix);
    return n > s + 1 && name[n - s - 1] == '.' && strcmp(name + n - s, suffix) == 0;
}

const struct egress_rule *egress_match(const struct policy_network *n, const char *name, int family,
                                       const unsigned char *addr, int port) {
    for (int i = 0; i < n->nrules; i++) {
        const struct egress_rule *r = &n->rules[i];
        if (r->port != port) continue;
        if (family) {
            if (r->family == family && memcmp(r->addr, addr, family == AF_INET ? 4 : 16) == 0) return r;
        } else if (r->name && (r->wildcard ? under_suffix(name, r->name) : strcmp(name, r->name) == 0)) {
            return r;
        }
    }
    return NULL;
}

static const char *ipv4_class(const unsigned char *a) {
    unsigned b0 = a[0], b1 = a[1], b2 = a[2];
    if (b0 == 0) return "unspecified";
    if (b0 == 127) return "loopback";
    if (b0 == 169 && b1 == 254) return "link-local";
    if (b0 == 10 || (b0 == 172 && (b1 & 0xf0) == 16) || (b0 == 192 && b1 == 168) ||
        (b0 == 100 && (b1 & 0xc0) == 64))
        return "private";
    if (b0 >= 224 && b0 <= 239) return "multicast";
    if (b0 >= 240) return "reserved"; /* and 255.255.255.255 */
    if ((b0 == 192 && b1 == 0 && (b2 == 0 || b2 == 2)) || (b0 == 198 && (b1 & 0xfe) == 18) ||
        (b0 == 198 && b1 == 51 && b2 == 100) || (b0 == 203 && b1 == 0 && b2 == 113))
        return "reserved";
    return NULL;
}

const char *egress_address_class(int family, const unsigned char *a) {
    if (family == AF_INET) return ipv4_class(a);
    static const unsigned char zero[16];
    if (is_v4_mapped(a)) return ipv4_class(a + 12);
    if (memcmp(a, zero, 15) == 0) return a[15] == 1 ? "loopback" : a[15] == 0 ? "unspecified" : "reserved";
    if (memcmp(a, zero, 12) == 0) return "reserved"; /* IPv4-compatible, deprecated */
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
    if (memcmp(a, nat64, 12) == 0) return ipv4_class(a + 12);
    if (a[0] == 0x20 && a[1] == 0x02) return ipv4_class(a + 2);          /* 6to4 */
    if (a[0] == 0xff) return "multicast";
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return "link-local";
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) return "private";          /* site-local */
    if ((a[0] & 0xfe) == 0xfc) return "private";                         /* unique local */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) return "reserved"; /* documentation */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) return "reserved";       /* Teredo */
    if (a[0] == 0x01 && a[1] == 0 && memcmp(a + 2, zero, 6) == 0) return "reserved";    /* discard */
    if ((a[0] & 0xe0) != 0x20) return "reserved"; /* outside 2000::/3, the global unicast space */
    return NULL;
}

bool egress_address_allowed(const struct policy_network *n, int family, const unsigned char *addr, int port,
                            const char **why) {
    unsigned char a[16];
    memcpy(a, addr, 16);
    if (family == AF_INET6 && is_v4_mapped(a)) { /* the same host as its IPv4 form */
        memmove(a, a + 12, 4);
        memset(a + 4, 0, 12);
        family = AF_INET;
    }
    *why = egress_address_class(family, a);
    if (!*why) return true;
    for (int i = 0; i < n->nrules; i++) {
        const struct egress_rule *r = &n->rules[i];
        if (r->family == family && r->port == port && memcmp(r->addr, a, family == AF_INET ? 4 : 16) == 0) return true;
    }
    return false;
}
