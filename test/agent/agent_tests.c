/*
 * agent_tests.c - the agent protocol, the Eval1 graders and their literal
 * parser, the task loader, the episode state machine (with a scripted fake
 * sandbox) and the teacher / random agents.
 *
 * The expected values of the grader tests are what biomni_eval1.py's rules
 * give under CPython (each was checked against python3's json.loads and
 * ast.literal_eval when written); the end-to-end runs through the real
 * sandbox are in run.sh.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "../../sandbox/base/json_text.h"
#include "../../sandbox/base/json_writer.h"
#include "../../sandbox/base/util.h"
#include <unistd.h>
#include "../../envs/episode.h"
#include "../../envs/eval1.h"
#include "../../envs/graders.h"
#include "../../envs/graders_literal.h"
#include "../../envs/outcome.h"
#include "../../envs/protocol.h"
#include "../../envs/teacher.h"

static const char *fixtures = "test/agent/fixtures/tasks.jsonl";
static const char *eval1_sample = "test/agent/fixtures/eval1_sample.jsonl";

/* --- protocol: stop strings and parsing -------------------------------------------- */

static void test_stop_strings(void) {
    const char *a = "<think>x</think><execute>print(1)</execute><solution>A</solution>";
    CHECK(proto_stop_len(a, strlen(a)) == strlen("<think>x</think><execute>print(1)</execute>"), "cut after </execute>");
    const char *b = "<think>x</think><solution>A</solution> trailing";
    CHECK(proto_stop_len(b, strlen(b)) == strlen(b) - strlen(" trailing"), "cut after </solution>");
    const char *c = "<think>x</think><execute>print(1)";
    CHECK(proto_stop_len(c, strlen(c)) == strlen(c), "no stop string: keep all");
    const char *d = "</EXECUTE> is not a stop string";
    CHECK(proto_stop_len(d, strlen(d)) == strlen(d), "stop strings are case-sensitive");
}

static void parse(const char *s, struct proto_msg *m) { proto_parse(s, strlen(s), m); }

static void test_parse_actions(void) {
    struct proto_msg m;
    parse("<think>plan</think>\n<execute>print(1)</execute>", &m);
    CHECK(m.action == PROTO_EXECUTE && !strcmp(m.code, "print(1)") && !strcmp(m.think, "plan"), "execute");
    proto_msg_free(&m);
    parse("<think>done</think><solution> A </solution>", &m);
    CHECK(m.action == PROTO_SOLUTION && !strcmp(m.solution, " A "), "solution keeps its text as written");
    proto_msg_free(&m);
    parse("<think>only thinking</think>", &m);
    CHECK(m.action == PROTO_THINK_ONLY, "think only");
    proto_msg_free(&m);
    parse("I will just talk.", &m);
    CHECK(m.action == PROTO_PARSE_ERROR && !m.code && !m.solution && !m.think, "no tags: parse error");
    proto_msg_free(&m);
    parse("", &m);
    CHECK(m.action == PROTO_PARSE_ERROR, "empty message");
    proto_msg_free(&m);
    parse("<think>a</think><execute>x=1</execute><solution>B</solution>", &m);
    CHECK(m.action == PROTO_SOLUTION, "a solution wins over an execute, as upstream");
    proto_msg_free(&m);
    parse("<execute>first()</execute> and <execute>second()</execute>", &m);
    CHECK(m.action == PROTO_EXECUTE && !strcmp(m.code, "first()"), "the first block runs");
    proto_msg_free(&m);
    parse("<Think>t</THINK><EXECUTE>print(2)</Execute>", &m);
    CHECK(m.action == PROTO_EXECUTE && !strcmp(m.code, "print(2)"), "tags match in any case");
    proto_msg_free(&m);
}

static void test_parse_autoclose(void) {
    struct proto_msg m;
    parse("<think>t</think><execute>print(1)\n", &m);
    CHECK(m.action == PROTO_EXECUTE && !strcmp(m.code, "print(1)\n"), "unclosed execute closed at the end");
    proto_msg_free(&m);
    parse("<think>t</think><solution>KRAS", &m);
    CHECK(m.action == PROTO_SOLUTION && !strcmp(m.solution, "KRAS"), "unclosed solution closed");
    proto_msg_free(&m);
    parse("<think>still thinking", &m);
    CHECK(m.action == PROTO_THINK_ONLY && !strcmp(m.think, "still thinking"), "unclosed think closed");
    proto_msg_free(&m);
    parse("<think>t</think><EXECUTE>print(1)", &m);
    CHECK(m.action == PROTO_THINK_ONLY, "only lower-case openings are auto-closed (upstream's `in` test)");
    proto_msg_free(&m);
}

static void test_parse_fenced_fallback(void) {
    struct proto_msg m;
    parse("Let me run:\n```python\nprint(3)\n```", &m);
    CHECK(m.action == PROTO_EXECUTE && !strcmp(m.code, "print(3)\n"), "fenced python block is an execute: '%s'", m.code ? m.code : "");
    proto_msg_free(&m);
    parse("```\nls\n```", &m);
    CHECK(m.action == PROTO_EXECUTE && !strcmp(m.code, "ls\n"), "fence without a language");
    proto_msg_free(&m);
    parse("```python\nprint(3)\n```<solution>A</solution>", &m);
    CHECK(m.action == PROTO_SOLUTION, "no fallback when there is a solution");
    proto_msg_free(&m);
    parse("```python\nprint(3)\n", &m);
    CHECK(m.action == PROTO_PARSE_ERROR, "an unclosed fence is nothing");
    proto_msg_free(&m);
}

/* --- protocol: tools -------------------------------------------------------------------- */

static void tool_case(const char *code, enum proto_tool want, const char *want_body) {
    enum proto_tool t;
    char *body = proto_select_tool(code, &t);
    int ok = t == want && !strcmp(body, want_body);
    if (!ok) snprintf(t_msg, sizeof t_msg, "'%s' -> %s '%s', want %s '%s'", code, proto_tool_name(t), body, proto_tool_name(want), want_body), t_status = 1;
    free(body);
}

static void test_tool_selection(void) {
    tool_case("print(1)", PROTO_TOOL_PYTHON, "print(1)");
    tool_case("\n  x = 1\nprint(x)\n", PROTO_TOOL_PYTHON, "x = 1\nprint(x)");
    tool_case("#!SQL\nSELECT 1;", PROTO_TOOL_SQL, "SELECT 1;");
    tool_case("  #!SQL SELECT symbol FROM gene_info;", PROTO_TOOL_SQL, "SELECT symbol FROM gene_info;");
    tool_case("#!BASH\necho hi\nls", PROTO_TOOL_SHELL, "echo hi\nls");
    tool_case("# Bash script\necho hi", PROTO_TOOL_SHELL, "echo hi");
    tool_case("#!CLI\nls\n-la", PROTO_TOOL_SHELL, "ls -la");
    tool_case("#!R\nprint(1)", PROTO_TOOL_R, "print(1)");
    tool_case("# R code\nx <- 1", PROTO_TOOL_R, "x <- 1");
    tool_case("#!python\nprint(1)", PROTO_TOOL_PYTHON, "#!python\nprint(1)");
    tool_case("#!bash\necho", PROTO_TOOL_PYTHON, "#!bash\necho"); /* markers are case-sensitive, as upstream */
    if (t_status) return;
    CHECK(!strcmp(proto_tool_name(PROTO_TOOL_R), "r") && !strcmp(proto_tool_name(PROTO_TOOL_SHELL), "shell"),
          "tools are their vivd policies");
}

/* --- protocol: the task's inputs as TASK in the Python tool ------------------------------------ */

static void test_task_inputs_prelude(void) {
    const char *meta_json = "{\"kind\":\"x\",\"inputs\":{\"gene\":\"A\\\"B\\\\C'D\",\"options\":{\"A\":\"x\\ny\","
                            "\"B\":\"\\u00e9 \\u2014 \\u2713\",\"C\":\"\\u0001\\t}\"}},\"correct_value\":\"secret\"}";
    cJSON *meta = cJSON_Parse(meta_json);
    CHECK(meta, "fixture parses");
    char *code = proto_with_task_inputs(meta, "import json, sys\nsys.stdout.write(json.dumps(TASK, sort_keys=True))\n");
    const char *nl = strchr(code, '\n');
    CHECK(!strncmp(code, "TASK = ", 7) && nl && !strncmp(nl + 1, "import json, sys\n", 17), "one line in front: %.60s", code);
    CHECK(!strstr(code, "secret"), "only meta.inputs reaches the jail, never the rest of meta (the answer)");
    char path[] = "/tmp/viv-prelude-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, code, strlen(code)) == (ssize_t)strlen(code), "temp file");
    close(fd);
    char *cmd = xasprintf("/usr/bin/python3 %s", path), out[4096] = {0};
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    int st = p ? pclose(p) : -1;
    out[n] = 0;
    unlink(path);
    cJSON *got = cJSON_Parse(out);
    CHECK(st == 0 && got && cJSON_Compare(got, cJSON_GetObjectItemCaseSensitive(meta, "inputs"), 1),
          "python reads TASK back equal to meta.inputs (quotes, backslashes, newline, UTF-8, control bytes): %.200s", out);
    cJSON_Delete(got);
    free(cmd), free(code);
    char *plain = proto_with_task_inputs(NULL, "print(1)");
    cJSON *noinputs = cJSON_Parse("{\"kind\":\"x\"}");
    char *plain2 = proto_with_task_inputs(noinputs, "print(1)");
    CHECK(!strcmp(plain, "print(1)") && !strcmp(plain2, "print(1)"), "no inputs: the code unchanged");
    free(plain), free(plain2);
    cJSON_Delete(noinputs), cJSON_Delete(meta);
}

/* --- protocol: observations ----------------------------------------------------------------- */

static size_t count_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void test_observation_truncation(void) {
    char *o = proto_render_observation("hello\n", 6, NULL);
    CHECK(!strcmp(o, "<observation>hello\n</observation>"), "short result kept: %s", o);
    free(o);
    char *big = malloc(20001);
    memset(big, 'x', 20000), big[20000] = 0;
    o = proto_render_observation(big, 10000, NULL);
    CHECK(!strncmp(o, "<observation>xxx", 16) && strlen(o) == 10000 + 27, "exactly 10,000 characters: not cut");
    free(o);
    o = proto_render_observation(big, 10001, NULL);
    const char *body = o + strlen("<observation>");
    const char *nl = strchr(body, '\n');
    CHECK(nl && strstr(body, "too long") < nl, "a note comes first");
    size_t kept = strlen(nl + 1) - strlen("</observation>");
    CHECK(kept == 10000, "10,001 characters cut to 10,000 (kept %zu)", kept);
    free(o);
    /* code points, not bytes: 10,001 two-byte characters keep 10,000 characters (20,000 bytes) */
    char *u = malloc(2 * 10001 + 1);
    for (int i = 0; i < 10001; i++) u[2 * i] = (char)0xC3, u[2 * i + 1] = (char)0xA9;
    u[2 * 10001] = 0;
    o = proto_render_observation(u, 2 * 10001, NULL);
    nl = strchr(o, '\n');
    char *end = strstr(nl, "</observation>");
    *end = 0;
    CHECK(count_chars(nl + 1) == 10000 && strlen(nl + 1) == 20000, "UTF-8 counted per character");
    free(o);
    o = proto_render_observation(u, 2 * 10000, NULL);
    CHECK(!strstr(o, "too long"), "10,000 two-byte characters are not cut");
    free(o), free(u), free(big);
}

/* --- protocol: the format reward, clause by clause -------------------------------------------- */

static int fr(int n, ...) {
    const char *msgs[16];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) msgs[i] = va_arg(ap, const char *);
    va_end(ap);
    return proto_format_reward(msgs, NULL, n, NULL, 0);
}

#define EX "<think>run it</think>\n<execute>print(1)</execute>"
#define SO "<think>answer</think>\n<solution>A</solution>"

static void test_format_reward(void) {
    CHECK(fr(2, EX, SO) == 1, "execute then solution");
    CHECK(fr(1, SO) == 1, "solution only");
    CHECK(fr(3, EX, EX, SO) == 1, "several executes");
    CHECK(fr(2, "  \n" EX "\n\n", "\t" SO "  ") == 1, "surrounding white space is fine");
    CHECK(fr(1, "<think>a</think><solution>A</solution>") == 1, "no space between blocks is fine");
    CHECK(proto_format_reward(NULL, NULL, 0, NULL, 0) == 0, "no messages");
    CHECK(fr(2, "<execute>print(1)</execute>", SO) == 0, "missing think");
    CHECK(fr(1, "<solution>A</solution><think>a</think>") == 0, "think must come first");
    CHECK(fr(2, "<think>a</think><execute>x</execute><execute>y</execute>", SO) == 0, "two executes in one message");
    CHECK(fr(1, "<think>a</think><execute>x</execute><solution>A</solution>") == 0, "execute and solution together");
    CHECK(fr(1, "<think>a</think><solution>A</solution><solution>B</solution>") == 0, "two solutions");
    CHECK(fr(1, "Sure! <think>a</think><solution>A</solution>") == 0, "prose before");
    CHECK(fr(1, "<think>a</think><solution>A</solution> Hope this helps") == 0, "prose after");
    CHECK(fr(1, "<think>a</think> and now <solution>A</solution>") == 0, "prose between");
    CHECK(fr(1, EX) == 0, "last message is not a solution");
    CHECK(fr(2, SO, SO) == 0, "a solution before the last message");
    CHECK(fr(3, EX, SO, EX) == 0, "solution in the middle");
    CHECK(fr(1, "<think>  </think><solution>A</solution>") == 0, "blank think");
    CHECK(fr(1, "<think>a</think><solution> \n</solution>") == 0, "blank solution");
    CHECK(fr(2, "<think>a</think><execute></execute>", SO) == 0, "blank execute");
    CHECK(fr(1, "<THINK>a</THINK><SOLUTION>A</SOLUTION>") == 0, "tags are lower-case");
    CHECK(fr(1, "<think>a<think>b</think><solution>A</solution>") == 0, "a tag inside think");
    CHECK(fr(1, "<think>a</think><solution>A <execute>x</execute></solution>") == 0, "a tag inside solution");
    CHECK(fr(2, "<think>a</think><execute>print(1)", SO) == 0, "an unclosed execute (auto-closed for parsing only)");
    CHECK(fr(1, "<think>a</think><solution>A") == 0, "an unclosed solution");
    char why[200];
    const char *m[2] = {EX, EX};
    CHECK(proto_format_reward(m, NULL, 2, why, sizeof why) == 0 && strstr(why, "last"), "why: %s", why);
}

/* --- the literal parser ---------------------------------------------------------------------- */

static struct pyval *lit(const char *s) { return pv_parse_literal(s, strlen(s)); }
static struct pyval *json(const char *s) { return pv_parse_json(s, strlen(s)); }

static int lit_eq(const char *a, const char *b) {
    struct pyval *x = lit(a), *y = lit(b);
    int r = x && y && pv_equal(x, y);
    pv_free(x), pv_free(y);
    return r;
}

static int lit_ok(const char *s) {
    struct pyval *v = lit(s);
    pv_free(v);
    return v != NULL;
}

static void test_literal_parser(void) {
    CHECK(lit_eq("{'a': 1}", "{\"a\": 1}"), "quotes");
    CHECK(lit_eq("'ab'", "'a' \"b\""), "implicit concatenation");
    CHECK(lit_eq("'''x\ny'''", "'x\\ny'"), "triple quotes and \\n");
    CHECK(lit_eq("'\\x41\\u00e9\\101'", "'A\xc3\xa9" "A'"), "hex, unicode and octal escapes");
    CHECK(lit_eq("r'\\d'", "'\\\\d'"), "raw strings keep backslashes");
    CHECK(!lit_eq("b'x'", "'x'"), "bytes are not str");
    CHECK(lit_eq("0x1F", "31") && lit_eq("1_000", "1000") && lit_eq("0o17", "15") && lit_eq("0b101", "5"), "int forms");
    CHECK(lit_eq("1", "1.0") && lit_eq("True", "1") && lit_eq("1e3", "1000"), "numbers compare across types");
    CHECK(lit_eq("-5", "-5.0") && lit_eq("+5", "5"), "unary signs");
    CHECK(lit_eq("1+2j", "(1+2j)") && !lit_eq("1+2j", "1-2j") && lit_eq("0j", "0"), "complex");
    CHECK(!lit_eq("[1, 2]", "(1, 2)") && lit_eq("(1,)", "(1,)") && lit_eq("(1)", "1"), "tuples and parentheses");
    CHECK(lit_eq("{1, 2, 2}", "{2, 1}") && lit_eq("set()", "set()") && !lit_eq("{}", "set()"), "sets");
    CHECK(lit_eq("{'a': 1, 'a': 2}", "{'a': 2}"), "duplicate keys: the last wins");
    CHECK(lit_eq("{'a': 1,}", "{'a': 1}") && lit_eq("[1, 2,]", "[1, 2]"), "trailing commas");
    CHECK(lit_eq("1, 2", "(1, 2)"), "a bare tuple");
    CHECK(lit_eq("{'a': None, 'b': False}", "{'b': False, 'a': None}"), "None/False, key order");
    CHECK(lit_ok("\n{'a': 1}") && lit_ok("  {'a': 1}  # comment\n") && lit_ok("\t[1]"), "leading spaces, comments");
    CHECK(!lit_ok(" \n {'a': 1}"), "an indented first line is an IndentationError");
    CHECK(!lit_ok("{'a': --1}") && !lit_ok("1 + 2") && !lit_ok("x") && !lit_ok("f'x'") && !lit_ok("print(1)"), "not literals");
    CHECK(!lit_ok("{[1]: 2}") && !lit_ok("{[1], 2}"), "unhashable keys and set members");
    CHECK(!lit_ok("012") && lit_ok("00") && !lit_ok("1abc") && !lit_ok("'abc") && !lit_ok("'a\nb'"), "bad tokens");
    CHECK(!lit_ok("") && !lit_ok("   ") && !lit_ok("{'a': 1} {'b': 2}"), "nothing, or two values");
    CHECK(!pv_parse_literal("1\0", 2), "NUL bytes");
    char deep[1024];
    memset(deep, '[', 300), memset(deep + 300, ']', 300), deep[600] = 0;
    CHECK(!lit_ok(deep), "nesting beyond 200 is refused");
    memset(deep, '[', 100), memset(deep + 100, ']', 100), deep[200] = 0;
    CHECK(lit_ok(deep), "nesting of 100 is fine");
    /* json.loads */
    struct pyval *v = json("{\"a\": [1, 2.5, true, null, \"\\u00e9\\ud83d\\ude00\"]}");
    CHECK(v && v->kind == PV_DICT, "json object");
    pv_free(v);
    v = json("{'a': 1}");
    CHECK(!v, "single quotes are not JSON");
    pv_free(v);
    v = json("[1,]");
    CHECK(!v, "no trailing commas in JSON");
    v = json("{\"a\": 1} x");
    CHECK(!v, "extra data");
    v = json("{\"a\": \"\t\"}");
    CHECK(!v, "raw control characters");
    v = json("NaN");
    CHECK(v && v->kind == PV_FLOAT && isnan(v->f) && !pv_equal(v, v), "NaN parses and is unequal to itself");
    pv_free(v);
    v = json(" -Infinity ");
    CHECK(v && isinf(v->f) && v->f < 0, "-Infinity");
    pv_free(v);
    v = json("123456789012345678901234567890");
    struct pyval *w = lit("123456789012345678901234567890");
    CHECK(v && w && v->kind == PV_BIGINT && pv_equal(v, w), "big ints");
    pv_free(v), pv_free(w);
}

/* --- graders, task by task ----------------------------------------------------------------- */

static double G(const char *rule, const char *answer, const char *truth) { return grade(rule, answer, truth, GRADE_EVAL, NULL, NULL, 0); }

static void test_grade_gwas_causal_gene(void) {
    const char *rules[] = {"gwas_causal_gene_opentargets", "gwas_causal_gene_pharmaprojects", "gwas_causal_gene_gwas_catalog"};
    for (int k = 0; k < 3; k++) {
        CHECK(G(rules[k], "PCSK9", "PCSK9") == 1, "%s exact", rules[k]);
        CHECK(G(rules[k], "pcsk9", "PCSK9") == 1, "%s case-insensitive", rules[k]);
        CHECK(G(rules[k], "  PCSK9\n", " PCSK9") == 1, "%s strips", rules[k]);
        CHECK(G(rules[k], "\xc2\xa0PCSK9\xe3\x80\x80", "PCSK9") == 1, "%s strips Unicode spaces", rules[k]);
        CHECK(G(rules[k], "LDLR", "PCSK9") == 0, "%s wrong gene", rules[k]);
        CHECK(G(rules[k], "PCSK9 gene", "PCSK9") == 0, "%s extra words", rules[k]);
        CHECK(G(rules[k], "{PCSK9}", "PCSK9") == 0, "%s braces", rules[k]);
        CHECK(G(rules[k], "", "PCSK9") == 0, "%s empty", rules[k]);
    }
}

static void test_grade_variant(void) {
    const char *r = "gwas_variant_prioritization";
    CHECK(G(r, "rs429358", "rs429358") == 1, "exact");
    CHECK(G(r, " rs429358\n", "rs429358") == 1, "strip");
    CHECK(G(r, "RS429358", "rs429358") == 0, "case-sensitive");
    CHECK(G(r, "rs7412", "rs429358") == 0, "wrong variant");
    CHECK(G(r, "rs429358,rs7412", "rs429358") == 0, "a list is not an answer");
}

static void test_grade_lab_bench(void) {
    const char *rules[] = {"lab_bench_dbqa", "lab_bench_seqqa"};
    for (int k = 0; k < 2; k++) {
        CHECK(G(rules[k], "A", "A") == 1 && G(rules[k], "a", "A") == 1 && G(rules[k], " b ", "B") == 1, "%s letters", rules[k]);
        CHECK(G(rules[k], "A.", "A") == 0 && G(rules[k], "(A)", "A") == 0 && G(rules[k], "A) 1956", "A") == 0, "%s decorated", rules[k]);
        CHECK(G(rules[k], "B", "A") == 0, "%s wrong letter", rules[k]);
    }
    CHECK(G("hle", "c", "C") == 1, "hle letters");
}

static void test_grade_rare_disease(void) {
    const char *r = "rare_disease_diagnosis";
    const char *truth = "{\"disease_name\": \"Familial hypercholesterolemia\", \"OMIM_ID\": \"143890\"}";
    CHECK(G(r, truth, truth) == 1, "same JSON");
    CHECK(G(r, "{\"disease_name\": \"FH\", \"OMIM_ID\": \"143890\"}", truth) == 1, "only OMIM_ID counts");
    CHECK(G(r, "{'disease_name': 'FH', 'OMIM_ID': '143890'}", truth) == 1, "single-quoted dict via literal_eval");
    CHECK(G(r, "  {\"OMIM_ID\": \"143890\"}\n", truth) == 1, "white space around JSON");
    CHECK(G(r, "{\"OMIM_ID\": 143890}", truth) == 0, "an int is not the string");
    CHECK(G(r, "{\"OMIM_ID\": 143890.0}", "{\"OMIM_ID\": 143890}") == 1, "1.0 == 1 in Python");
    CHECK(G(r, "{\"OMIM_ID\": \"143891\"}", truth) == 0, "wrong ID");
    CHECK(G(r, "{\"omim_id\": \"143890\"}", truth) == 0, "keys are case-sensitive");
    CHECK(G(r, "{\"disease_name\": \"FH\"}", truth) == 0, "missing OMIM_ID (None != '143890')");
    CHECK(G(r, "{\"disease_name\": \"FH\"}", "{\"disease_name\": \"x\"}") == 1, "both missing: None == None, as upstream");
    CHECK(G(r, "[\"143890\"]", truth) == 0, "a list has no .get");
    CHECK(G(r, "143890", truth) == 0, "a bare number");
    CHECK(G(r, "OMIM:143890 Familial hypercholesterolemia", truth) == 0, "prose");
    CHECK(G(r, "{\"OMIM_ID\": \"143890\"", truth) == 0, "truncated JSON");
    CHECK(G(r, "{\"OMIM_ID\": \"143890\"}", "not json") == 0, "unparsable truth");
    CHECK(G(r, "{\"OMIM_ID\": \"143890\"}", "{'OMIM_ID': '143890'}") == 0, "truth goes through json.loads only");
    CHECK(G(r, "{'OMIM_ID': '143890', 'OMIM_ID': '1'}", truth) == 0, "duplicate keys: the last wins");
    CHECK(G(r, "{\"OMIM_ID\": NaN}", "{\"OMIM_ID\": NaN}") == 0, "NaN != NaN");
    /* json.loads takes nesting far deeper than literal_eval's 200 brackets */
    char deep[1024];
    int k = snprintf(deep, sizeof deep, "{\"OMIM_ID\": \"143890\", \"x\": ");
    memset(deep + k, '[', 300), memset(deep + k + 300, ']', 300), strcpy(deep + k + 600, "}");
    CHECK(G(r, deep, truth) == 1, "JSON nested 300 deep parses");
}

static void test_grade_patient_gene(void) {
    const char *r = "patient_gene_detection";
    CHECK(G(r, "{\"causal_gene\": [\"ENSG00000012048\"]}", "ENSG00000012048") == 1, "one of one");
    CHECK(G(r, "{\"causal_gene\": [\"ENSG1\", \"ENSG00000012048\"]}", "ENSG00000012048") == 1, "overlap with a longer list");
    CHECK(G(r, "{\"causal_gene\": [\"ENSG2\"]}", "ENSG1, ENSG2,ENSG3") == 1, "comma-separated truth, stripped");
    CHECK(G(r, "{\"causal_gene\": [\"ENSG4\"]}", "ENSG1, ENSG2") == 0, "no overlap");
    CHECK(G(r, "{\"causal_gene\": \"ENSG1\"}", "ENSG1") == 1, "a string is wrapped in a list");
    CHECK(G(r, "{\"causal_gene\": []}", "ENSG1") == 0, "empty list");
    CHECK(G(r, "{\"genes\": [\"ENSG1\"]}", "ENSG1") == 0, "missing key");
    CHECK(G(r, "{'causal_gene': ['ENSG1']}", "ENSG1") == 1, "single quotes");
    CHECK(G(r, "{\"causal_gene\": [\" ENSG1\"]}", "ENSG1") == 0, "predicted IDs are not stripped");
    CHECK(G(r, "{\"causal_gene\": [\"ENSG1\"]}", " ENSG1") == 0, "a truth without a comma is not stripped");
    CHECK(G(r, "{\"causal_gene\": [\"ensg1\"]}", "ENSG1") == 0, "case-sensitive");
    CHECK(G(r, "{\"causal_gene\": [[\"x\"], \"ENSG1\"]}", "ENSG1") == 0, "an unhashable element makes set() raise");
    CHECK(G(r, "{'causal_gene': ('ENSG1',)}", "ENSG1") == 0, "a tuple is wrapped whole");
    CHECK(G(r, "{\"causal_gene\": [\"\"]}", "ENSG1,,ENSG2") == 1, "an empty field of the truth matches \"\"");
    CHECK(G(r, "[\"ENSG1\"]", "ENSG1") == 0, "not a dict");
    CHECK(G(r, "ENSG1", "ENSG1") == 0, "a bare ID is not JSON");
    CHECK(G(r, "{\"causal_gene\": [1]}", "1") == 0, "an int is not the string");
}

static void test_grade_screen(void) {
    const char *r = "screen_gene_retrieval";
    CHECK(G(r, "kras", "KRAS") == 1 && G(r, "KRAS\n", "KRAS") == 1, "case-insensitive, stripped");
    CHECK(G(r, "NRAS", "KRAS") == 0 && G(r, "KRAS, MYC", "KRAS") == 0, "wrong or several");
}

static void test_grade_crispr(void) {
    const char *r = "crispr_delivery";
    CHECK(G(r, "c", "c") == 1 && G(r, "C", "c") == 1 && G(r, " c\n", "c") == 1, "letter, any case, stripped");
    CHECK(G(r, "c.", "c") == 0 && G(r, "b", "c") == 0 && G(r, "c) RNP", "c") == 0, "wrong or decorated");
    cJSON *scores = cJSON_Parse("{\"a\":0,\"b\":1,\"c\":2,\"d\":0,\"e\":1,\"f\":0}");
    CHECK(grade(r, "c", "c", GRADE_TRAIN, scores, NULL, 0) == 1.0, "train: full credit");
    CHECK(grade(r, "B", "c", GRADE_TRAIN, scores, NULL, 0) == 0.5, "train: partial credit for a score-1 option");
    CHECK(grade(r, "a", "c", GRADE_TRAIN, scores, NULL, 0) == 0.0, "train: a score-0 option");
    CHECK(grade(r, "z", "c", GRADE_TRAIN, scores, NULL, 0) == 0.0, "train: not an option");
    CHECK(grade(r, "b", "c", GRADE_EVAL, scores, NULL, 0) == 0.0, "eval: never partial");
    CHECK(grade(r, "b", "c", GRADE_TRAIN, NULL, NULL, 0) == 0.0 && grade(r, "c", "c", GRADE_TRAIN, NULL, NULL, 0) == 1.0,
          "train without scores: exact");
    cJSON_Delete(scores);
}

static void test_grade_unknown(void) {
    char err[128] = "";
    CHECK(grade("gwas_causal", "A", "A", GRADE_EVAL, NULL, err, sizeof err) < 0 && strstr(err, "unknown"), "unknown rule");
    CHECK(grader_known("lab_bench_anything") && grader_known("gwas_causal_gene_x") && !grader_known("causal_gene"),
          "prefix rules like upstream");
    const char *all[] = {"gwas_causal_gene_opentargets", "gwas_causal_gene_pharmaprojects", "gwas_causal_gene_gwas_catalog",
                         "gwas_variant_prioritization", "lab_bench_dbqa", "lab_bench_seqqa", "rare_disease_diagnosis",
                         "patient_gene_detection", "screen_gene_retrieval", "crispr_delivery"};
    for (int k = 0; k < 10; k++) CHECK(grader_known(all[k]), "%s", all[k]);
}

/* --- the loader --------------------------------------------------------------------------- */

static void write_tmp(char *path, const char *text) {
    strcpy(path, "/tmp/agent-test-XXXXXX");
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
}

static void test_loader(void) {
    struct task_set ts;
    char err[512];
    CHECK(taskset_load(fixtures, "val", &ts, err, sizeof err) == 0, "%s", err);
    CHECK(ts.n == 8 && taskset_with_reference(&ts) == 8, "8 fixture tasks with references (%zu)", ts.n);
    CHECK(!strcmp(ts.t[0].grader, "gwas_causal_gene_opentargets") && !strcmp(ts.t[0].ref_tool, "sql") && ts.t[0].meta, "fields");
    taskset_free(&ts);
    CHECK(taskset_load(fixtures, "train", &ts, err, sizeof err) == 0 && ts.n == 0, "split filter");
    taskset_free(&ts);
    CHECK(taskset_load(eval1_sample, NULL, &ts, err, sizeof err) == 0 && ts.n == 4, "Eval1 rows: %s", err);
    CHECK(!strcmp(ts.t[1].instance_id, "1") && !strcmp(ts.t[1].grader, "crispr_delivery") && !ts.t[1].ref_code,
          "numeric ids as text, task_name as the rule, no reference");
    taskset_free(&ts);
    char p[64];
    write_tmp(p, "{\"task_name\":\"lab_bench_dbqa\",\"prompt\":\"q\",\"answer\":\"A\"}\n\n{\"task_name\":\"nope\",\"prompt\":\"q\",\"answer\":\"A\"}\n");
    CHECK(taskset_load(p, NULL, &ts, err, sizeof err) < 0 && strstr(err, ":3:") && strstr(err, "nope"), "unknown rule, line 3: %s", err);
    unlink(p);
    write_tmp(p, "{\"task_name\":\"lab_bench_dbqa\",\"prompt\":\"q\"}\n");
    CHECK(taskset_load(p, NULL, &ts, err, sizeof err) < 0 && strstr(err, "answer"), "missing answer: %s", err);
    unlink(p);
    write_tmp(p, "{\"task_name\":\"lab_bench_dbqa\",\"prompt\":\"q\",\"answer\":\"A\"\n");
    CHECK(taskset_load(p, NULL, &ts, err, sizeof err) < 0 && strstr(err, "not valid JSON"), "broken JSON: %s", err);
    unlink(p);
    write_tmp(p, "{\"task_name\":\"seqqa\",\"grader\":\"lab_bench_seqqa\",\"prompt\":\"q\",\"answer\":\"A\",\"reference\":{\"tool\":\"r\",\"code\":\"x\"}}\n");
    CHECK(taskset_load(p, NULL, &ts, err, sizeof err) < 0 && strstr(err, "reference tool"), "bad reference tool: %s", err);
    unlink(p);
    CHECK(taskset_load("/nonexistent/tasks.jsonl", NULL, &ts, err, sizeof err) < 0, "missing file");
}

/* --- episodes with a scripted fake sandbox ------------------------------------------------------ */

/* The response a client hands out for the object j, as if vivd had written
 * it (j is freed). */
static struct viv_response *as_response(cJSON *j) {
    char *line = cJSON_PrintUnformatted(j);
    struct viv_response *r = viv_response_parse(line, strlen(line));
    free(line);
    cJSON_Delete(j);
    return r;
}

/* The fake sandbox: the task's reference code prints two lines, the answer
 * last; any other code "fails" with a traceback. */
static cJSON *fake_response(const struct episode *ep) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", 1);
    int is_ref = ep->task->ref_code && strstr(ep->code, ep->task->ref_code) != NULL;
    int explore = strstr(ep->code, "sqlite_master") || strstr(ep->code, "/db");
    /* references print the answer in the task's format */
    char *ans = !strcmp(ep->task->grader, "patient_gene_detection") ? xasprintf("{\"causal_gene\": [\"%s\"]}", ep->task->answer)
                                                                     : xstrdup(ep->task->answer);
    char *out = is_ref ? xasprintf("working...\n%s\n", ans) : xstrdup(explore ? "genes\tgene_info\n" : "");
    free(ans);
    cJSON_AddStringToObject(r, "stdout", out);
    /* a reference run also warns on stderr (pandas does): the teacher must answer from stdout */
    cJSON_AddStringToObject(r, "stderr", is_ref ? "FutureWarning: something will change\n"
                                         : explore ? "" : "Traceback (most recent call last):\nNameError: name 'x'\n");
    cJSON_AddNumberToObject(r, "exit_code", is_ref || explore ? 0 : 1);
    free(out);
    return r;
}

/* Drive one episode to the end with `agent`; tool calls go to the fake. */
static void drive(struct episode *ep, agent_fn agent, void *ctx) {
    for (int guard = 0; ep->state != EP_DONE && guard < 100; guard++) {
        if (ep->state == EP_NEED_MESSAGE) {
            char *m = agent(ctx, ep);
            episode_push_message(ep, m ? m : "", m ? strlen(m) : 0);
            free(m);
        } else if (ep->state == EP_NEED_TOOL) {
            ep->state = EP_WAIT_TOOL; /* what episode_submit does, without a daemon */
            struct viv_response *r = as_response(fake_response(ep));
            episode_on_response(ep, NULL, r);
            viv_response_free(r);
        }
    }
}

/* An agent that replays a fixed list of messages. */
struct script {
    const char *const *msgs;
    int i;
};
static char *script_next(void *ctx, const struct episode *ep) {
    (void)ep;
    struct script *s = ctx;
    return xstrdup(s->msgs[s->i++]);
}

static struct task_set fx;
static int load_fx(void) {
    char err[256];
    if (fx.n) return 0;
    return taskset_load(fixtures, "val", &fx, err, sizeof err);
}

static const struct turn *nth_role(const struct episode *ep, enum role r, int k) {
    for (size_t i = 0; i < ep->conv.n; i++)
        if (ep->conv.turns[i].role == r && k-- == 0) return &ep->conv.turns[i];
    return NULL;
}

static void test_episode_two_parse_failures(void) {
    CHECK(load_fx() == 0, "fixtures");
    struct episode_cfg cfg = {0};
    struct episode ep;
    const char *const bad[] = {"just words", "more words", SO};
    struct script s = {bad, 0};
    episode_init(&ep, &fx.t[3], &cfg, 1);
    drive(&ep, script_next, &s);
    CHECK(ep.state == EP_DONE && !strcmp(ep.end, "parse_errors") && ep.turns == 2 && ep.parse_failures == 2, "ends after two (%s)", ep.end);
    CHECK(ep.correct == 0 && ep.format == 0, "scores 0");
    const struct turn *u = nth_role(&ep, ROLE_USER, 1), *u2 = nth_role(&ep, ROLE_USER, 2);
    CHECK(u && !strcmp(u->text, proto_correction_text) && u2 && !strcmp(u2->text, proto_terminated_text), "correction, then termination");
    episode_free(&ep);
    /* one failure, then a good answer: correct but not well formatted */
    const char *const once[] = {"no tags here", "<think>t</think><solution>A</solution>"};
    struct script s2 = {once, 0};
    episode_init(&ep, &fx.t[3], &cfg, 1);
    drive(&ep, script_next, &s2);
    CHECK(!strcmp(ep.end, "solution") && ep.correct == 1 && ep.format == 0, "recovers: correct %g format %d", ep.correct, ep.format);
    episode_free(&ep);
}

static void test_episode_tools_and_limits(void) {
    CHECK(load_fx() == 0, "fixtures");
    struct episode_cfg cfg = {.max_turns = 3};
    struct episode ep;
    episode_init(&ep, &fx.t[3], &cfg, 1);
    episode_push_message(&ep, "<think>r</think><execute>#!R\nprint(1)</execute>", strlen("<think>r</think><execute>#!R\nprint(1)</execute>"));
    CHECK(ep.state == EP_NEED_TOOL && ep.tool == PROTO_TOOL_R && !strcmp(proto_tool_name(ep.tool), "r"),
          "R goes to vivd's policy r");
    /* a vivd without that policy refuses the tool: the model reads that R is not available */
    ep.state = EP_WAIT_TOOL;
    cJSON *nr = cJSON_Parse("{\"ok\":false,\"error\":{\"code\":\"bad_request\",\"message\":\"unknown tool 'r' (see op policies)\"}}");
    struct viv_response *nresp = as_response(nr);
    episode_on_response(&ep, NULL, nresp);
    viv_response_free(nresp);
    const struct turn *o = conv_last(&ep.conv, ROLE_TOOL);
    CHECK(ep.state == EP_NEED_MESSAGE && o && strstr(o->text, "R is not available") && !strncmp(o->text, "<observation>", 13),
          "no r policy: an observation saying R is not available, the episode goes on");
    episode_push_message(&ep, "<think>hmm</think>", 18);
    CHECK(ep.state == EP_NEED_MESSAGE && ep.conv.turns[ep.conv.n - 1].role == ROLE_ASSISTANT, "think-only: next message, nothing added");
    const char *m = "<think>t</think><execute>#!SQL\nSELECT 1;</execute> and then <solution>A</solution>";
    episode_push_message(&ep, m, strlen(m));
    CHECK(ep.state == EP_NEED_TOOL && ep.tool == PROTO_TOOL_SQL && !strcmp(ep.code, "SELECT 1;"), "execute: sql tool");
    CHECK(!strstr(ep.conv.turns[ep.conv.n - 1].text, "<solution>"), "the message is cut at the stop string");
    ep.state = EP_WAIT_TOOL;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", 1);
    char *big = malloc(15001);
    memset(big, 'y', 15000), big[15000] = 0;
    cJSON_AddStringToObject(r, "stdout", big);
    struct viv_response *resp = as_response(r);
    episode_on_response(&ep, NULL, resp);
    viv_response_free(resp);
    free(big);
    o = conv_last(&ep.conv, ROLE_TOOL);
    CHECK(o && strstr(o->text, "too long") && o->len < 10200, "long output truncated (%zu)", o ? o->len : 0);
    CHECK(ep.state == EP_DONE && !strcmp(ep.end, "max_turns") && ep.format == 0 && ep.correct == 0, "turn limit: %s", ep.end);
    CHECK(ep.tool_calls == 2, "two tool calls (R, refused by vivd, and SQL): %d", ep.tool_calls);
    episode_free(&ep);
}

/* A task whose text holds NUL is refused with its line, never loaded cut
 * short (cJSON's strings end at \u0000); a raw NUL byte, which would end
 * the file early, likewise. Other control characters are text. */
static void test_loader_nul(void) {
    struct task_set ts;
    char err[512], p[64];
    write_tmp(p, "{\"task_name\":\"lab_bench_dbqa\",\"prompt\":\"q\",\"answer\":\"A\"}\n"
                 "{\"task_name\":\"lab_bench_dbqa\",\"prompt\":\"q\\u0000 hidden\",\"answer\":\"A\"}\n");
    CHECK(taskset_load(p, NULL, &ts, err, sizeof err) < 0 && strstr(err, ":2:") && strstr(err, "NUL"),
          "\\u0000 in a prompt, line 2: %s", err);
    unlink(p);
    write_tmp(p, "{\"task_name\":\"lab_bench_dbqa\",\"prompt\":\"q \\\\u0000 is text\",\"answer\":\"\\u0085\\u0001A\"}\n");
    CHECK(taskset_load(p, NULL, &ts, err, sizeof err) == 0 && ts.n == 1 && strstr(ts.t[0].prompt, "\\u0000 is text") &&
              !strcmp(ts.t[0].answer, "\xc2\x85\x01" "A"),
          "an escaped backslash before u0000 and C1/C0 controls load as text: %s", err);
    taskset_free(&ts);
    unlink(p);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL, "temp file");
    if (!f) return;
    static const char raw[] = "{\"task_name\":\"lab_bench_dbqa\",\"prompt\":\"q\",\"answer\":\"A\"}\n\0\n"
                              "{\"task_name\":\"lab_bench_dbqa\",\"prompt\":\"r\",\"answer\":\"B\"}\n";
    fwrite(raw, 1, sizeof raw - 1, f);
    fclose(f);
    CHECK(taskset_load(p, NULL, &ts, err, sizeof err) < 0 && strstr(err, "NUL byte"), "a raw NUL byte: %s", err);
    unlink(p);
}

/* JSON strings read whole: NUL kept with its length, surrogate pairs joined,
 * lone surrogates as U+FFFD, a member found past nested values. */
static void test_json_text(void) {
    char *s;
    size_t n;
    const char *lit = "\"a\\u0000b\\ud800\\ud83e\\udd2c\\n\"tail";
    CHECK(json_string_decode(lit, strlen(lit), &s, &n) == strlen(lit) - 4 && n == 11 &&
              !memcmp(s, "a\0b\xef\xbf\xbd\xf0\x9f\xa4\xac\n", 11),
          "decoded %zu bytes", n);
    free(s);
    CHECK(json_string_decode("\"a\\u00\"", 8, &s, &n) == 0 && json_string_decode("\"open", 5, &s, &n) == 0,
          "cut escapes and unterminated strings are refused");
    const char *obj = "{\"id\":3,\"x\":{\"stdout\":\"no\"},\"a\":[1,\"]\"],\"stdout\":\"1\\u00002\",\"stderr\":null}";
    CHECK(json_member_text(obj, strlen(obj), "stdout", &s, &n) == 1 && n == 3 && !memcmp(s, "1\0" "2", 3),
          "the top-level member, whole");
    free(s);
    CHECK(json_member_text(obj, strlen(obj), "stderr", &s, &n) == 0 && json_member_text(obj, strlen(obj), "zz", &s, &n) == 0,
          "null and absent members");
    CHECK(json_member_text("{\"a\":", 5, "a", &s, &n) == -1, "a cut object");
    CHECK(json_text_has_nul("[\"\\u0000\"]", 10) && !json_text_has_nul("[\"\\\\u0000\"]", 11) &&
              json_text_has_nul("[\"\0\"]", 5),
          "an escaped NUL, not an escaped backslash; a raw NUL");
}

/* A NUL byte inside <solution> or <execute> makes the message malformed:
 * the answer "TP53\0BRCA1" is not graded as "TP53", nor code run cut
 * short. A NUL outside the blocks, or in <think>, is only text. An episode
 * counts it as a parse failure. */
static void test_parse_nul(void) {
    static const char sol[] = "<think>t</think><solution>TP53\0BRCA1</solution>",
                      exe[] = "<think>t</think><execute>print(1)\0import os</execute>",
                      aside[] = "<think>a\0b</think><solution>TP53</solution>\0";
    struct proto_msg m;
    proto_parse(sol, sizeof sol - 1, &m);
    CHECK(m.action == PROTO_PARSE_ERROR && !m.solution, "a NUL in the solution: action %d", m.action);
    proto_msg_free(&m);
    proto_parse(exe, sizeof exe - 1, &m);
    CHECK(m.action == PROTO_PARSE_ERROR && !m.code, "a NUL in the code: action %d", m.action);
    proto_msg_free(&m);
    proto_parse(aside, sizeof aside - 1, &m);
    CHECK(m.action == PROTO_SOLUTION && m.solution && !strcmp(m.solution, "TP53"), "a NUL elsewhere: action %d", m.action);
    proto_msg_free(&m);
    CHECK(load_fx() == 0, "fixtures");
    struct episode_cfg cfg = {.max_turns = 4};
    struct episode ep;
    episode_init(&ep, &fx.t[0], &cfg, 1);
    episode_push_message(&ep, sol, sizeof sol - 1);
    CHECK(ep.state == EP_NEED_MESSAGE && ep.parse_failures == 1 && !ep.answer, "the episode asks again (%d failures)",
          ep.parse_failures);
    episode_free(&ep);
}

/* A tool's output reaches the observation whole: NUL and what follows it,
 * invalid UTF-8 (as vivd writes it: U+FFFD per byte), the bytes of an
 * encoded surrogate, C0 and C1 controls. The response line is made by the
 * writer vivd uses, from the raw bytes a job printed. */
static void test_episode_output_whole(void) {
    CHECK(load_fx() == 0, "fixtures");
    static const char out[] = "a\0b\n", err[] = "\xff\xfe\0x\xc2\x85\x01\xed\xa0\x80";
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "id"), jw_int(&w, 1);
    jw_key(&w, "ok"), jw_bool(&w, true);
    jw_key(&w, "stdout"), jw_string(&w, out, sizeof out - 1);
    jw_key(&w, "stderr"), jw_string(&w, err, sizeof err - 1);
    jw_key(&w, "exit_code"), jw_int(&w, 0);
    jw_object_end(&w);
    char *line = jw_finish(&w);
    struct viv_response *r = viv_response_parse(line, strlen(line));
    static const char want_err[] = "\xef\xbf\xbd\xef\xbf\xbd\0x\xc2\x85\x01\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd";
    CHECK(r && r->out_len == 4 && !memcmp(r->out, out, 4) && r->err_len == sizeof want_err - 1 &&
              !memcmp(r->err, want_err, sizeof want_err - 1),
          "the client decodes stdout (%zu bytes) and stderr (%zu bytes) whole", r ? r->out_len : 0, r ? r->err_len : 0);
    struct episode_cfg cfg = {.max_turns = 3};
    struct episode ep;
    episode_init(&ep, &fx.t[3], &cfg, 1);
    const char *m = "<think>t</think><execute>print('a\\x00b')</execute>";
    episode_push_message(&ep, m, strlen(m));
    ep.state = EP_WAIT_TOOL;
    episode_on_response(&ep, NULL, r);
    const struct turn *o = conv_last(&ep.conv, ROLE_TOOL);
    static const char want[] = "<observation>a\0b\n\xef\xbf\xbd\xef\xbf\xbd\0x\xc2\x85\x01\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd</observation>";
    CHECK(o && o->len == sizeof want - 1 && !memcmp(o->text, want, sizeof want - 1),
          "the observation holds both outputs whole: %zu bytes, %zu expected", o ? o->len : 0, sizeof want - 1);
    CHECK(ep.last_stdout_len == 4 && !memcmp(ep.last_stdout, out, 4), "the last stdout, whole (%zu bytes)", ep.last_stdout_len);
    episode_free(&ep);
    viv_response_free(r);
    free(line);
    /* a response the client made up itself has empty outputs */
    struct viv_response *e = viv_response_parse("{\"id\":2,\"ok\":false}", 20);
    CHECK(e && e->out && e->out_len == 0 && e->err && e->err_len == 0, "no stdout/stderr members: empty texts");
    viv_response_free(e);
    CHECK(!viv_response_parse("[1]", 3) && !viv_response_parse("{", 1), "a line that is not an object is no response");
}

static void test_result_text(void) {
    static const char *const lines[] = {
        "{\"ok\":true,\"stdout\":\"partial\",\"stderr\":\"Traceback\\nKeyError\\n\",\"exit_code\":1,\"timed_out\":false,\"signal\":0}",
        "{\"ok\":true,\"stdout\":\"\",\"stderr\":\"\",\"exit_code\":2}",
        "{\"ok\":true,\"stdout\":\"x\\n\",\"timed_out\":true,\"signal\":9,\"wall_ms\":5000}",
        "{\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"queue full\"}}"};
    char *t[4];
    size_t n[4];
    for (int i = 0; i < 4; i++) {
        struct viv_response *r = viv_response_parse(lines[i], strlen(lines[i]));
        t[i] = episode_result_text(r, &n[i]);
        viv_response_free(r);
    }
    CHECK(!strcmp(t[0], "partial\nTraceback\nKeyError\n") && n[0] == strlen(t[0]), "stdout then stderr: '%s'", t[0]);
    CHECK(!strcmp(t[1], "[exit code 2]"), "exit code note: '%s'", t[1]);
    CHECK(strstr(t[2], "timed out") && !strstr(t[2], "signal"), "timeout note: '%s'", t[2]);
    CHECK(strstr(t[3], "busy") && strstr(t[3], "queue full") && n[3] == strlen(t[3]), "sandbox errors are observations: '%s'", t[3]);
    for (int i = 0; i < 4; i++) free(t[i]);
}

/* Who decided a call's outcome, for every answer a runner meets: what the
 * model's code did (an exit code, a crash, a timeout, a session lost at its
 * own deadline, a refused request) is the model's; a host lost, a refusal
 * for capacity, a lost worker or session, a jail that could not start are
 * the sandbox's. Then an episode given such an answer ends as lost to the
 * sandbox, and one given a timed-out call that took its session goes on. */
static void test_outcome_owner(void) {
    static const struct {
        const char *line;
        bool sandbox;
    } cases[] = {
        {"{\"ok\":true,\"exit_code\":0}", false},
        {"{\"ok\":true,\"exit_code\":1,\"stderr\":\"Traceback\"}", false},
        {"{\"ok\":true,\"exit_code\":-1,\"signal\":11}", false},
        {"{\"ok\":true,\"timed_out\":true,\"signal\":9,\"exit_code\":-1}", false},
        {"{\"ok\":true,\"timed_out\":true,\"session_lost\":true,\"signal\":9}", false},
        {"{\"ok\":true,\"session_lost\":true,\"signal\":9}", false},
        {"{\"ok\":true,\"session_lost\":true,\"exit_code\":0}", true},
        {"{\"ok\":false,\"error\":{\"code\":\"bad_request\",\"message\":\"code is longer than code_bytes\"}}", false},
        {"{\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"queue full\"}}", true},
        {"{\"ok\":false,\"error\":{\"code\":\"zygote_lost\",\"message\":\"worker exited\"}}", true},
        {"{\"ok\":false,\"error\":{\"code\":\"session_lost\",\"message\":\"its jail ended\"}}", true},
        {"{\"ok\":false,\"error\":{\"code\":\"sandbox_error\",\"message\":\"setup\"}}", true},
        {"{\"ok\":false,\"error\":{\"code\":\"shutting_down\",\"message\":\"stopping\"}}", true},
        {"{\"ok\":false,\"error\":{\"code\":\"disconnected\",\"message\":\"broke\"}}", true},
        {"{\"ok\":false,\"error\":{\"code\":\"unreachable\",\"message\":\"no host\"}}", true},
        {"{\"ok\":false,\"error\":{\"code\":\"timeout\",\"message\":\"no answer\"}}", true},
        {"{\"ok\":false}", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *j = cJSON_Parse(cases[i].line);
        CHECK(j, "case %zu parses", i);
        bool got = outcome_response_sandbox_decided(j);
        cJSON_Delete(j);
        CHECK(got == cases[i].sandbox, "%s: %s, expected %s", cases[i].line, got ? "the sandbox's" : "the model's",
              cases[i].sandbox ? "the sandbox's" : "the model's");
    }
    CHECK(load_fx() == 0, "fixtures");
    struct episode_cfg cfg = {.max_turns = 4};
    static const char *const lines[] = {"{\"id\":1,\"ok\":false,\"error\":{\"code\":\"zygote_lost\",\"message\":\"x\"}}",
                                        "{\"id\":1,\"ok\":true,\"stdout\":\"\",\"timed_out\":true,\"session_lost\":true,"
                                        "\"signal\":9,\"exit_code\":-1,\"wall_ms\":30000}"};
    for (int k = 0; k < 2; k++) {
        struct viv_response *r = viv_response_parse(lines[k], strlen(lines[k]));
        struct episode ep;
        episode_init(&ep, &fx.t[3], &cfg, 1);
        const char *m = "<think>t</think><execute>print(1)</execute>";
        episode_push_message(&ep, m, strlen(m));
        ep.state = EP_WAIT_TOOL;
        episode_on_response(&ep, NULL, r);
        if (k == 0) CHECK(episode_lost_to_sandbox(&ep), "a zygote_lost answer: the episode goes on (state %d)", ep.state);
        else CHECK(ep.state == EP_NEED_MESSAGE && !episode_lost_to_sandbox(&ep),
                   "a call that overran its deadline is the model's outcome: state %d", ep.state);
        episode_free(&ep);
        viv_response_free(r);
    }
}

/* --- the teacher ------------------------------------------------------------------------------- */

static void test_teacher_oracle_fake(void) {
    CHECK(load_fx() == 0, "fixtures");
    struct teacher t = {.error_rate = 0, .seed = 7};
    struct episode_cfg cfg = {0};
    int explored = 0, typos = 0;
    for (size_t i = 0; i < fx.n; i++)
        for (uint64_t s = 0; s < 25; s++) {
            struct episode ep;
            episode_init(&ep, &fx.t[i], &cfg, s);
            drive(&ep, teacher_next, &t);
            CHECK(ep.state == EP_DONE && ep.correct == 1 && ep.format == 1, "%s seed %lu: correct %g format %d end %s",
                  fx.t[i].instance_id, (unsigned long)s, ep.correct, ep.format, ep.end);
            explored += ep.turns >= 3;
            for (size_t k = 0; k < ep.conv.n; k++) typos += strstr(ep.conv.turns[k].text, "prnt(") != NULL;
            episode_free(&ep);
        }
    CHECK(explored > 10 && typos > 3, "varied trajectories: %d with several steps, %d typo-and-fix", explored, typos);
}

/* All the text of one teacher episode. */
static char *teacher_transcript(const struct teacher *t, size_t task, uint64_t seed) {
    struct episode_cfg cfg = {0};
    struct episode ep;
    episode_init(&ep, &fx.t[task], &cfg, seed);
    drive(&ep, teacher_next, (void *)t);
    char *all = xstrdup("");
    for (size_t k = 0; k < ep.conv.n; k++) {
        char *n = xasprintf("%s\x1e%s", all, ep.conv.turns[k].text);
        free(all);
        all = n;
    }
    episode_free(&ep);
    return all;
}

static void test_teacher_deterministic(void) {
    CHECK(load_fx() == 0, "fixtures");
    struct teacher t = {.error_rate = 0.4, .seed = 3};
    int distinct = 0;
    char *first = NULL;
    for (uint64_t s = 0; s < 12; s++)
        for (size_t i = 0; i < fx.n; i++) {
            char *a = teacher_transcript(&t, i, s), *b = teacher_transcript(&t, i, s);
            int same = !strcmp(a, b);
            if (i == 0) {
                if (first && strcmp(first, a)) distinct++;
                if (!first) first = xstrdup(a);
            }
            free(a), free(b);
            CHECK(same, "task %zu seed %lu: two runs differ", i, (unsigned long)s);
        }
    free(first);
    CHECK(distinct >= 5, "seeds change the wording/plan (%d of 11 differ from seed 0)", distinct);
    struct teacher t2 = {.error_rate = 0.4, .seed = 4};
    char *a = teacher_transcript(&t, 0, 0), *b = teacher_transcript(&t2, 0, 0), *c = teacher_transcript(&t2, 0, 1);
    CHECK(strcmp(a, b) || strcmp(b, c), "the teacher seed matters");
    free(a), free(b), free(c);
}

static void test_teacher_mistakes(void) {
    CHECK(load_fx() == 0, "fixtures");
    struct teacher t = {.error_rate = 0.5, .seed = 11};
    struct episode_cfg cfg = {0};
    int count[TM_COUNT] = {0}, n = 0, full = 0, mistaken_full = 0;
    for (uint64_t s = 0; s < 60; s++)
        for (size_t i = 0; i < fx.n; i++) {
            struct episode ep;
            episode_init(&ep, &fx.t[i], &cfg, s);
            enum teacher_mistake m = teacher_plan(&t, &ep);
            drive(&ep, teacher_next, &t);
            count[m]++, n++;
            int best = ep.correct == 1 && ep.format == 1;
            full += best;
            if (m == TM_NONE) CHECK(best, "no mistake planned but reward %g+%d", ep.correct, ep.format);
            if (m == TM_GIVE_UP) CHECK(ep.correct == 0 && ep.format == 1, "give up: wrong, well formatted");
            if (m == TM_MALFORMED) CHECK(ep.format == 0, "malformed: format 0");
            if (m == TM_FORMAT) CHECK(!best, "wrong format: not full reward (%s)", fx.t[i].instance_id);
            if (m != TM_NONE) mistaken_full += best;
            episode_free(&ep);
        }
    double rate = 1.0 - (double)count[TM_NONE] / n;
    CHECK(rate > 0.4 && rate < 0.6, "mistake rate %.2f for error_rate 0.5", rate);
    for (int m = 1; m < TM_COUNT; m++) CHECK(count[m] > 20, "mistake %s happens (%d)", teacher_mistake_name(m), count[m]);
    CHECK(mistaken_full < count[TM_PERTURBED], "only a perturbed query can luck into full reward (%d)", mistaken_full);
    struct teacher o = {.error_rate = 0, .seed = 11};
    struct episode ep;
    episode_init(&ep, &fx.t[0], &cfg, 5);
    CHECK(teacher_plan(&o, &ep) == TM_NONE, "error rate 0: no mistakes");
    episode_free(&ep);
}

static void test_random_agent(void) {
    CHECK(load_fx() == 0, "fixtures");
    struct episode_cfg cfg = {0};
    double expect = 0, got = 0;
    int n = 0;
    /* candidates per fixture, in order: the chance of a uniform pick */
    const int ncand[8] = {4, 3, 4, 4, 4, 3, 3, 10};
    for (size_t i = 0; i < fx.n; i++) {
        expect += 1.0 / ncand[i];
        for (uint64_t s = 0; s < 300; s++) {
            struct episode ep;
            uint64_t seed = 99;
            episode_init(&ep, &fx.t[i], &cfg, s);
            drive(&ep, random_next, &seed);
            CHECK(ep.format == 1 && ep.turns == 1 && !strcmp(ep.end, "solution"), "one well-formatted answer");
            got += ep.correct, n++;
            episode_free(&ep);
        }
    }
    expect /= (double)fx.n;
    got /= n;
    CHECK(fabs(got - expect) < 0.06, "accuracy %.3f near chance %.3f", got, expect);
    uint64_t r = 5;
    char *a = random_answer(&fx.t[0], &r);
    CHECK(!strcmp(a, "PCSK9") || !strcmp(a, "LDLR") || !strcmp(a, "APOE") || !strcmp(a, "MYC"), "a listed gene: %s", a);
    free(a);
    a = random_answer(&fx.t[5], &r);
    CHECK(strstr(a, "\"OMIM_ID\"") && (strstr(a, "219700") || strstr(a, "603903") || strstr(a, "143890")), "an OMIM candidate: %s", a);
    free(a);
}

int main(int argc, char **argv) {
    static const struct test_case tests[] = {
        {"protocol_stop_strings", test_stop_strings},
        {"protocol_parse_actions", test_parse_actions},
        {"protocol_parse_autoclose", test_parse_autoclose},
        {"protocol_parse_fenced_fallback", test_parse_fenced_fallback},
        {"protocol_parse_refuses_nul_in_blocks", test_parse_nul},
        {"protocol_tool_selection", test_tool_selection},
        {"protocol_task_inputs_prelude", test_task_inputs_prelude},
        {"protocol_observation_truncation", test_observation_truncation},
        {"protocol_format_reward_clauses", test_format_reward},
        {"graders_literal_parser", test_literal_parser},
        {"grade_gwas_causal_gene", test_grade_gwas_causal_gene},
        {"grade_gwas_variant_prioritization", test_grade_variant},
        {"grade_lab_bench", test_grade_lab_bench},
        {"grade_rare_disease_diagnosis", test_grade_rare_disease},
        {"grade_patient_gene_detection", test_grade_patient_gene},
        {"grade_screen_gene_retrieval", test_grade_screen},
        {"grade_crispr_delivery", test_grade_crispr},
        {"grade_unknown_rule", test_grade_unknown},
        {"eval1_loader", test_loader},
        {"eval1_loader_refuses_nul", test_loader_nul},
        {"json_text_whole_strings", test_json_text},
        {"episode_two_parse_failures", test_episode_two_parse_failures},
        {"episode_tools_and_limits", test_episode_tools_and_limits},
        {"episode_result_text", test_result_text},
        {"outcome_owner", test_outcome_owner},
        {"episode_output_whole", test_episode_output_whole},
        {"teacher_oracle_fake_sandbox", test_teacher_oracle_fake},
        {"teacher_deterministic", test_teacher_deterministic},
        {"teacher_mistakes", test_teacher_mistakes},
        {"random_agent_chance", test_random_agent},
    };
    int rc = run_test_cases(tests, sizeof tests / sizeof tests[0], argc, argv);
    taskset_free(&fx);
    return rc;
}
