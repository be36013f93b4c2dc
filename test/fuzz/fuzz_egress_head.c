/*
 * fuzz_egress_head.c - libFuzzer target for what a job sends its egress
 * proxy: the request head (sandbox/jail/http_head.c), the host in it
 * (egress_host_normalize) and, from the same bytes, an allowlist entry
 * (egress_rule_parse). Nothing may crash or read out of bounds; a parsed
 * head's offsets stay inside it and its host is a C string of bounded size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../sandbox/jail/egress.h"
#include "../../sandbox/jail/http_head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > EGRESS_HEAD_MAX) return 0;
    const char *buf = (const char *)data;
    size_t end = http_head_end(buf, size);
    if (end > size) abort();
    struct http_head h;
    char err[256];
    if (end && http_head_parse(buf, end, &h, err, sizeof err) == 0) {
        if (h.head_len != end || h.target + h.target_len > end || h.path + h.path_len > end) abort();
        if (strlen(h.host) > HTTP_HEAD_HOST_MAX || h.port < 1 || h.port > 65535) abort();
        for (int i = 0; i < h.nheaders; i++)
            if (h.headers[i].value + h.headers[i].value_len > end) abort();
        char name[256];
        int family;
        unsigned char addr[16];
        if (egress_host_normalize(h.host, name, sizeof name, &family, addr) == 0 && !family && strlen(name) > 253) abort();
    }
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    struct egress_rule r;
    if (egress_rule_parse(text, &r, err, sizeof err) == 0) {
        if (r.port < 1 || r.port > 65535 || (!r.name == !r.family)) abort();
        egress_rule_free(&r);
    }
    free(text);
    return 0;
}
