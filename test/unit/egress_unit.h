/*
 * egress_unit.h - unit tests of the egress pieces that are pure functions:
 * allowlist entries in a policy, host normalisation, address classes, the
 * request-head parser. Included by unit_tests.c (it has the harness and
 * the policy helpers).
 */
#include <arpa/inet.h>
#include <sys/socket.h>

#include "../../sandbox/jail/egress.h"
#include "../../sandbox/jail/http_head.h"

#define NET_SECCOMP "\"seccomp\":{\"syscalls\":[\"read\",\"execve\"],\"socket_families\":[\"AF_INET\"]}"

static void test_egress_policy_entries(void) {
    char err[1024];
    struct policy p;
    const char *ok = VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"rest.ensembl.org:443\",\"*.ncbi.nlm.nih.gov:443\","
                     "\"10.1.2.3:8080\",\"[2001:db8::1]:443\",\"Example.ORG.:80\"],\"max_connections\":3}}";
    CHECK(policy_parse(ok, strlen(ok), "t.json", &p, err, sizeof err) == 0, "%s", err);
    const struct policy_network *n = &p.network;
    CHECK(n->nrules == 5 && n->max_connections == 3 && n->max_bytes == 256L << 20 && n->header_ms == 5000, "parsed %d", n->nrules);
    CHECK(strcmp(n->rules[0].name, "rest.ensembl.org") == 0 && n->rules[0].port == 443 && !n->rules[0].wildcard, "entry 0");
    CHECK(n->rules[1].wildcard && strcmp(n->rules[1].name, "ncbi.nlm.nih.gov") == 0, "entry 1");
    CHECK(n->rules[2].family == AF_INET && !n->rules[2].name && n->rules[2].addr[0] == 10, "entry 2");
    CHECK(n->rules[3].family == AF_INET6 && n->rules[3].port == 443, "entry 3");
    CHECK(strcmp(n->rules[4].name, "example.org") == 0, "a name is lower-cased, its trailing dot dropped: %s", n->rules[4].name);
    char *json = policy_to_json(&p);
    CHECK(strstr(json, "\"*.ncbi.nlm.nih.gov:443\"") && strstr(json, "\"max_connections\":\t3"), "policy check: %s", json);
    free(json);
    struct json_writer w; /* vivd's `policies` answer: the entries as written, every cap */
    jw_init(&w);
    policy_network_write(&w, &p);
    json = jw_finish(&w);
    CHECK(strcmp(json, "{\"egress\":[\"rest.ensembl.org:443\",\"*.ncbi.nlm.nih.gov:443\",\"10.1.2.3:8080\","
                       "\"[2001:db8::1]:443\",\"Example.ORG.:80\"],\"max_connections\":3,\"max_bytes\":268435456,"
                       "\"connection_ms\":60000,\"header_ms\":5000}") == 0, "policies answer: %s", json);
    free(json);
    unsigned char a[16] = {0};
    CHECK(egress_match(n, "eutils.ncbi.nlm.nih.gov", 0, a, 443), "wildcard below its suffix");
    CHECK(!egress_match(n, "ncbi.nlm.nih.gov", 0, a, 443), "a wildcard does not match its suffix itself");
    CHECK(!egress_match(n, "evilncbi.nlm.nih.gov", 0, a, 443), "a wildcard matches whole labels only");
    CHECK(!egress_match(n, "rest.ensembl.org", 0, a, 80), "the port is part of the entry");
    a[0] = 10, a[1] = 1, a[2] = 2, a[3] = 3;
    CHECK(egress_match(n, "", AF_INET, a, 8080), "an address entry");
    policy_free(&p);
    const char *none = VALID_HEAD NET_SECCOMP ",\"network\":\"none\"}";
    CHECK(policy_parse(none, strlen(none), "t.json", &p, err, sizeof err) == 0, "%s", err);
    jw_init(&w);
    policy_network_write(&w, &p);
    json = jw_finish(&w);
    CHECK(strcmp(json, "\"none\"") == 0, "no network: %s", json);
    free(json);
    policy_free(&p);

    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"example.org\"]}}", "network.egress[0]: 'example.org': needs a port");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"a.org:443\",\"b.org:0\"]}}", "network.egress[1]: 'b.org:0'");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"a.org:65536\"]}}", "must be 1 to 65535");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"*:443\"]}}", "network.egress[0]");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"*.org:443\"]}}", "two labels or more");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"a.*.org:443\"]}}", "only as a leading");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"2130706433:80\"]}}", "neither a host name nor an IP address");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"0x7f.1:80\"]}}", "neither a host name nor an IP address");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"010.1.2.3:80\"]}}", "neither a host name nor an IP address");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"::1:80\"]}}", "[address]:port");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"[fe80::1%eth0]:80\"]}}", "network.egress[0]");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"under_score.org:80\"]}}", "neither a host name");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"a.org:443\",\"A.org:443\"]}}", "listed twice");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[]}}", "for no network write");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[443]}}", "network.egress[0]: must be a");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"a.org:443\"],\"max_conns\":3}}", "network.max_conns: unknown key");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":{\"egress\":[\"a.org:443\"],\"max_connections\":0}}", "out of range");
    REJECTS(VALID_HEAD NET_SECCOMP ",\"network\":\"host\"}", "must be \"none\" or an object");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"network\":{\"egress\":[\"a.org:443\"]}}", "add \"AF_INET\"");
}

static bool v4_class(const char *text, const char *want) {
    unsigned char a[16] = {0};
    inet_pton(AF_INET, text, a);
    const char *got = egress_address_class(AF_INET, a);
    return want ? got && strcmp(got, want) == 0 : got == NULL;
}

static bool v6_class(const char *text, const char *want) {
    unsigned char a[16];
    inet_pton(AF_INET6, text, a);
    const char *got = egress_address_class(AF_INET6, a);
    return want ? got && strcmp(got, want) == 0 : got == NULL;
}

static void test_egress_address_classes(void) {
    static const struct {
        const char *addr, *cls;
    } v4[] = {{"127.0.0.1", "loopback"}, {"127.255.0.9", "loopback"}, {"169.254.169.254", "link-local"},
              {"10.0.0.1", "private"}, {"172.16.0.1", "private"}, {"172.31.255.255", "private"},
              {"192.168.1.1", "private"}, {"100.64.0.1", "private"}, {"0.0.0.0", "unspecified"},
              {"224.0.0.1", "multicast"}, {"255.255.255.255", "reserved"}, {"192.0.2.1", "reserved"},
              {"172.32.0.1", NULL}, {"8.8.8.8", NULL}, {"93.184.216.34", NULL}, {"100.128.0.1", NULL}};
    for (size_t i = 0; i < sizeof v4 / sizeof *v4; i++)
        CHECK(v4_class(v4[i].addr, v4[i].cls), "%s is not %s", v4[i].addr, v4[i].cls ? v4[i].cls : "public");
    static const struct {
        const char *addr, *cls;
    } v6[] = {{"::1", "loopback"}, {"::", "unspecified"}, {"::ffff:127.0.0.1", "loopback"},
              {"::ffff:169.254.169.254", "link-local"}, {"64:ff9b::a9fe:a9fe", "link-local"},
              {"2002:7f00:1::", "loopback"}, {"fe80::1", "link-local"}, {"fc00::1", "private"}, {"fd12::1", "private"},
              {"ff02::1", "multicast"}, {"2001:db8::1", "reserved"}, {"::127.0.0.1", "reserved"},
              {"2606:4700::1111", NULL}, {"::ffff:8.8.8.8", NULL}};
    for (size_t i = 0; i < sizeof v6 / sizeof *v6; i++)
        CHECK(v6_class(v6[i].addr, v6[i].cls), "%s is not %s", v6[i].addr, v6[i].cls ? v6[i].cls : "public");
    /* a listed address may be reached whatever its class, at its port only; mapped forms are the same host */
    struct policy_network n = {0};
    char err[256];
    CHECK(egress_rule_parse("127.0.0.1:8080", &n.rules[0], err, sizeof err) == 0, "%s", err);
    n.nrules = 1;
    unsigned char a[16] = {127, 0, 0, 1}, m[16] = {0};
    m[10] = m[11] = 0xff, m[12] = 127, m[15] = 1;
    const char *why;
    CHECK(egress_address_allowed(&n, AF_INET, a, 8080, &why), "listed loopback");
    CHECK(!egress_address_allowed(&n, AF_INET, a, 8081, &why) && strcmp(why, "loopback") == 0, "other port");
    CHECK(egress_address_allowed(&n, AF_INET6, m, 8080, &why), "the mapped form of a listed address");
    a[3] = 2;
    CHECK(!egress_address_allowed(&n, AF_INET, a, 8080, &why), "127.0.0.2 is not 127.0.0.1");
    egress_rule_free(&n.rules[0]);
}

static void test_egress_host_normalize(void) {
    char name[256];
    int fam;
    unsigned char a[16];
    CHECK(egress_host_normalize("Rest.Ensembl.ORG.", name, sizeof name, &fam, a) == 0 && fam == 0 &&
              strcmp(name, "rest.ensembl.org") == 0, "%s", name);
    CHECK(egress_host_normalize("::ffff:10.0.0.1", name, sizeof name, &fam, a) == 0 && fam == AF_INET && a[0] == 10,
          "mapped IPv6 becomes IPv4");
    static const char *const bad[] = {"2130706433", "0x7f.1", "127.1", "1.2.3.4.5", "a..b", "-a.org", "a-.org",
                                      "a_b.org", "", ".", "01.2.3.4", "256.1.1.1", "fe80::1%lo", "a.b.c.1", NULL};
    for (int i = 0; bad[i]; i++) CHECK(egress_host_normalize(bad[i], name, sizeof name, &fam, a) != 0, "accepted '%s'", bad[i]);
}

static int head(const char *text, struct http_head *h, char *err, size_t errlen) {
    return http_head_parse(text, strlen(text), h, err, errlen);
}

static void test_http_head_parser(void) {
    struct http_head h;
    char err[256];
    CHECK(head("CONNECT rest.ensembl.org:443 HTTP/1.1\r\nHost: rest.ensembl.org:443\r\n\r\n", &h, err, sizeof err) == 0, "%s", err);
    CHECK(h.connect && strcmp(h.host, "rest.ensembl.org") == 0 && h.port == 443 && h.nheaders == 1, "connect");
    const char *g = "GET http://127.0.0.1:8080/gene/TP53?x=1 HTTP/1.1\r\nContent-Length: 3\r\nX: y\r\n\r\n";
    CHECK(head(g, &h, err, sizeof err) == 0, "%s", err);
    CHECK(!h.connect && h.port == 8080 && h.content_length == 3 && h.path_len == 14 && memcmp(g + h.path, "/gene/TP53?x=1", 14) == 0, "get");
    CHECK(head("GET http://[::1]/ HTTP/1.0\r\n\r\n", &h, err, sizeof err) == 0 && strcmp(h.host, "::1") == 0 && h.port == 80, "%s", err);
    CHECK(head("GET http://a.org HTTP/1.1\r\n\r\n", &h, err, sizeof err) == 0 && h.path_len == 0, "no path: %s", err);
    CHECK(http_head_end("GET / HTTP/1.1\r\n\r", 17) == 0 && http_head_end("x\r\n\r\nrest", 9) == 5, "head end");
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "absolute http://"},
        {"GET https://a.org/ HTTP/1.1\r\n\r\n", "through CONNECT"},
        {"CONNECT a.org HTTP/1.1\r\n\r\n", "host:port"},
        {"CONNECT a.org:0 HTTP/1.1\r\n\r\n", "bad port"},
        {"CONNECT a.org:99999 HTTP/1.1\r\n\r\n", "bad port"},
        {"GET http://u:p@a.org/ HTTP/1.1\r\n\r\n", "user info"},
        {"GET http://a.org/ HTTP/2.0\r\n\r\n", "HTTP/1.0 or HTTP/1.1"},
        {"GET http://a.org/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n", "folding"},
        {"GET http://a.org/ HTTP/1.1\r\nX a\r\n\r\n", "header name"},
        {"GET http://a.org/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "two different"},
        {"GET http://a.org/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "Content-Length"},
        {"GET http://a.org/ HTTP/1.1\nX: y\r\n\r\n", "HTTP/1"},
        {"GET http://a/b c/ HTTP/1.1\r\n\r\n", "HTTP/1"},
        {"GET http://a.org/#frag HTTP/1.1\r\n\r\n", "fragment"},
        {"GET  http://a.org/ HTTP/1.1\r\n\r\n", "request target"},
        {"CONNECT [::1:443 HTTP/1.1\r\n\r\n", "']'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        CHECK(head(bad[i].text, &h, err, sizeof err) == -1 && strstr(err, bad[i].why), "'%s': %s", bad[i].text, err);
    }
    char big[8192] = "GET http://a.org/ HTTP/1.1\r\n";
    for (int i = 0; i <= HTTP_HEAD_MAX_HEADERS; i++) strcat(big, "X: y\r\n");
    strcat(big, "\r\n");
    CHECK(head(big, &h, err, sizeof err) == -1 && strstr(err, "more than"), "%s", err);
    const char nul[] = "GET http://a.org/ HTTP/1.1\r\nX: \0\r\n\r\n";
    CHECK(http_head_parse(nul, sizeof nul - 1, &h, err, sizeof err) == -1 && strstr(err, "NUL"), "%s", err);
}

#define EGRESS_UNIT_TESTS                                                                  \
    T(egress_policy_entries), T(egress_address_classes), T(egress_host_normalize), T(http_head_parser)
