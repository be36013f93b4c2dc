/*
 * fuzz_protocol.c - libFuzzer target for the agent protocol and the graders.
 *
 * Arbitrary bytes go through everything that reads model output: the stop
 * string cut, the tag parser (auto-closing, fenced blocks), tool selection,
 * observation rendering (the 10,000-character cut) and the format reward;
 * then through the graders, split at the first NUL into (answer, truth), for
 * every rule, which exercises the json.loads / ast.literal_eval parsers.
 * Last, the same messages drive an episode (episode.c) whose tool calls get
 * the input back as their output, so the state machine, the observations
 * and the end-of-episode scoring see garbage too.
 * Nothing may crash, leak, or run longer than linear-ish time.
 *
 *   make build/fuzz/fuzz_protocol
 *   build/fuzz/fuzz_protocol -max_total_time=600 corpus/ test/fuzz/seeds_protocol
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../sandbox/base/json_writer.h"
#include "../../envs/episode.h"
#include "../../envs/graders.h"
#include "../../envs/graders_literal.h"
#include "../../envs/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    size_t keep = proto_stop_len(text, size);
    if (keep > size) abort();
    struct proto_msg m;
    proto_parse(text, size, &m);
    if (m.action == PROTO_EXECUTE && !m.code) abort();
    if (m.action == PROTO_SOLUTION && !m.solution) abort();
    if (m.code) {
        enum proto_tool t;
        free(proto_select_tool(m.code, &t));
    }
    proto_msg_free(&m);
    free(proto_render_observation(text, size, NULL));
    /* the format reward over the input cut into messages at each 0x01 byte */
    const char *msgs[64];
    size_t lens[64];
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && n < 64; i++)
        if (i == size || data[i] == 1) msgs[n] = text + start, lens[n++] = i - start, start = i + 1;
    int f = proto_format_reward(msgs, lens, n, NULL, 0);
    if (f != 0 && f != 1) abort();
    /* graders: answer and truth as C strings */
    char *buf = malloc(size + 2);
    memcpy(buf, data, size);
    buf[size] = 0, buf[size + 1] = 0;
    const char *answer = buf, *truth = buf + strlen(buf) + 1 <= buf + size ? buf + strlen(buf) + 1 : buf + size + 1;
    static const char *const rules[] = {"gwas_causal_gene_opentargets", "gwas_variant_prioritization", "lab_bench_dbqa",
                                        "rare_disease_diagnosis", "patient_gene_detection", "screen_gene_retrieval",
                                        "crispr_delivery"};
    for (size_t k = 0; k < sizeof rules / sizeof rules[0]; k++) {
        double r = grade(rules[k], answer, truth, GRADE_EVAL, NULL, NULL, 0);
        if (!(r == 0.0 || r == 1.0)) abort();
    }
    struct pyval *v = pv_parse_literal(text, size);
    if (v && !pv_equal(v, v) && v->kind != PV_FLOAT && v->kind != PV_COMPLEX && v->kind != PV_LIST &&
        v->kind != PV_TUPLE && v->kind != PV_DICT && v->kind != PV_SET)
        abort(); /* only NaN (possibly inside a container) is unequal to itself */
    pv_free(v);
    pv_free(pv_parse_json(text, size));
    /* an episode fed these messages; every tool call answers with the input */
    struct task task = {.instance_id = "fuzz", .task_name = "rare_disease", .prompt = "p", .grader = "rare_disease_diagnosis",
                        .answer = "{\"OMIM_ID\": \"1\"}"};
    struct episode_cfg cfg = {.max_turns = 8};
    struct episode ep;
    episode_init(&ep, &task, &cfg, 1);
    for (int k = 0; k < n && ep.state != EP_DONE; k++) {
        if (ep.state == EP_NEED_MESSAGE) episode_push_message(&ep, msgs[k], lens[k]);
        if (ep.state == EP_NEED_TOOL) {
            ep.state = EP_WAIT_TOOL;
            /* stdout: the input whole, NULs included, as vivd writes it */
            struct json_writer w;
            jw_init(&w);
            jw_object_begin(&w);
            jw_key(&w, "ok"), jw_bool(&w, true);
            jw_key(&w, "stdout"), jw_string(&w, (const char *)data, size);
            jw_key(&w, "stderr"), jw_cstring(&w, answer);
            jw_object_end(&w);
            char *line = jw_finish(&w);
            struct viv_response *r = viv_response_parse(line, strlen(line));
            if (!r) abort();
            episode_on_response(&ep, NULL, r);
            viv_response_free(r);
            free(line);
        }
    }
    if (ep.state == EP_DONE && (ep.format < 0 || ep.format > 1 || ep.correct < 0 || ep.correct > 1)) abort();
    episode_free(&ep);
    free(buf);
    return 0;
}
