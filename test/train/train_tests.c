/*
 * train_tests.c - the trainer's pieces against real oracles:
 *   sft_mask_assistant_only   sft_render: mask 1 exactly on the assistant messages' tokens
 *                             (decoded back, they are those messages; the rest decodes to the
 *                             glue + observations), sft_targets learns only those tokens
 *   env_scores                bio_env: reward = correct + format on real Eval1 graders
 *   gen_logprobs_match        model_gen's sampling log-probs equal the training forward's
 *                             (qwen3_logprobs) on the same tokens; the KV prefix reuse of a
 *                             second turn gives the same tokens as a fresh slot
 *   gen_stop_string           generation stops right after a stop string
 *   grpo_direction            one GRPO update raises log p of the higher-reward sample and
 *                             lowers the lower-reward one (toy two-sample group)
 *   grpo_entropy_bonus        one GRPO update with entropy_coef > 0 leaves a higher policy entropy on
 *                             the batch than with 0, and raises it alone on equal rewards
 *   grpo_nan_skipped          poisoned weights: the update reports non-finite, takes no step;
 *                             the backend's snapshot/restore brings the last good weights back
 *   sft_backend_matches_model sft_train through the CPU backend (rl/backend.h) is the plain
 *                             model's forward/backward/AdamW loop (to float rounding: the batch's
 *                             rows come in sft_train's shuffled order); the data-parallel
 *                             form of its gradient (backward_logprobs with -1/den) equals the
 *                             mean cross-entropy backward; the KL reference fork is a frozen copy
 *   sft_check_ends_training   sft_train calls its check every check_every steps (never after the
 *                             last); a check's 1 ends the training at that step, -1 is an error
 *   backend_open_device       --device: cpu opens, cuda is refused by a viv without CUDA, naming
 *                             bin/viv-cuda; anything else is refused
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../envs/protocol.h"
#include "../../model/kernels.h"
#include "../../rl/bio_env.h"
#include "../../rl/model_gen.h"
#include "../../rl/train.h"
#include "../harness.h"
#include "../train_fixtures.h"

static struct qwen3 *tiny_model(int V, uint64_t seed) {
    struct qwen3_config c = {.vocab_size = V, .hidden_size = 32, .intermediate_size = 64, .num_layers = 2,
                             .num_heads = 2, .num_kv_heads = 1, .head_dim = 16, .max_position = 512,
                             .rms_norm_eps = 1e-6f, .rope_theta = 10000, .tie_word_embeddings = 1,
                             .bos_token_id = -1, .eos_token_id = -1};
    char err[256];
    struct qwen3 *m = qwen3_create(&c, err, sizeof err);
    if (m) qwen3_init_random(m, seed, 0.5f);
    return m;
}

static void sft_mask_assistant_only(void) {
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    enum role roles[] = {ROLE_ASSISTANT, ROLE_TOOL, ROLE_ASSISTANT};
    char *texts[] = {"<think>I will query the database.</think>\n<execute>#!SQL\nSELECT symbol FROM gene_info;</execute>",
                     "<observation>BRCA1\nTP53</observation>", "<think>The answer is TP53.</think>\n<solution>TP53</solution>"};
    struct sft_traj t = {.task = 0, .n = 3, .roles = roles, .texts = texts};
    struct chat c;
    chat_init(&c);
    CHECK(sft_render(&t, "Which gene?", tok, &c) == 0, "render");
    /* whole sequence decodes to the rendered text */
    size_t want_len;
    char *all = tokenizer_decode(tok, c.ids, c.n, NULL), *want = sft_text(&t, "Which gene?", &want_len);
    CHECK(all && want && !strcmp(all, want), "decoded '%s' vs '%s'", all, want);
    /* the masked tokens, run by run, are exactly the assistant messages */
    int run = 0, i = 0;
    while (i < c.n) {
        if (!c.mask[i]) {
            i++;
            continue;
        }
        int s = i;
        while (i < c.n && c.mask[i]) i++;
        char *d = tokenizer_decode(tok, c.ids + s, i - s, NULL);
        CHECK(run < 2, "more than two assistant runs");
        CHECK(!strcmp(d, texts[run == 0 ? 0 : 2]), "run %d decodes to '%s'", run, d);
        free(d);
        run++;
    }
    CHECK(run == 2, "%d assistant runs", run);
    /* the observation's tokens are not masked: they decode inside the unmasked text */
    int32_t *ids = calloc((size_t)c.n, 4), *tg = calloc((size_t)c.n, 4);
    sft_targets(&c, c.n, ids, tg);
    int trained = 0;
    for (int k = 0; k < c.n; k++) {
        CHECK(ids[k] == c.ids[k], "ids copied");
        if (tg[k] >= 0) {
            trained++;
            CHECK(k + 1 < c.n && c.mask[k + 1] && tg[k] == c.ids[k + 1], "target at %d is not an assistant token", k);
        } else CHECK(k + 1 >= c.n || !c.mask[k + 1], "assistant token %d not a target", k + 1);
    }
    int masked = 0;
    for (int k = 0; k < c.n; k++) masked += c.mask[k];
    CHECK(trained == masked - (c.mask[0] ? 1 : 0), "%d targets for %d assistant tokens", trained, masked);
    free(ids), free(tg), free(all), free(want);
    chat_free(&c);
    tokenizer_free(tok);
}

/* A tool turn holding NUL, invalid-UTF-8 replacement characters and C1
 * controls is rendered whole for SFT (its tokens decode to every byte), is
 * part of the tokenizer's training text whole, and crosses ranks whole
 * (sft_set_pack / sft_set_unpack). */
static void sft_tool_turn_whole(void) {
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    static const char obs[] = "<observation>a\0b\n\xef\xbf\xbd\0x\xc2\x85\x01</observation>";
    enum role roles[] = {ROLE_ASSISTANT, ROLE_TOOL, ROLE_ASSISTANT};
    char *texts[] = {strdup("<think>t</think>\n<execute>print('a\\x00b')</execute>"), malloc(sizeof obs),
                     strdup("<think>so</think>\n<solution>b</solution>")};
    memcpy(texts[1], obs, sizeof obs);
    size_t lens[] = {strlen(texts[0]), sizeof obs - 1, strlen(texts[2])};
    struct sft_traj t = {.task = 0, .n = 3, .roles = roles, .texts = texts, .lens = lens};
    struct chat c;
    chat_init(&c);
    CHECK(sft_render(&t, "Which?", tok, &c) == 0, "render");
    size_t dl, wl;
    char *all = tokenizer_decode(tok, c.ids, c.n, &dl), *want = sft_text(&t, "Which?", &wl);
    CHECK(all && want && dl == wl && !memcmp(all, want, wl), "the rendered tokens decode to the text (%zu vs %zu bytes)", dl, wl);
    CHECK(want && memmem(want, wl, obs, sizeof obs - 1), "the text holds the observation whole");
    chat_free(&c);
    free(all), free(want);
    /* across ranks */
    struct sft_set set = {.v = &t, .n = 1, .sampled = 2, .kept = 1}, back;
    char *blob = sft_set_pack(&set), err[128];
    CHECK(sft_set_unpack(blob, &back, err, sizeof err) == 0 && back.n == 1 && back.v[0].n == 3, "unpack: %s", err);
    for (int i = 0; i < 3 && back.n == 1; i++)
        CHECK(back.v[0].lens[i] == lens[i] && !memcmp(back.v[0].texts[i], texts[i], lens[i]) && back.v[0].roles[i] == roles[i],
              "turn %d back whole: %zu bytes, %zu sent", i, back.v[0].lens[i], lens[i]);
    sft_set_free(&back);
    free(blob);
    for (int i = 0; i < 3; i++) free(texts[i]);
    tokenizer_free(tok);
}

static void env_scores(void) {
    struct task t = {.instance_id = "x", .task_name = "screen_gene_retrieval", .split = "val", .prompt = "Which?",
                     .answer = "TP53", .grader = "screen_gene_retrieval"};
    struct task_set ts = {.t = &t, .n = 1};
    struct bio_env env = {.ts = &ts, .mode = GRADE_EVAL};
    struct rl_env_ops ops;
    bio_env_init(&env, &ops);
    struct rl_turn turn;
    const char *sql = "<think>look</think>\n<execute>#!SQL\nSELECT 1;</execute>";
    CHECK(ops.parse_turn(ops.ctx, sql, strlen(sql), &turn) == 0 && turn.kind == RL_TURN_EXECUTE, "execute");
    CHECK(!strcmp(turn.tool, "sql") && !strcmp(turn.code, "SELECT 1;"), "tool %s code '%s'", turn.tool, turn.code);
    rl_turn_clear(&turn);
    const char *bad = "no tags here<|im_end|>";
    CHECK(ops.parse_turn(ops.ctx, bad, strlen(bad), &turn) == 0 && turn.kind == RL_TURN_PARSE_ERROR, "parse error");
    rl_turn_clear(&turn);
    /* three episodes: right + well formed, wrong + well formed, right but malformed */
    char *good[] = {"<think>look</think>\n<execute>print(1)</execute>", "<think>so</think>\n<solution> tp53 </solution><|im_end|>"};
    char *wrong[] = {"<think>so</think>\n<solution>BRCA1</solution>"};
    char *nothink[] = {"<solution>TP53</solution>"};
    struct {
        char **turns;
        int n;
        const char *answer;
        double reward;
    } cases[] = {{good, 2, " tp53 ", 2.0}, {wrong, 1, "BRCA1", 1.0}, {nothink, 1, "TP53", 1.0}};
    for (int k = 0; k < 3; k++) {
        struct rl_episode ep = {.task = 0, .turn_text = cases[k].turns, .n_turns = cases[k].n,
                                .answer = (char *)cases[k].answer, .end = RL_END_SOLUTION};
        struct rl_score sc;
        CHECK(ops.score(ops.ctx, 0, &ep, &sc) == 0, "score");
        CHECK(fabs(sc.reward - cases[k].reward) < 1e-9, "case %d: reward %g (correct %g format %g)", k, sc.reward,
              sc.correct, sc.format);
    }
    /* the observation text closes the turn, shows the output, opens the next turn */
    struct rl_tool_result r = {.status = RL_TOOL_OK, .out = "TP53\n", .out_len = 5, .err = ""};
    size_t olen;
    char *obs = ops.observation(ops.ctx, &r, &olen);
    CHECK(obs && !strcmp(obs, "<|im_end|>\n<|im_start|>user\n<observation>TP53\n</observation><|im_end|>\n"
                              "<|im_start|>assistant\n"), "observation '%s'", obs);
    free(obs);
}

/* a request over `ctx` of n ids, generating up to max tokens */
static void mkreq(struct rl_gen_request *q, int episode, const int *ctx, int n, int max, int *out, float *lp,
                  const char *const *stop) {
    memset(q, 0, sizeof *q);
    q->episode = episode, q->tokens = ctx, q->n_tokens = n, q->turn_start = n, q->max_new_tokens = max;
    q->out_tokens = out, q->out_logprobs = lp, q->stop = stop;
}

static void gen_logprobs_match(void) {
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    int V = tokenizer_vocab_size(tok);
    struct qwen3 *m = tiny_model(V, 7);
    CHECK(m, "model");
    struct model_gen g;
    char err[256];
    CHECK(model_gen_init(&g, m, tok, 3, 128, err, sizeof err) == 0, "%s", err);
    g.temperature = 1.0f, g.seed = 11;
    g.eos_id = -1; /* let it run to the length limit */
    struct rl_generator gen;
    model_gen_generator(&g, &gen);
    int ctx[2][8] = {{1, 2, 3, 4, 5}, {9, 8, 7}};
    int out[2][20], out2[20];
    float lp[2][20], lp2[20];
    static const char *const nostop[] = {NULL};
    struct rl_gen_request q[2];
    mkreq(&q[0], 0, ctx[0], 5, 20, out[0], lp[0], nostop);
    mkreq(&q[1], 1, ctx[1], 3, 12, out[1], lp[1], nostop);
    CHECK(gen.generate(gen.ctx, q, 2) == 0, "generate");
    CHECK(q[0].n_out == 20 && q[1].n_out == 12, "n_out %d %d", q[0].n_out, q[1].n_out);
    CHECK(q[0].stop_reason == RL_GEN_STOP_LENGTH, "stop reason");
    /* oracle: the training forward's log-probs of the same tokens */
    for (int r = 0; r < 2; r++) {
        int n0 = r ? 3 : 5, T = n0 + q[r].n_out;
        int32_t ids[40], tg[40];
        float ref[40];
        for (int t = 0; t < T; t++) ids[t] = t < n0 ? ctx[r][t] : out[r][t - n0];
        for (int t = 0; t < T; t++) tg[t] = t + 1 < T && t + 1 >= n0 ? ids[t + 1] : -1;
        CHECK(qwen3_logprobs(m, ids, tg, 1, T, ref) == 0, "logprobs");
        for (int k = 0; k < q[r].n_out; k++)
            CHECK(fabsf(ref[n0 - 1 + k] - lp[r][k]) < 2e-3f, "row %d token %d: %g vs %g", r, k, ref[n0 - 1 + k], lp[r][k]);
    }
    /* alone in a batch, with a fresh cache, request 0 draws the same tokens */
    model_gen_invalidate(&g);
    struct rl_gen_request q1;
    mkreq(&q1, 0, ctx[0], 5, 20, out2, lp2, nostop);
    CHECK(gen.generate(gen.ctx, &q1, 1) == 0, "generate alone");
    CHECK(!memcmp(out2, out[0], sizeof out2), "tokens depend on the batch");
    /* second turn: context = first turn + a few tokens; the slot's prefix is reused and
     * the result equals a fresh slot's */
    int ctx2[40];
    memcpy(ctx2, ctx[0], 5 * sizeof(int));
    memcpy(ctx2 + 5, out[0], 20 * sizeof(int));
    ctx2[25] = 3, ctx2[26] = 4;
    long before = g.tokens_prefilled;
    int o3[10], o4[10];
    float l3[10], l4[10];
    mkreq(&q1, 0, ctx2, 27, 10, o3, l3, nostop);
    CHECK(gen.generate(gen.ctx, &q1, 1) == 0, "turn 2");
    CHECK(g.tokens_prefilled - before < 27, "prefix not reused: %ld tokens fed", g.tokens_prefilled - before);
    model_gen_invalidate(&g);
    mkreq(&q1, 0, ctx2, 27, 10, o4, l4, nostop);
    CHECK(gen.generate(gen.ctx, &q1, 1) == 0, "turn 2 fresh");
    CHECK(!memcmp(o3, o4, sizeof o3), "prefix reuse changed the tokens");
    model_gen_free(&g);
    qwen3_free(m);
    tokenizer_free(tok);
}

static void gen_stop_string(void) {
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    int V = tokenizer_vocab_size(tok);
    struct qwen3 *m = tiny_model(V, 3);
    CHECK(m, "model");
    /* make the model say one token forever: every logit favours token `s`, whose
     * text holds the stop string; lm_head is tied, so bias through the final norm:
     * simplest is to find which token greedy decoding picks and use its text as the stop. */
    struct model_gen g;
    char err[256];
    CHECK(model_gen_init(&g, m, tok, 1, 128, err, sizeof err) == 0, "%s", err);
    g.temperature = 0, g.eos_id = -1;
    struct rl_generator gen;
    model_gen_generator(&g, &gen);
    int ctx[3] = {5, 6, 7}, out[30];
    float lp[30];
    static const char *const nostop[] = {NULL};
    struct rl_gen_request q;
    mkreq(&q, 0, ctx, 3, 30, out, lp, nostop);
    CHECK(gen.generate(gen.ctx, &q, 1) == 0 && q.n_out == 30, "free run");
    /* the stop string: the text of tokens 3..4 of the free run; generation must end at token 4 */
    char *stop = tokenizer_decode(tok, (int32_t *)out + 3, 2, NULL);
    CHECK(stop && *stop, "stop text");
    char *full = tokenizer_decode(tok, (int32_t *)out, 5, NULL);
    size_t first = (size_t)(strstr(full, stop) - full) + strlen(stop); /* may end earlier than token 4 */
    const char *stops[] = {stop, NULL};
    int out2[30];
    model_gen_invalidate(&g);
    mkreq(&q, 0, ctx, 3, 30, out2, lp, stops);
    CHECK(gen.generate(gen.ctx, &q, 1) == 0, "stopped run");
    CHECK(q.stop_reason == RL_GEN_STOP_STRING, "stop reason %d", q.stop_reason);
    char *got = tokenizer_decode(tok, (int32_t *)out2, q.n_out, NULL);
    CHECK(strlen(got) >= first && memmem(got, strlen(got), stop, strlen(stop)), "'%s' lacks the stop '%s'", got, stop);
    char *less = tokenizer_decode(tok, (int32_t *)out2, q.n_out - 1, NULL);
    CHECK(!strstr(less, stop), "generation went on past the stop string");
    CHECK(!memcmp(out2, out, (size_t)q.n_out * sizeof(int)), "greedy tokens differ");
    free(stop), free(full), free(got), free(less);
    model_gen_free(&g);
    qwen3_free(m);
    tokenizer_free(tok);
}

/* A toy group: prompt [1,2,3], completion A = [4,5] (reward 2), B = [6,7] (reward 0). */
static void toy_episode(struct rl_episode *e, const int *compl, float reward, const struct qwen3 *m) {
    memset(e, 0, sizeof *e);
    e->n_tokens = 5, e->prompt_tokens = 3;
    e->tokens = calloc(5, sizeof(int));
    e->mask = calloc(5, 1);
    e->logprobs = calloc(5, sizeof(float));
    int ids[5] = {1, 2, 3, compl[0], compl[1]};
    memcpy(e->tokens, ids, sizeof ids);
    e->mask[3] = e->mask[4] = 1;
    int32_t tg[5] = {-1, -1, ids[3], ids[4], -1};
    float lp[5];
    qwen3_logprobs((struct qwen3 *)m, ids, tg, 1, 5, lp);
    e->logprobs[3] = lp[2], e->logprobs[4] = lp[3];
    e->score.reward = reward, e->score.correct = reward > 1, e->score.format = 1;
    e->end = RL_END_SOLUTION;
}

static float seq_logp(struct qwen3 *m, const int *compl) {
    int32_t ids[5] = {1, 2, 3, compl[0], compl[1]}, tg[5] = {-1, -1, compl[0], compl[1], -1};
    float lp[5];
    qwen3_logprobs(m, ids, tg, 1, 5, lp);
    return lp[2] + lp[3];
}

static void grpo_direction(void) {
    struct qwen3 *m = tiny_model(16, 5);
    CHECK(m, "model");
    int A[2] = {4, 5}, B[2] = {6, 7};
    float a0 = seq_logp(m, A), b0 = seq_logp(m, B);
    struct rl_episode eps[4];
    toy_episode(&eps[0], A, 2, m), toy_episode(&eps[1], B, 0, m);
    toy_episode(&eps[2], A, 2, m), toy_episode(&eps[3], B, 0, m);
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = 1e-2f, ac.weight_decay = 0;
    struct train_backend *be = train_backend_cpu(m);
    CHECK(be->ops->opt_init(be, &ac) == 0, "opt_init");
    struct grpo_cfg gc;
    grpo_cfg_default(&gc);
    gc.kl_coef = 0, gc.entropy_coef = 0;
    struct grpo_step_out go;
    char err[256];
    CHECK(grpo_update(be, NULL, &gc, eps, 4, 4, &go, err, sizeof err) == 0, "%s", err);
    CHECK(!go.nonfinite && be->opt.step == 1, "no step taken");
    CHECK(go.st.tokens == 8, "%ld tokens", go.st.tokens);
    CHECK(fabs(go.st.ratio_mean - 1) < 1e-3, "on-policy ratio %g", go.st.ratio_mean);
    float a1 = seq_logp(m, A), b1 = seq_logp(m, B);
    CHECK(a1 > a0 && b1 < b0, "log p(high) %g -> %g, log p(low) %g -> %g", a0, a1, b0, b1);
    /* equal rewards: zero advantage, no gradient: with fresh moments the step
     * does not move the weights */
    for (int k = 0; k < 4; k++) eps[k].score.reward = 1;
    float a2 = seq_logp(m, A);
    CHECK(be->ops->opt_init(be, &ac) == 0, "opt_init");
    CHECK(grpo_update(be, NULL, &gc, eps, 4, 4, &go, err, sizeof err) == 0, "%s", err);
    CHECK(fabsf(seq_logp(m, A) - a2) < 1e-5f, "zero advantage moved log p by %g", seq_logp(m, A) - a2);
    for (int k = 0; k < 4; k++) free(eps[k].tokens), free(eps[k].mask), free(eps[k].logprobs);
    train_backend_free(be);
    qwen3_free(m);
}

/* Mean entropy of the next-token distribution at the toy group's completion
 * positions (2 and 3: predicting the two completion tokens), computed here
 * from the logits in double. */
static double toy_entropy(struct qwen3 *m, const struct rl_episode *e, int n) {
    double sum = 0;
    int V = m->cfg.vocab_size;
    for (int i = 0; i < n; i++) {
        int32_t ids[5], tg[5] = {-1, -1, e[i].tokens[3], e[i].tokens[4], -1};
        for (int t = 0; t < 5; t++) ids[t] = e[i].tokens[t];
        qwen3_forward(m, ids, tg, NULL, 1, 5);
        for (int r = 2; r <= 3; r++) {
            const float *x = qwen3_logits(m) + (size_t)r * V;
            double mx = x[0], z = 0, zx = 0;
            for (int k = 1; k < V; k++) mx = x[k] > mx ? x[k] : mx;
            for (int k = 0; k < V; k++) z += exp(x[k] - mx), zx += exp(x[k] - mx) * (x[k] - mx);
            sum += log(z) - zx / z;
        }
    }
    return sum / (2.0 * n);
}

/* The entropy bonus is trained on: from the same weights and the same
 * batch, one GRPO update with entropy_coef > 0 leaves the policy's entropy on
 * that batch higher than the update with entropy_coef = 0; with equal
 * rewards (no advantage, so no policy-gradient term) the bonus alone still
 * raises it, where entropy_coef = 0 leaves the weights alone. */
static void grpo_entropy_bonus(void) {
    int A[2] = {4, 5}, B[2] = {6, 7};
    double after[2], before = 0, reported[2], eloss[2];
    for (int run = 0; run < 2; run++) {
        struct qwen3 *m = tiny_model(16, 5);
        CHECK(m, "model");
        struct rl_episode eps[4];
        toy_episode(&eps[0], A, 2, m), toy_episode(&eps[1], B, 0, m);
        toy_episode(&eps[2], A, 2, m), toy_episode(&eps[3], B, 0, m);
        before = toy_entropy(m, eps, 4);
        struct adamw_config ac;
        adamw_defaults(&ac);
        ac.lr = 1e-3f, ac.weight_decay = 0; /* small: a first-order claim (AdamW's first step is ~lr per weight) */
        struct train_backend *be = train_backend_cpu(m);
        CHECK(be->ops->opt_init(be, &ac) == 0, "opt_init");
        struct grpo_cfg gc;
        grpo_cfg_default(&gc);
        gc.kl_coef = 0, gc.entropy_coef = run ? 0.5 : 0;
        struct grpo_step_out go;
        char err[256];
        CHECK(grpo_update(be, NULL, &gc, eps, 4, 4, &go, err, sizeof err) == 0, "%s", err);
        CHECK(!go.nonfinite && be->opt.step == 1, "no step taken");
        after[run] = toy_entropy(m, eps, 4), reported[run] = go.entropy, eloss[run] = go.st.entropy_loss;
        if (run) { /* equal rewards: only the bonus pulls, and it raises the entropy */
            for (int k = 0; k < 4; k++) eps[k].score.reward = 1;
            double h0 = toy_entropy(m, eps, 4);
            CHECK(be->ops->opt_init(be, &ac) == 0, "opt_init");
            CHECK(grpo_update(be, NULL, &gc, eps, 4, 4, &go, err, sizeof err) == 0, "%s", err);
            CHECK(!go.nonfinite && be->opt.step == 1, "no step taken on equal rewards with an entropy bonus");
            double h1 = toy_entropy(m, eps, 4);
            CHECK(h1 > h0 + 1e-4, "entropy bonus alone: entropy %g -> %g", h0, h1);
        }
        for (int k = 0; k < 4; k++) free(eps[k].tokens), free(eps[k].mask), free(eps[k].logprobs);
        train_backend_free(be);
        qwen3_free(m);
    }
    /* the reported entropy is the policy's before the step (both paths measure it) */
    CHECK(fabs(reported[0] - before) < 1e-4 && fabs(reported[1] - before) < 1e-4,
          "reported entropy %g / %g vs %g", reported[0], reported[1], before);
    CHECK(eloss[0] == 0 && fabs(eloss[1] + 0.5 * before) < 1e-4, "entropy loss %g / %g (want 0 / %g)", eloss[0],
          eloss[1], -0.5 * before);
    CHECK(after[1] > after[0] + 1e-3, "entropy after the update: %g with the bonus, %g without (before %g)", after[1],
          after[0], before);
}

static void grpo_nan_skipped(void) {
    struct qwen3 *m = tiny_model(16, 9);
    CHECK(m, "model");
    int A[2] = {4, 5}, B[2] = {6, 7};
    struct rl_episode eps[2];
    toy_episode(&eps[0], A, 2, m), toy_episode(&eps[1], B, 0, m);
    struct adamw_config ac;
    adamw_defaults(&ac);
    struct train_backend *be = train_backend_cpu(m);
    CHECK(be->ops->opt_init(be, &ac) == 0, "opt_init");
    struct grpo_cfg gc;
    grpo_cfg_default(&gc);
    gc.kl_coef = 0;
    CHECK(be->ops->snapshot(be) == 0, "snapshot");
    float was = m->params[m->n_params / 2];
    CHECK(be->ops->set_param(be, m->n_params / 2, NAN) == 0, "set_param"); /* a poisoned weight */
    CHECK(!be->ops->params_finite(be), "params_finite missed the NaN");
    struct grpo_step_out go;
    char err[256];
    CHECK(grpo_update(be, NULL, &gc, eps, 2, 2, &go, err, sizeof err) == 0, "%s", err);
    CHECK(go.nonfinite == 1, "NaN not reported");
    CHECK(be->opt.step == 0, "a step was taken on NaN");
    CHECK(be->ops->restore(be) == 0 && be->ops->params_finite(be) && m->params[m->n_params / 2] == was,
          "restore did not bring the weight back");
    for (int k = 0; k < 2; k++) free(eps[k].tokens), free(eps[k].mask), free(eps[k].logprobs);
    train_backend_free(be);
    qwen3_free(m);
}

/* Two chats with assistant tokens, for SFT. */
static void sft_chats(const struct tokenizer *tok, struct chat *ex) {
    enum role roles[] = {ROLE_ASSISTANT, ROLE_TOOL, ROLE_ASSISTANT};
    char *texts[] = {"<think>I will query the database.</think>\n<execute>#!SQL\nSELECT symbol FROM gene_info;</execute>",
                     "<observation>BRCA1\nTP53</observation>", "<think>The answer is TP53.</think>\n<solution>TP53</solution>"};
    struct sft_traj t = {.task = 0, .n = 3, .roles = roles, .texts = texts};
    struct sft_traj t2 = {.task = 0, .n = 1, .roles = roles + 2, .texts = texts + 2};
    chat_init(&ex[0]), chat_init(&ex[1]);
    sft_render(&t, "Which gene?", tok, &ex[0]);
    sft_render(&t2, "Name the gene.", tok, &ex[1]);
}

static void sft_backend_matches_model(void) {
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    int V = tokenizer_vocab_size(tok);
    struct qwen3 *m1 = tiny_model(V, 21), *m2 = tiny_model(V, 21);
    CHECK(m1 && m2, "models");
    struct chat ex[2];
    sft_chats(tok, ex);
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = 1e-2f, ac.weight_decay = 0, ac.total_steps = 4;
    /* the oracle: the loop sft_train ran before the backend existed, on the plain model */
    struct adamw opt;
    adamw_init(&opt, &ac, m1->n_params);
    int T = ex[0].n > ex[1].n ? ex[0].n : ex[1].n;
    int32_t *ids = calloc((size_t)2 * T, sizeof *ids), *tg = calloc((size_t)2 * T, sizeof *tg);
    float oracle[2];
    for (int step = 0; step < 2; step++) { /* epoch 1 with batch 2 is one step; order does not matter for a full batch */
        for (int k = 0; k < 2; k++) sft_targets(&ex[k], T, ids + (size_t)k * T, tg + (size_t)k * T);
        oracle[step] = qwen3_forward(m1, ids, tg, NULL, 2, T);
        qwen3_zero_grad(m1);
        qwen3_backward(m1);
        adamw_step(&opt, m1, NULL);
    }
    struct train_backend *be = train_backend_cpu(m2);
    CHECK(be->ops->opt_init(be, &ac) == 0, "opt_init");
    struct sft_opts so = {.epochs = 2, .batch = 2, .max_len = T, .seed = 1}; /* no cut: the oracle sees it all */
    char err[256];
    float last = sft_train(be, ex, 2, &so, err, sizeof err);
    CHECK(!isnan(last), "%s", err);
    CHECK(fabsf(last - oracle[1]) <= 1e-5f * oracle[1], "last epoch's loss %.9g, the plain loop's %.9g", last, oracle[1]);
    CHECK(be->opt.step == 2, "%ld steps", be->opt.step);
    double dp = 0, dm = 0, mm = 0;
    for (size_t i = 0; i < m1->n_params; i++) {
        dp = fmax(dp, fabs((double)m1->params[i] - m2->params[i]));
        dm = fmax(dm, fabs((double)opt.m[i] - be->opt.m[i]));
        mm = fmax(mm, fabs((double)opt.m[i]));
    }
    CHECK(mm > 0 && dp < 1e-5 && dm <= 1e-4 * mm, "weights differ by %g, moments by %g (max %g)", dp, dm, mm);
    /* the data-parallel gradient form: sum_i (-1/den) logp_i has the mean cross-entropy's gradient */
    for (int k = 0; k < 2; k++) sft_targets(&ex[k], T, ids + (size_t)k * T, tg + (size_t)k * T);
    float *coef = calloc((size_t)2 * T, sizeof *coef), *g1 = malloc(m1->n_params * sizeof(float));
    int den = 0;
    for (int i = 0; i < 2 * T; i++) den += tg[i] >= 0;
    for (int i = 0; i < 2 * T; i++) coef[i] = tg[i] >= 0 ? -1.0f / den : 0.0f;
    qwen3_forward(m1, ids, tg, NULL, 2, T);
    qwen3_zero_grad(m1);
    qwen3_backward(m1);
    memcpy(g1, m1->grads, m1->n_params * sizeof(float));
    CHECK(!isnan(be->ops->forward(be, ids, tg, 2, T)), "forward");
    be->ops->zero_grad(be);
    CHECK(be->ops->backward_logprobs(be, coef) == 0, "backward_logprobs");
    double maxd = 0, maxg = 0;
    for (size_t i = 0; i < m1->n_params; i++) {
        double d = fabs((double)g1[i] - m2->grads[i]);
        maxd = d > maxd ? d : maxd, maxg = fabs(g1[i]) > maxg ? fabs(g1[i]) : maxg;
    }
    CHECK(maxg > 0 && maxd <= 1e-5 * maxg + 1e-7, "gradients differ by %g (max %g)", maxd, maxg);
    /* the KL reference: a copy that later steps do not move */
    struct train_backend *ref = be->ops->fork(be);
    CHECK(ref && ref->m != m2 && !memcmp(ref->m->params, m2->params, m2->n_params * sizeof(float)), "fork");
    m2->params[0] += 1.0f;
    CHECK(ref->m->params[0] != m2->params[0], "the fork shares weights");
    train_backend_free(ref);
    train_backend_free(be);
    adamw_free(&opt);
    free(ids), free(tg), free(coef), free(g1);
    chat_free(&ex[0]), chat_free(&ex[1]);
    qwen3_free(m1), qwen3_free(m2);
    tokenizer_free(tok);
}

/* What sft_train's check saw: the steps it was called at, and the steps done. */
struct check_log {
    long seen[16], steps;
    int n, stop_at, fail_at;
};
static void check_count_step(void *arg, long step, long total, float loss, float lr, double tps) {
    ((struct check_log *)arg)->steps = step;
}
static int check_verdict(void *arg, long step, char *err, size_t errlen) {
    struct check_log *l = arg;
    if (l->n < 16) l->seen[l->n++] = step;
    if (step == l->fail_at) return snprintf(err, errlen, "check failed"), -1;
    return step == l->stop_at;
}

static void sft_check_ends_training(void) {
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    struct qwen3 *m = tiny_model(tokenizer_vocab_size(tok), 5);
    struct chat ex[2];
    sft_chats(tok, ex);
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.total_steps = 7;
    struct train_backend *be = train_backend_cpu(m);
    CHECK(be->ops->opt_init(be, &ac) == 0, "opt_init");
    char err[256] = "";
    /* 6 steps (6 epochs of one batch), a check every 2: at 2 and 4; none at the last */
    struct check_log l = {.stop_at = -1, .fail_at = -1};
    struct sft_opts so = {.epochs = 6, .batch = 2, .max_len = 512, .seed = 1, .on_step = check_count_step, .arg = &l,
                          .check_every = 2, .check = check_verdict};
    CHECK(!isnan(sft_train(be, ex, 2, &so, err, sizeof err)), "%s", err);
    CHECK(l.steps == 6 && l.n == 2 && l.seen[0] == 2 && l.seen[1] == 4, "%ld steps, %d checks (at %ld, %ld)", l.steps,
          l.n, l.seen[0], l.seen[1]);
    /* a check that says stop at step 2 ends it there: no 3rd update */
    l = (struct check_log){.stop_at = 2, .fail_at = -1};
    long before = be->opt.step;
    float loss = sft_train(be, ex, 2, &so, err, sizeof err);
    CHECK(!isnan(loss) && l.steps == 2 && l.n == 1 && be->opt.step - before == 2, "stopped after %ld steps, %ld updates",
          l.steps, be->opt.step - before);
    /* a failing check is sft_train's error */
    l = (struct check_log){.stop_at = -1, .fail_at = 2};
    CHECK(isnan(sft_train(be, ex, 2, &so, err, sizeof err)) && strstr(err, "check failed"), "err '%s'", err);
    train_backend_free(be);
    chat_free(&ex[0]), chat_free(&ex[1]);
    qwen3_free(m);
    tokenizer_free(tok);
}

static void backend_open_device(void) {
    struct qwen3 *m = tiny_model(16, 1);
    CHECK(m, "model");
    char err[256] = "";
    struct train_backend *b = train_backend_open("cpu", m, err, sizeof err);
    CHECK(b && !strcmp(b->device, "cpu") && b->world == 1, "cpu: %s", err);
    train_backend_free(b);
    b = train_backend_open("tpu", m, err, sizeof err);
    CHECK(!b && strstr(err, "cpu or cuda"), "tpu accepted (%s)", err);
    b = train_backend_open("cuda", m, err, sizeof err);
    if (!train_backend_cuda_built()) /* this test binary is the CPU build's */
        CHECK(!b && strstr(err, "bin/viv-cuda"), "cuda without CUDA: '%s'", err);
    train_backend_free(b);
    qwen3_free(m);
}

int main(int argc, char **argv) {
    par_set_threads(1);
    static const struct test_case tests[] = {
        {"sft_mask_assistant_only", sft_mask_assistant_only},
        {"sft_tool_turn_whole", sft_tool_turn_whole},
        {"env_scores", env_scores},
        {"gen_logprobs_match", gen_logprobs_match},
        {"gen_stop_string", gen_stop_string},
        {"grpo_direction", grpo_direction},
        {"grpo_entropy_bonus", grpo_entropy_bonus},
        {"grpo_nan_skipped", grpo_nan_skipped},
        {"sft_backend_matches_model", sft_backend_matches_model},
        {"sft_check_ends_training", sft_check_ends_training},
        {"backend_open_device", backend_open_device},
    };
    return run_test_cases(tests, sizeof tests / sizeof tests[0], argc, argv);
}
