/*
 * train_dp_tests.c - data-parallel training (rl/sft.c, rl/grpo_step.c over
 * rl/backend_cuda.c and model/cuda/dist.cu) against one rank doing the
 * whole batch. Run under `mpirun -np 2` (or more):
 *   dp_sft_matches_one_rank    sft_train with the batch's sequences split over the
 *                              ranks: every step's loss and the final weights equal a
 *                              one-rank run on the whole batch (same device arithmetic)
 *   dp_grpo_matches_one_rank   grpo_update with the groups split over the ranks (one
 *                              rank may hold none): grad norm and updated weights equal
 *                              one rank's update on all groups
 *   dp_replicas_identical      after the steps every rank holds the same weights
 * The one-rank oracle is the same backend with its world set to 1 (its
 * collectives are then no-ops), so the only difference is the split:
 * tolerances are float-rounding sized (1e-4 relative on losses and norms,
 * 1% of the update's norm on the weights).
 *
 * Built against hostsim with MPI standing in for NCCL (every machine with
 * MPI: build/test/train_dp_hostsim_tests) and against the CUDA objects
 * (build/test/train_dp_tests, needs 2+ GPUs). Prints TAP-like lines from
 * rank 0 only; exits non-zero on any failure.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../model/cuda/qwen3_cuda.h"
#include "../../model/kernels.h"
#include "../../rl/backend.h"
#include "../../rl/model_gen.h"
#include "../../rl/train.h"
#include "../train_fixtures.h"

static int rank, world, failed;

/* every rank's verdict; rank 0 prints */
static void report(const char *name, int ok, const char *fmt, ...) {
    double bad = !ok;
    qwen3_dist_allreduce_sum(&bad, 1);
    char why[512] = "";
    if (!ok) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        fprintf(stderr, "# rank %d: %s: %s\n", rank, name, why);
    }
    if (bad > 0) failed = 1;
    if (rank == 0) {
        if (bad > 0) printf("not ok - %s: failed on %g rank(s)%s%s\n", name, bad, ok ? "" : ": ", why);
        else printf("ok - %s (%d ranks)\n", name, world);
        fflush(stdout);
    }
}

/* the data-parallel backend, and the same with its world set to 1 */
static struct train_backend *open_dp(struct qwen3 *m, int one_rank) {
    char err[512];
    struct train_backend *b = train_backend_open("cuda", m, err, sizeof err);
    if (!b) {
        fprintf(stderr, "# rank %d: cuda backend: %s\n", rank, err);
        return NULL;
    }
    if (one_rank) b->rank = 0, b->world = 1;
    return b;
}

static double update_err(const struct qwen3 *a, const struct qwen3 *b, const float *before) {
    double d = 0, u = 0;
    for (size_t i = 0; i < a->n_params; i++) {
        double x = (double)a->params[i] - b->params[i], y = (double)a->params[i] - before[i];
        d += x * x, u += y * y;
    }
    return u > 0 ? sqrt(d / u) : INFINITY;
}

static void chats(const struct tokenizer *tok, struct chat *ex, int n) {
    enum role roles[] = {ROLE_ASSISTANT, ROLE_TOOL, ROLE_ASSISTANT};
    char *texts[] = {"<think>I will query the database.</think>\n<execute>#!SQL\nSELECT symbol FROM gene_info;</execute>",
                     "<observation>BRCA1\nTP53</observation>", "<think>The answer is TP53.</think>\n<solution>TP53</solution>"};
    const char *prompts[] = {"Which gene?", "Name the gene.", "What did the query return?", "Which one?", "Answer."};
    for (int i = 0; i < n; i++) {
        struct sft_traj t = {.n = 3 - i % 3, .roles = roles + i % 3, .texts = texts + i % 3};
        chat_init(&ex[i]);
        sft_render(&t, prompts[i % 5], tok, &ex[i]);
    }
}

static struct qwen3 *g_trained_dp; /* for dp_replicas_identical */

static void dp_sft_matches_one_rank(struct tokenizer *tok) {
    const char *name = "dp_sft_matches_one_rank";
    struct qwen3 *m1 = fixture_model(tokenizer_vocab_size(tok), 3), *md = fixture_clone(m1);
    float *before = malloc(m1->n_params * sizeof(float));
    memcpy(before, m1->params, m1->n_params * sizeof(float));
    enum { N = 5 };
    struct chat ex[N];
    chats(tok, ex, N);
    int T = 2;
    for (int i = 0; i < N; i++) T = ex[i].n > T ? ex[i].n : T;
    struct train_backend *b1 = open_dp(m1, 1), *bd = open_dp(md, 0);
    if (!b1 || !bd) {
        report(name, 0, "no backend");
        return;
    }
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = 3e-3f, ac.warmup_steps = 1, ac.total_steps = 4;
    b1->ops->opt_init(b1, &ac), bd->ops->opt_init(bd, &ac);
    struct losses l1 = {0}, ld = {0};
    struct sft_opts so = {.epochs = 2, .batch = 3, .max_len = T, .seed = 9, .on_step = rec_loss, .arg = &l1};
    char err[512];
    float r1 = sft_train(b1, ex, N, &so, err, sizeof err);
    so.arg = &ld;
    float rd = sft_train(bd, ex, N, &so, err, sizeof err);
    int ok = !isnan(r1) && !isnan(rd) && l1.n == 4 && ld.n == 4;
    char why[256] = "";
    for (int i = 0; ok && i < 4; i++)
        if (fabsf(l1.v[i] - ld.v[i]) > 1e-4f * l1.v[i])
            ok = 0, snprintf(why, sizeof why, "step %d loss: one rank %.6f, %d ranks %.6f", i + 1, l1.v[i], world, ld.v[i]);
    b1->ops->sync_down(b1), bd->ops->sync_down(bd);
    double ue = update_err(m1, md, before);
    if (ok && !(ue < 0.01)) ok = 0, snprintf(why, sizeof why, "weights: %.4f of the update apart", ue);
    if (rank == 0) printf("# sft: losses %.5f..%.5f (one rank) %.5f..%.5f (%d ranks), update error %.2g\n", l1.v[0],
                          l1.v[3], ld.v[0], ld.v[3], world, ue);
    report(name, ok, "%s", why);
    for (int i = 0; i < N; i++) chat_free(&ex[i]);
    train_backend_free(b1), train_backend_free(bd);
    qwen3_free(m1), free(before);
    g_trained_dp = md;
}

static void sample_groups(struct qwen3 *m, const struct tokenizer *tok, struct rl_episode *eps, int ngroups, int G) {
    struct model_gen g;
    char err[256];
    model_gen_init(&g, m, tok, G, 256, err, sizeof err);
    g.temperature = 1.0f, g.eos_id = -1;
    struct rl_generator gen;
    model_gen_generator(&g, &gen);
    static const char *const nostop[] = {NULL};
    for (int k = 0; k < ngroups; k++) {
        int prompt[4] = {5 + k, 17, 33 + k, 2}, out[8][10];
        float lp[8][10];
        struct rl_gen_request q[8];
        g.seed = 100 + (uint64_t)k;
        model_gen_invalidate(&g);
        for (int i = 0; i < G; i++) {
            memset(&q[i], 0, sizeof q[i]);
            q[i].episode = i, q[i].tokens = prompt, q[i].n_tokens = 4, q[i].turn_start = 4, q[i].max_new_tokens = 10;
            q[i].out_tokens = out[i], q[i].out_logprobs = lp[i], q[i].stop = nostop;
        }
        gen.generate(gen.ctx, q, G);
        for (int i = 0; i < G; i++) {
            struct rl_episode *e = &eps[k * G + i];
            memset(e, 0, sizeof *e);
            e->n_tokens = 4 + q[i].n_out, e->prompt_tokens = 4;
            e->tokens = calloc((size_t)e->n_tokens, sizeof(int));
            e->mask = calloc((size_t)e->n_tokens, 1);
            e->logprobs = calloc((size_t)e->n_tokens, sizeof(float));
            memcpy(e->tokens, prompt, sizeof prompt);
            for (int t = 0; t < q[i].n_out; t++)
                e->tokens[4 + t] = out[i][t], e->mask[4 + t] = 1, e->logprobs[4 + t] = lp[i][t];
            e->score.reward = (out[i][q[i].n_out - 1] % 3 == 0) + 0.05 * i;
            e->score.format = 1;
        }
    }
    model_gen_free(&g);
}

static void dp_grpo_matches_one_rank(struct tokenizer *tok) {
    const char *name = "dp_grpo_matches_one_rank";
    enum { NG = 3, G = 4 }; /* 3 groups: with 2 ranks, 2 and 1; with 4, one rank has none */
    struct qwen3 *m1 = fixture_model(tokenizer_vocab_size(tok), 11), *md = fixture_clone(m1);
    float *before = malloc(m1->n_params * sizeof(float));
    memcpy(before, m1->params, m1->n_params * sizeof(float));
    struct rl_episode eps[NG * G], mine[NG * G];
    sample_groups(m1, tok, eps, NG, G); /* same on every rank: same weights, seeds */
    int nmine = 0;
    for (int k = rank; k < NG; k += world) memcpy(&mine[nmine * G], &eps[k * G], G * sizeof *eps), nmine++;
    struct train_backend *b1 = open_dp(m1, 1), *bd = open_dp(md, 0);
    if (!b1 || !bd) {
        report(name, 0, "no backend");
        return;
    }
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = 1e-3f, ac.weight_decay = 0;
    b1->ops->opt_init(b1, &ac), bd->ops->opt_init(bd, &ac);
    struct grpo_cfg gc;
    grpo_cfg_default(&gc);
    struct grpo_step_out o1, od;
    char err[512] = "";
    int r1 = grpo_update(b1, NULL, &gc, eps, NG * G, G, &o1, err, sizeof err);
    int rd = grpo_update(bd, NULL, &gc, mine, nmine * G, G, &od, err, sizeof err);
    int ok = r1 == 0 && rd == 0 && b1->opt.step == 1 && bd->opt.step == 1;
    char why[256] = "";
    if (!ok) snprintf(why, sizeof why, "update failed or no step: %s", err);
    if (ok && fabsf(o1.grad_norm - od.grad_norm) > 1e-4f * o1.grad_norm)
        ok = 0, snprintf(why, sizeof why, "grad norm: one rank %g, %d ranks %g", o1.grad_norm, world, od.grad_norm);
    b1->ops->sync_down(b1), bd->ops->sync_down(bd);
    double ue = update_err(m1, md, before);
    if (ok && !(ue < 0.01)) ok = 0, snprintf(why, sizeof why, "weights: %.4f of the update apart", ue);
    if (rank == 0) printf("# grpo: grad norm %.6f (one rank) %.6f (%d ranks), update error %.2g\n", o1.grad_norm,
                          od.grad_norm, world, ue);
    report(name, ok, "%s", why);
    for (int i = 0; i < NG * G; i++) free(eps[i].tokens), free(eps[i].mask), free(eps[i].logprobs);
    train_backend_free(b1), train_backend_free(bd);
    qwen3_free(m1), qwen3_free(md), free(before);
}

/* every rank's weights after the data-parallel SFT: rank 0's, bit for bit */
static void dp_replicas_identical(void) {
    struct qwen3 *m = g_trained_dp;
    if (!m) {
        report("dp_replicas_identical", 0, "no trained model");
        return;
    }
    size_t P = m->n_params;
    float *r0 = malloc(P * sizeof(float));
    memcpy(r0, m->params, P * sizeof(float));
    qwen3_dist_bcast(r0, P * sizeof(float));
    int ok = !memcmp(r0, m->params, P * sizeof(float));
    report("dp_replicas_identical", ok, "rank %d's weights differ from rank 0's", rank);
    free(r0);
    qwen3_free(m);
}

int main(int argc, char **argv) {
    par_set_threads(1);
    char err[512];
    if (train_dist_init(&argc, &argv, &rank, &world, err, sizeof err) != 0) {
        printf("not ok - dp: %s\n", err);
        return 1;
    }
    if (world < 2) {
        printf("skip - dp tests: one rank (run under mpirun -np 2)\n");
        train_dist_finalize(0);
        return 0;
    }
    struct tokenizer *tok = small_tokenizer();
    dp_sft_matches_one_rank(tok);
    dp_grpo_matches_one_rank(tok);
    dp_replicas_identical();
    tokenizer_free(tok);
    train_dist_finalize(0);
    return failed;
}
