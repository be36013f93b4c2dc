/*
 * train_gpu_tests.c - the trainer (rl/sft.c, rl/grpo_step.c, rl/model_gen.c)
 * on the CUDA backend (rl/backend_cuda.c) against the same trainer on the
 * CPU backend (rl/backend_cpu.c), which test/train checks against plain
 * model loops. Same weights, same data, same code path; only the backend
 * differs:
 *   sft_cpu_vs_cuda        sft_train: every step's loss, then the weights and AdamW
 *                          moments brought down by sync_down
 *   grpo_cpu_vs_cuda       grpo_update on sampled groups: loss, ratio (1 on-policy),
 *                          entropy, grad norm, tokens, and the updated weights, with a
 *                          large entropy bonus (its gradient a real part of the update)
 *   gen_cuda_logprobs      model_gen over the GPU KV cache: the sampling log-probs
 *                          (temperature 1) equal the CPU training forward's and the GPU
 *                          training forward's on the same tokens; greedy decoding starts as the CPU generator's; prefix
 *                          reuse of a second turn changes nothing
 *   nan_restore_cuda       a poisoned weight: params_finite sees it, grpo_update takes no
 *                          step, restore brings back the snapshot
 *   checkpoint_cuda        weights + AdamW state down (sync_down), HF save, CPU load:
 *                          the CPU model's loss is the GPU's; sync_up round-trips
 *   kl_reference_cuda      fork(): a frozen copy (same log-probs, unmoved by a step)
 *   recompute_same_update  activation recomputation (--recompute) changes nothing: the
 *                          same gradients (raw handles) and, through the trainer's
 *                          backend options, the same grad norms, losses and weights
 * Tolerances are bf16-sized as in gpu_tests.c: losses 2%, log-probs 0.05 nats
 * (absolute), grad norm 6%, and the weights after the steps within 0.3 of the
 * CPU update's L2 norm of the CPU's (see update_err).
 *
 * Built twice (model/cuda/cuda.mk): against test/gpu/hostsim (every machine:
 * the host code of model/cuda and rl/backend_cuda.c with the kernels as plain
 * loops), and against the real CUDA objects (build/test/train_gpu_tests, with
 * nvcc), where every test skips without a GPU.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../model/cuda/qwen3_cuda.h"
#include "../../model/kernels.h"
#include "../../rl/backend.h"
#include "../../rl/model_gen.h"
#include "../../rl/train.h"
#include "../harness.h"
#include "../train_fixtures.h"

static int n_dev = -1;
static char no_dev_why[256];

#define NEED_GPU()                                                                          \
    do {                                                                                    \
        if (n_dev < 0) n_dev = qwen3_cuda_device_count(no_dev_why, sizeof no_dev_why);      \
        if (n_dev <= 0) SKIP("no CUDA device (%s)", no_dev_why);                            \
    } while (0)

static struct train_backend *open_cuda(struct qwen3 *m) {
    char err[512];
    struct train_backend *b = train_backend_open("cuda", m, err, sizeof err);
    if (!b) fprintf(stderr, "# cuda backend: %s\n", err);
    return b;
}

static int rel_close(double a, double b, double rel) { return fabs(a - b) <= rel * fmax(fabs(a), fabs(b)) + 1e-6; }

/* ||a - b|| / ||a - before||: how far the GPU's update lands from the CPU's,
 * relative to the CPU's update. AdamW steps each weight by about lr * sign of
 * its gradient, so weights whose gradient is near zero can step apart in
 * bf16; an update that were missing or wrong would put this at 1 or more. */
static double update_err(const struct qwen3 *a, const struct qwen3 *b, const float *before) {
    double d = 0, u = 0;
    for (size_t i = 0; i < a->n_params; i++) {
        double x = (double)a->params[i] - b->params[i], y = (double)a->params[i] - before[i];
        d += x * x, u += y * y;
    }
    return u > 0 ? sqrt(d / u) : INFINITY;
}

static void sft_chats(const struct tokenizer *tok, struct chat *ex) {
    enum role roles[] = {ROLE_ASSISTANT, ROLE_TOOL, ROLE_ASSISTANT};
    char *texts[] = {"<think>I will query the database.</think>\n<execute>#!SQL\nSELECT symbol FROM gene_info;</execute>",
                     "<observation>BRCA1\nTP53</observation>", "<think>The answer is TP53.</think>\n<solution>TP53</solution>"};
    struct sft_traj t[3] = {{.n = 3, .roles = roles, .texts = texts},
                            {.n = 1, .roles = roles + 2, .texts = texts + 2},
                            {.n = 2, .roles = roles + 1, .texts = texts + 1}};
    const char *prompts[3] = {"Which gene?", "Name the gene.", "What did the query return?"};
    for (int i = 0; i < 3; i++) chat_init(&ex[i]), sft_render(&t[i], prompts[i], tok, &ex[i]);
}

static void sft_cpu_vs_cuda(void) {
    NEED_GPU();
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    struct qwen3 *mc = fixture_model(tokenizer_vocab_size(tok), 3), *mg = fixture_clone(mc);
    float *before = malloc(mc->n_params * sizeof(float));
    memcpy(before, mc->params, mc->n_params * sizeof(float));
    struct chat ex[3];
    sft_chats(tok, ex);
    int T = 2;
    for (int i = 0; i < 3; i++) T = ex[i].n > T ? ex[i].n : T;
    struct train_backend *bc = train_backend_cpu(mc), *bg = open_cuda(mg);
    CHECK(bg, "cuda backend");
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = 3e-3f, ac.weight_decay = 0.01f, ac.warmup_steps = 1, ac.total_steps = 4;
    CHECK(bc->ops->opt_init(bc, &ac) == 0 && bg->ops->opt_init(bg, &ac) == 0, "opt_init");
    struct losses lc = {0}, lg = {0};
    struct sft_opts so = {.epochs = 2, .batch = 2, .max_len = T, .seed = 5, .on_step = rec_loss, .arg = &lc};
    char err[512];
    CHECK(!isnan(sft_train(bc, ex, 3, &so, err, sizeof err)), "cpu: %s", err);
    so.arg = &lg;
    CHECK(!isnan(sft_train(bg, ex, 3, &so, err, sizeof err)), "cuda: %s", err);
    CHECK(lc.n == 4 && lg.n == 4, "%d / %d steps", lc.n, lg.n);
    for (int i = 0; i < 4; i++)
        CHECK(rel_close(lc.v[i], lg.v[i], 0.02), "step %d loss: cpu %.5f cuda %.5f", i + 1, lc.v[i], lg.v[i]);
    CHECK(bg->opt.step == 4, "cuda opt.step %ld", bg->opt.step);
    CHECK(bg->ops->sync_down(bg) == 0, "sync_down: %s", bg->err);
    double ue = update_err(mc, mg, before);
    CHECK(ue < 0.3, "weights: the GPU's 4 updates are %.3f of the CPU's away from them", ue);
    double dm = 0, mmax = 0;
    for (size_t i = 0; i < mc->n_params; i++)
        dm = fmax(dm, fabs((double)bc->opt.m[i] - bg->opt.m[i])), mmax = fmax(mmax, fabs((double)bc->opt.m[i]));
    CHECK(mmax > 0 && dm <= 0.06 * mmax, "AdamW m: differs by %g of max %g", dm, mmax);
    printf("# sft: losses cpu %.4f..%.4f cuda %.4f..%.4f, update error %.4f, AdamW m error %.4f\n", lc.v[0], lc.v[3],
           lg.v[0], lg.v[3], ue, dm / mmax);
    train_backend_free(bc), train_backend_free(bg);
    for (int i = 0; i < 3; i++) chat_free(&ex[i]);
    qwen3_free(mc), qwen3_free(mg), free(before);
    tokenizer_free(tok);
}

/* G sampled continuations of one prompt from the CPU model (temperature 1),
 * rewards by a toy rule (even last token: 1), as rollout episodes. */
static void sample_group(struct qwen3 *m, const struct tokenizer *tok, struct rl_episode *eps, int G, uint64_t seed) {
    struct model_gen g;
    char err[256];
    model_gen_init(&g, m, tok, G, 256, err, sizeof err);
    g.temperature = 1.0f, g.seed = seed, g.eos_id = -1;
    struct rl_generator gen;
    model_gen_generator(&g, &gen);
    static const int prompt[6] = {5, 17, 33, 2, 9, 40};
    static const char *const nostop[] = {NULL};
    int out[8][12];
    float lp[8][12];
    struct rl_gen_request q[8];
    for (int i = 0; i < G; i++) {
        memset(&q[i], 0, sizeof q[i]);
        q[i].episode = i, q[i].tokens = prompt, q[i].n_tokens = 6, q[i].turn_start = 6, q[i].max_new_tokens = 12;
        q[i].out_tokens = out[i], q[i].out_logprobs = lp[i], q[i].stop = nostop;
    }
    gen.generate(gen.ctx, q, G);
    for (int i = 0; i < G; i++) {
        struct rl_episode *e = &eps[i];
        fixture_episode(e, prompt, 6, out[i], lp[i], q[i].n_out);
        e->score.reward = (out[i][q[i].n_out - 1] % 2 == 0) + 0.1 * i; /* distinct rewards */
        e->score.correct = e->score.reward >= 1, e->score.format = 1;
        e->end = RL_END_SOLUTION;
    }
    model_gen_free(&g);
}

static void free_eps(struct rl_episode *eps, int n) {
    for (int i = 0; i < n; i++) free(eps[i].tokens), free(eps[i].mask), free(eps[i].logprobs);
}

static void grpo_cpu_vs_cuda(void) {
    NEED_GPU();
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    struct qwen3 *mc = fixture_model(tokenizer_vocab_size(tok), 11), *mg = fixture_clone(mc);
    float *before = malloc(mc->n_params * sizeof(float));
    memcpy(before, mc->params, mc->n_params * sizeof(float));
    struct rl_episode eps[8];
    sample_group(mc, tok, eps, 4, 7);
    sample_group(mc, tok, eps + 4, 4, 8);
    struct train_backend *bc = train_backend_cpu(mc), *bg = open_cuda(mg);
    CHECK(bg, "cuda backend");
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = 1e-3f, ac.weight_decay = 0;
    CHECK(bc->ops->opt_init(bc, &ac) == 0 && bg->ops->opt_init(bg, &ac) == 0, "opt_init");
    struct grpo_cfg gc;
    grpo_cfg_default(&gc);
    gc.kl_coef = 0, gc.entropy_coef = 0.2;
    struct grpo_step_out oc, og;
    char err[512];
    CHECK(grpo_update(bc, NULL, &gc, eps, 8, 4, &oc, err, sizeof err) == 0, "cpu: %s", err);
    CHECK(grpo_update(bg, NULL, &gc, eps, 8, 4, &og, err, sizeof err) == 0, "cuda: %s", err);
    CHECK(!oc.nonfinite && !og.nonfinite && bg->opt.step == 1, "no step on the GPU");
    CHECK(oc.st.tokens == og.st.tokens && oc.st.tokens == 8 * 12, "tokens %ld / %ld", oc.st.tokens, og.st.tokens);
    /* on-policy (CPU-sampled log-probs): the CUDA forward's ratio is 1 up to bf16 */
    CHECK(fabs(og.st.ratio_mean - 1) < 0.02, "cuda ratio %g", og.st.ratio_mean);
    CHECK(fabs(oc.st.loss - og.st.loss) < 0.02 * fmax(1, fabs(oc.st.loss)), "loss cpu %g cuda %g", oc.st.loss, og.st.loss);
    CHECK(rel_close(oc.entropy, og.entropy, 0.02), "entropy cpu %g cuda %g", oc.entropy, og.entropy);
    CHECK(rel_close(oc.grad_norm, og.grad_norm, 0.06), "grad norm cpu %g cuda %g", oc.grad_norm, og.grad_norm);
    CHECK(bg->ops->sync_down(bg) == 0, "sync_down: %s", bg->err);
    double ue = update_err(mc, mg, before);
    CHECK(ue < 0.3, "weights: the GPU's update is %.3f of the CPU's away from it", ue);
    printf("# grpo: loss cpu %.5f cuda %.5f, entropy %.4f / %.4f, grad norm %.4f / %.4f, update error %.4f\n",
           oc.st.loss, og.st.loss, oc.entropy, og.entropy, oc.grad_norm, og.grad_norm, ue);
    free_eps(eps, 8);
    train_backend_free(bc), train_backend_free(bg);
    qwen3_free(mc), qwen3_free(mg), free(before);
    tokenizer_free(tok);
}

static void gen_cuda_logprobs(void) {
    NEED_GPU();
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    struct qwen3 *mc = fixture_model(tokenizer_vocab_size(tok), 5), *mg = fixture_clone(mc);
    struct train_backend *bg = open_cuda(mg);
    CHECK(bg, "cuda backend");
    struct gen_model gm;
    bg->ops->gen_model(bg, &gm);
    struct model_gen g;
    char err[256];
    CHECK(model_gen_init_with(&g, &gm, tok, 3, 256, err, sizeof err) == 0, "%s", err);
    g.temperature = 1.0f, g.seed = 3, g.eos_id = -1;
    struct rl_generator gen;
    model_gen_generator(&g, &gen);
    static const char *const nostop[] = {NULL};
    int ctx[2][5] = {{1, 2, 3, 4, 5}, {9, 8, 7}}, out[2][20];
    float lp[2][20];
    struct rl_gen_request q[2];
    for (int r = 0; r < 2; r++) {
        memset(&q[r], 0, sizeof q[r]);
        q[r].episode = r, q[r].tokens = ctx[r], q[r].n_tokens = r ? 3 : 5, q[r].turn_start = q[r].n_tokens;
        q[r].max_new_tokens = r ? 12 : 20, q[r].out_tokens = out[r], q[r].out_logprobs = lp[r], q[r].stop = nostop;
    }
    CHECK(gen.generate(gen.ctx, q, 2) == 0, "generate");
    CHECK(q[0].n_out == 20 && q[1].n_out == 12, "n_out %d %d", q[0].n_out, q[1].n_out);
    double worst = 0, worst_g = 0;
    for (int r = 0; r < 2; r++) { /* oracle: the CPU training forward on the same tokens */
        int n0 = r ? 3 : 5, T = n0 + q[r].n_out;
        int32_t ids[40], tg[40];
        float ref[40];
        for (int t = 0; t < T; t++) ids[t] = t < n0 ? ctx[r][t] : out[r][t - n0];
        for (int t = 0; t < T; t++) tg[t] = t + 1 < T && t + 1 >= n0 ? ids[t + 1] : -1;
        CHECK(qwen3_logprobs(mc, ids, tg, 1, T, ref) == 0, "cpu logprobs");
        for (int k = 0; k < q[r].n_out; k++) worst = fmax(worst, fabs(ref[n0 - 1 + k] - lp[r][k]));
        /* and the GPU's own training forward, which GRPO's ratio sets against these */
        float gref[40];
        CHECK(!isnan(bg->ops->forward(bg, ids, tg, 1, T)) && bg->ops->last_logprobs(bg, gref) == 0, "gpu forward");
        for (int k = 0; k < q[r].n_out; k++) worst_g = fmax(worst_g, fabs(gref[n0 - 1 + k] - lp[r][k]));
    }
    CHECK(worst < 0.05, "sampling log-probs differ from the CPU forward's by %g nats", worst);
    CHECK(worst_g < 0.05, "sampling log-probs differ from the GPU training forward's by %g nats", worst_g);
    /* a second turn reuses the slot's prefix and draws what a fresh slot draws */
    int ctx2[30], o3[8], o4[8];
    float l3[8], l4[8];
    memcpy(ctx2, ctx[0], 5 * sizeof(int)), memcpy(ctx2 + 5, out[0], 20 * sizeof(int));
    ctx2[25] = 3, ctx2[26] = 4;
    struct rl_gen_request q1 = {.episode = 0, .tokens = ctx2, .n_tokens = 27, .turn_start = 27, .max_new_tokens = 8,
                                .out_tokens = o3, .out_logprobs = l3, .stop = nostop};
    long fed = g.tokens_prefilled;
    CHECK(gen.generate(gen.ctx, &q1, 1) == 0, "turn 2");
    CHECK(g.tokens_prefilled - fed < 27, "prefix not reused");
    model_gen_invalidate(&g);
    q1.out_tokens = o4, q1.out_logprobs = l4, q1.n_out = 0, q1.stop_reason = 0;
    CHECK(gen.generate(gen.ctx, &q1, 1) == 0, "turn 2 fresh");
    CHECK(!memcmp(o3, o4, sizeof o3), "prefix reuse changed the tokens");
    /* greedy: the first tokens are the CPU generator's (bf16 may flip a near-tie later) */
    struct model_gen gc;
    CHECK(model_gen_init(&gc, mc, tok, 1, 256, err, sizeof err) == 0, "%s", err);
    gc.temperature = 0, gc.eos_id = -1, g.temperature = 0;
    model_gen_invalidate(&g);
    struct rl_generator genc;
    model_gen_generator(&gc, &genc);
    int oc[4], og[4];
    float lc[4], lg[4];
    struct rl_gen_request qc = {.episode = 0, .tokens = ctx[0], .n_tokens = 5, .turn_start = 5, .max_new_tokens = 2,
                                .out_tokens = oc, .out_logprobs = lc, .stop = nostop};
    struct rl_gen_request qg = qc;
    qg.out_tokens = og, qg.out_logprobs = lg;
    CHECK(genc.generate(genc.ctx, &qc, 1) == 0 && gen.generate(gen.ctx, &qg, 1) == 0, "greedy");
    CHECK(oc[0] == og[0], "greedy first token cpu %d cuda %d", oc[0], og[0]);
    printf("# gen: worst sampling log-prob error %.4f nats vs the CPU forward, %.4f vs the GPU's\n", worst, worst_g);
    model_gen_free(&gc), model_gen_free(&g);
    train_backend_free(bg);
    qwen3_free(mc), qwen3_free(mg);
    tokenizer_free(tok);
}

static void nan_restore_cuda(void) {
    NEED_GPU();
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    struct qwen3 *m = fixture_model(tokenizer_vocab_size(tok), 13), *keep = fixture_clone(m);
    struct rl_episode eps[4];
    sample_group(m, tok, eps, 4, 2);
    struct train_backend *bg = open_cuda(m);
    CHECK(bg, "cuda backend");
    struct adamw_config ac;
    adamw_defaults(&ac);
    CHECK(bg->ops->opt_init(bg, &ac) == 0 && bg->ops->snapshot(bg) == 0, "snapshot: %s", bg->err);
    CHECK(bg->ops->params_finite(bg), "finite weights reported non-finite");
    CHECK(bg->ops->set_param(bg, m->n_params / 3, NAN) == 0, "set_param");
    CHECK(!bg->ops->params_finite(bg), "params_finite missed the NaN");
    struct grpo_cfg gc;
    grpo_cfg_default(&gc);
    struct grpo_step_out go;
    char err[512];
    CHECK(grpo_update(bg, NULL, &gc, eps, 4, 4, &go, err, sizeof err) == 0, "%s", err);
    CHECK(go.nonfinite && bg->opt.step == 0, "a step was taken on NaN (nonfinite %d, step %ld)", go.nonfinite, bg->opt.step);
    CHECK(bg->ops->restore(bg) == 0 && bg->ops->params_finite(bg), "restore: %s", bg->err);
    CHECK(bg->ops->sync_down(bg) == 0, "sync_down");
    CHECK(!memcmp(m->params, keep->params, m->n_params * sizeof(float)), "restore did not bring the snapshot back");
    free_eps(eps, 4);
    train_backend_free(bg);
    qwen3_free(m), qwen3_free(keep);
    tokenizer_free(tok);
}

static void checkpoint_cuda(void) {
    NEED_GPU();
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    struct qwen3 *m = fixture_model(tokenizer_vocab_size(tok), 17);
    struct chat ex[3];
    sft_chats(tok, ex);
    int T = 2;
    for (int i = 0; i < 3; i++) T = ex[i].n > T ? ex[i].n : T;
    struct train_backend *bg = open_cuda(m);
    CHECK(bg, "cuda backend");
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = 3e-3f;
    CHECK(bg->ops->opt_init(bg, &ac) == 0, "opt_init");
    struct sft_opts so = {.epochs = 1, .batch = 3, .max_len = T, .seed = 1};
    char err[512];
    CHECK(!isnan(sft_train(bg, ex, 3, &so, err, sizeof err)), "%s", err);
    /* the GPU's loss on the trained weights, then through an HF checkpoint on the CPU */
    int32_t *ids = calloc((size_t)3 * T, sizeof *ids), *tg = calloc((size_t)3 * T, sizeof *tg);
    for (int k = 0; k < 3; k++) sft_targets(&ex[k], T, ids + (size_t)k * T, tg + (size_t)k * T);
    float lg = bg->ops->forward(bg, ids, tg, 3, T);
    CHECK(bg->ops->sync_down(bg) == 0, "sync_down: %s", bg->err);
    char dir[] = "/tmp/viv-gpu-ckpt-XXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    CHECK(qwen3_save(m, dir, ST_F32, err, sizeof err) == 0, "save: %s", err);
    struct qwen3 *back = qwen3_load(dir, err, sizeof err);
    CHECK(back, "load: %s", err);
    float lc = qwen3_forward(back, ids, tg, NULL, 3, T);
    CHECK(rel_close(lc, lg, 0.02), "loss on the checkpoint: cpu %.5f, gpu %.5f", lc, lg);
    /* AdamW state: down, changed, up, down again */
    CHECK(bg->opt.step == 1, "step %ld", bg->opt.step);
    float m0 = bg->opt.m[7];
    CHECK(m0 != 0, "AdamW m not brought down");
    bg->opt.m[7] = 0.25f, bg->opt.step = 9;
    CHECK(bg->ops->sync_up(bg) == 0, "sync_up: %s", bg->err);
    bg->opt.m[7] = 0, bg->opt.step = 0;
    CHECK(bg->ops->sync_down(bg) == 0 && bg->opt.m[7] == 0.25f && bg->opt.step == 9, "AdamW state round trip");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
    free(ids), free(tg);
    for (int i = 0; i < 3; i++) chat_free(&ex[i]);
    train_backend_free(bg);
    qwen3_free(m), qwen3_free(back);
    tokenizer_free(tok);
}

static void kl_reference_cuda(void) {
    NEED_GPU();
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    struct qwen3 *m = fixture_model(tokenizer_vocab_size(tok), 19);
    struct rl_episode eps[4];
    sample_group(m, tok, eps, 4, 4);
    struct train_backend *bg = open_cuda(m);
    CHECK(bg, "cuda backend");
    struct train_backend *ref = bg->ops->fork(bg);
    CHECK(ref, "fork: %s", bg->err);
    int T = eps[0].n_tokens;
    int32_t ids[32], tg[32];
    float a[32], b[32];
    for (int t = 0; t < T; t++) ids[t] = eps[0].tokens[t], tg[t] = t + 1 < T ? eps[0].tokens[t + 1] : -1;
    CHECK(!isnan(bg->ops->forward(bg, ids, tg, 1, T)) && bg->ops->last_logprobs(bg, a) == 0, "forward");
    CHECK(!isnan(ref->ops->forward(ref, ids, tg, 1, T)) && ref->ops->last_logprobs(ref, b) == 0, "ref forward");
    CHECK(!memcmp(a, b, (size_t)T * sizeof(float)), "the reference's log-probs differ before any step");
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = 1e-2f;
    struct grpo_cfg gc;
    grpo_cfg_default(&gc);
    gc.kl_coef = 0.1;
    struct grpo_step_out go;
    char err[512];
    CHECK(bg->ops->opt_init(bg, &ac) == 0, "opt_init");
    CHECK(grpo_update(bg, ref, &gc, eps, 4, 4, &go, err, sizeof err) == 0 && bg->opt.step == 1, "%s", err);
    CHECK(!isnan(ref->ops->forward(ref, ids, tg, 1, T)) && ref->ops->last_logprobs(ref, a) == 0, "ref forward");
    CHECK(!memcmp(a, b, (size_t)T * sizeof(float)), "a policy step moved the reference");
    free_eps(eps, 4);
    train_backend_free(ref), train_backend_free(bg);
    qwen3_free(m);
    tokenizer_free(tok);
}

/* Recompute rebuilds each layer's activations from its saved input with
 * the same kernels, so the gradients are the same numbers (up to the
 * order of atomics on a GPU: 1e-5 relative). */
static void recompute_same_update(void) {
    NEED_GPU();
    struct tokenizer *tok = small_tokenizer();
    CHECK(tok, "tokenizer");
    struct qwen3 *m0 = fixture_model(tokenizer_vocab_size(tok), 17), *m1 = fixture_clone(m0);
    struct chat ex[3];
    sft_chats(tok, ex);
    int T = 2;
    for (int i = 0; i < 3; i++) T = ex[i].n > T ? ex[i].n : T;
    int32_t *ids = calloc((size_t)3 * T, sizeof *ids), *tg = calloc((size_t)3 * T, sizeof *tg);
    for (int i = 0; i < 3; i++) sft_targets(&ex[i], T, ids + (size_t)i * T, tg + (size_t)i * T);
    /* the raw handles: gradients of the mean cross-entropy over 3 rows */
    char err[512];
    struct qwen3_cuda_opts o0 = {.device = 0}, o1 = {.device = 0, .recompute = 1};
    struct qwen3_cuda *g0 = qwen3_cuda_create(m0, &o0, err, sizeof err), *g1 = g0 ? qwen3_cuda_create(m0, &o1, err, sizeof err) : NULL;
    CHECK(g0 && g1, "handles: %s", err);
    CHECK(!qwen3_cuda_recomputes(g0) && qwen3_cuda_recomputes(g1), "recompute flags %d %d", qwen3_cuda_recomputes(g0),
          qwen3_cuda_recomputes(g1));
    size_t P = m0->n_params;
    float *gr = malloc(2 * P * sizeof(float));
    struct qwen3_cuda *gg[2] = {g0, g1};
    for (int k = 0; k < 2; k++) {
        qwen3_cuda_zero_grad(gg[k]);
        CHECK(!isnan(qwen3_cuda_forward(gg[k], ids, tg, NULL, 3, T)) && qwen3_cuda_backward(gg[k]) == 0 &&
              qwen3_cuda_grads_to_host(gg[k], gr + k * P) == 0, "backward %d: %s", k, qwen3_cuda_error(gg[k]));
    }
    double worst = 0, gmax = 0;
    for (size_t i = 0; i < P; i++) worst = fmax(worst, fabs((double)gr[i] - gr[P + i])), gmax = fmax(gmax, fabs((double)gr[i]));
    CHECK(gmax > 0 && worst <= 1e-5 * gmax, "gradients with recompute differ by %g (max %g)", worst, gmax);
    qwen3_cuda_free(g0), qwen3_cuda_free(g1), free(gr);
    /* through the trainer's backend options (viv train --recompute) */
    struct train_backend_opts bo = {.recompute = 1};
    struct train_backend *b0 = open_cuda(m0), *b1 = train_backend_open_opts("cuda", m1, &bo, err, sizeof err);
    CHECK(b0 && b1, "backends: %s", err);
    CHECK(strstr(b1->desc, "recompute") && !b0->desc[0], "descriptions '%s' / '%s'", b0->desc, b1->desc);
    CHECK(train_backend_open_opts("cpu", m1, &bo, err, sizeof err) == NULL && strstr(err, "--device cuda"),
          "the CPU backend took --recompute");
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = 3e-3f;
    CHECK(b0->ops->opt_init(b0, &ac) == 0 && b1->ops->opt_init(b1, &ac) == 0, "opt_init");
    for (int s = 0; s < 2; s++) {
        struct train_backend *bb[2] = {b0, b1};
        float loss[2], norm[2];
        for (int k = 0; k < 2; k++) {
            bb[k]->ops->zero_grad(bb[k]);
            loss[k] = bb[k]->ops->forward(bb[k], ids + (size_t)s * T, tg + (size_t)s * T, 2, T);
            CHECK(!isnan(loss[k]) && bb[k]->ops->backward(bb[k]) == 0, "step %d: %s", s + 1, bb[k]->err);
            norm[k] = bb[k]->ops->opt_step(bb[k], NULL);
        }
        CHECK(rel_close(loss[0], loss[1], 1e-6), "step %d loss %.7f / %.7f with recompute", s + 1, loss[0], loss[1]);
        CHECK(norm[0] > 0 && rel_close(norm[0], norm[1], 1e-5), "step %d grad norm %.7f / %.7f with recompute", s + 1,
              norm[0], norm[1]);
    }
    CHECK(b0->ops->sync_down(b0) == 0 && b1->ops->sync_down(b1) == 0, "sync_down");
    double d = 0;
    for (size_t i = 0; i < P; i++) d = fmax(d, fabs((double)m0->params[i] - m1->params[i]));
    CHECK(d <= 1e-6, "weights after 2 steps differ by %g with recompute", d);
    train_backend_free(b0), train_backend_free(b1);
    for (int i = 0; i < 3; i++) chat_free(&ex[i]);
    free(ids), free(tg), qwen3_free(m0), qwen3_free(m1);
    tokenizer_free(tok);
}

int main(int argc, char **argv) {
    par_set_threads(1);
    static const struct test_case tests[] = {
        {"sft_cpu_vs_cuda", sft_cpu_vs_cuda},     {"grpo_cpu_vs_cuda", grpo_cpu_vs_cuda},
        {"gen_cuda_logprobs", gen_cuda_logprobs}, {"nan_restore_cuda", nan_restore_cuda},
        {"checkpoint_cuda", checkpoint_cuda},     {"kl_reference_cuda", kl_reference_cuda},
        {"recompute_same_update", recompute_same_update},
    };
    return run_test_cases(tests, sizeof tests / sizeof tests[0], argc, argv);
}
