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
 * ZeRO-1 (fp32 masters and AdamW moments sharded over the ranks, model/cuda/dist.cu):
 *   zero1_matches_dp           4 AdamW steps with clipping active and weight decay:
 *                              every step's grad norm and the weights and moments
 *                              after equal plain data parallel's (1e-6 / 1e-5) and one
 *                              rank's on the whole batch (first norm 1e-5, later 2e-3
 *                              as the split's rounding feeds AdamW; weights 1%); the moments
 *                              really are sharded (1/world each, 256-aligned)
 *   zero1_uneven               a model whose n_params is not a multiple of the world
 *                              size (odd), a shard boundary inside a tensor, padding,
 *                              a small staging buffer (many chunks) and other weights
 *                              off rank 0 before the broadcast: same steps as plain
 *                              data parallel, through the raw API
 *   zero1_memory_plan          a handle allocates what the plan says; masters, moments
 *                              and snapshot are one shard's
 *   zero1_snapshot_restore     snapshot, a step, a poisoned weight, restore: the
 *                              weights, gathered moments and step are the snapshot's
 *                              bit for bit
 *   zero1_save_resume          the gathered moments + weights (a checkpoint) loaded
 *                              into fresh ZeRO-1 and plain backends: the next step
 *                              equals the uninterrupted run's
 * The one-rank oracle is the same backend with its world set to 1 (its
 * collectives are then no-ops), so the only difference is the split:
 * tolerances are float-rounding sized (1e-4 relative on losses and norms,
 * 1% of the update's norm on the weights). ZeRO-1 against plain data
 * parallel differs only in the order of the norm's sum: tighter still.
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
            fixture_episode(e, prompt, 4, out[i], lp[i], q[i].n_out);
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

/* ---- ZeRO-1 ------------------------------------------------------------------ */

static struct train_backend *open_z(struct qwen3 *m, int zero1) {
    char err[512];
    struct train_backend_opts o = {.zero1 = zero1};
    struct train_backend *b = train_backend_open_opts("cuda", m, &o, err, sizeof err);
    if (!b) fprintf(stderr, "# rank %d: cuda backend (zero1 %d): %s\n", rank, zero1, err);
    return b;
}

/* ZN rows of T tokens (seeded, the same on every rank) with next-token
 * targets, the first few positions of each row masked as a prompt; step s's
 * batch is 3 rows from s*2. Short rows keep the steps cheap over hostsim. */
enum { ZN = 5, ZB = 3, ZT = 48 };
struct zdata {
    int T;
    int32_t ids[ZN][ZT], tg[ZN][ZT];
};
static int zdata_init(const struct tokenizer *tok, struct zdata *d) {
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int V = tokenizer_vocab_size(tok);
    d->T = ZT;
    for (int i = 0; i < ZN; i++) {
        for (int t = 0; t < ZT; t++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            d->ids[i][t] = (int32_t)(x % (uint64_t)V);
        }
        for (int t = 0; t < ZT; t++) d->tg[i][t] = t + 1 < ZT && t >= 3 + i ? d->ids[i][t + 1] : -1;
    }
    return 0;
}

/* One update as rl/sft.c makes it: this rank's rows of the batch (k % world
 * == rank; all of them with a world of 1) weighted -world / (the batch's
 * targets), backward, reduce_grads, grads_finite (a collective under
 * ZeRO-1, as in rl/grpo_step.c), AdamW. Returns the grad norm, NAN on error. */
static float z_step(struct train_backend *b, const struct zdata *d, int s) {
    int W = b->world, T = d->T, bl = 0;
    int32_t ids[ZB * ZT], tg[ZB * ZT];
    float coef[ZB * ZT];
    double tot = 0;
    for (int k = 0; k < ZB; k++) {
        int r = (s * 2 + k) % ZN;
        for (int t = 0; t < T; t++) tot += d->tg[r][t] >= 0;
        if (k % W != b->rank) continue;
        memcpy(ids + bl * T, d->ids[r], T * sizeof *ids), memcpy(tg + bl * T, d->tg[r], T * sizeof *tg), bl++;
    }
    b->ops->zero_grad(b);
    if (bl > 0) {
        if (isnan(b->ops->forward(b, ids, tg, bl, T))) return NAN;
        for (int i = 0; i < bl * T; i++) coef[i] = tg[i] >= 0 ? (float)(-W / tot) : 0.0f;
        if (b->ops->backward_logprobs(b, coef)) return NAN;
    }
    if (b->ops->reduce_grads(b) || !b->ops->grads_finite(b)) return NAN;
    return b->ops->opt_step(b, NULL);
}

static double vec_err(const float *a, const float *b, size_t n) { /* ||a - b|| / ||a|| */
    double d = 0, u = 0;
    for (size_t i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), u += (double)a[i] * a[i];
    return u > 0 ? sqrt(d / u) : (d > 0 ? INFINITY : 0);
}

static void z_config(struct adamw_config *ac) {
    adamw_defaults(ac);
    ac->lr = 3e-3f, ac->weight_decay = 0.1f, ac->grad_clip = 0.5f, ac->warmup_steps = 1, ac->total_steps = 6;
}

static void zero1_matches_dp(struct tokenizer *tok) {
    const char *name = "zero1_matches_dp";
    struct qwen3 *m1 = fixture_model(tokenizer_vocab_size(tok), 21), *md = fixture_clone(m1), *mz = fixture_clone(m1);
    size_t P = m1->n_params;
    float *before = malloc(P * sizeof(float));
    memcpy(before, m1->params, P * sizeof(float));
    struct zdata d;
    struct train_backend *b1 = open_dp(m1, 1), *bd = open_z(md, 0), *bz = open_z(mz, 1);
    if (zdata_init(tok, &d) || !b1 || !bd || !bz) {
        report(name, 0, "no data or no backend");
        return;
    }
    struct adamw_config ac;
    z_config(&ac);
    int ok = b1->ops->opt_init(b1, &ac) == 0 && bd->ops->opt_init(bd, &ac) == 0 && bz->ops->opt_init(bz, &ac) == 0;
    char why[1024] = "";
    float n1[4], nd[4], nz[4];
    for (int s = 0; s < 4 && ok; s++) {
        n1[s] = z_step(b1, &d, s), nd[s] = z_step(bd, &d, s), nz[s] = z_step(bz, &d, s);
        if (isnan(n1[s]) || isnan(nd[s]) || isnan(nz[s]))
            ok = 0, snprintf(why, sizeof why, "step %d failed: %s / %s / %s", s + 1, b1->err, bd->err, bz->err);
        else if (fabsf(nz[s] - nd[s]) > 1e-6f * nd[s])
            ok = 0, snprintf(why, sizeof why, "step %d grad norm: ZeRO-1 %.9g, plain %.9g", s + 1, nz[s], nd[s]);
        else if (fabsf(nz[s] - n1[s]) > (s == 0 ? 1e-5f : 2e-3f) * n1[s]) /* later: after rounding-apart updates */
            ok = 0, snprintf(why, sizeof why, "step %d grad norm: ZeRO-1 %.9g, one rank %.9g", s + 1, nz[s], n1[s]);
    }
    char want[128];
    snprintf(want, sizeof want, "masters and AdamW moments of %zu of %zu parameters", ((P + world - 1) / world + 255) / 256 * 256, P);
    if (ok && !strstr(bz->desc, want)) ok = 0, snprintf(why, sizeof why, "not sharded as expected: '%s'", bz->desc);
    if (ok && bd->desc[0]) ok = 0, snprintf(why, sizeof why, "the plain backend says '%s'", bd->desc);
    if (ok && !(nz[0] > 2 * ac.grad_clip))
        ok = 0, snprintf(why, sizeof why, "clipping is not active: norm %g, clip %g", nz[0], ac.grad_clip);
    /* sync_down on every rank: ZeRO-1 gathers the moment shards */
    if (ok && (b1->ops->sync_down(b1) || bd->ops->sync_down(bd) || bz->ops->sync_down(bz)))
        ok = 0, snprintf(why, sizeof why, "sync_down: %s", bz->err);
    double ued = update_err(md, mz, before), ue1 = update_err(m1, mz, before);
    double emd = vec_err(bd->opt.m, bz->opt.m, P), evd = vec_err(bd->opt.v, bz->opt.v, P);
    double em1 = vec_err(b1->opt.m, bz->opt.m, P);
    if (ok && !(ued < 1e-5)) ok = 0, snprintf(why, sizeof why, "weights: %.3g of the update from plain DP's", ued);
    if (ok && !(ue1 < 0.01)) ok = 0, snprintf(why, sizeof why, "weights: %.3g of the update from one rank's", ue1);
    if (ok && !(emd < 1e-5 && evd < 1e-5)) ok = 0, snprintf(why, sizeof why, "moments: m %.3g v %.3g from plain DP's", emd, evd);
    if (ok && !(em1 < 0.01)) ok = 0, snprintf(why, sizeof why, "moments: m %.3g from one rank's", em1);
    if (ok && (bz->opt.step != 4 || bd->opt.step != 4)) ok = 0, snprintf(why, sizeof why, "step %ld", bz->opt.step);
    /* the KL reference forked on the device from the sharded backend (bf16
     * copy + norm replica) computes what plain data parallel's does */
    struct train_backend *fz = ok ? bz->ops->fork(bz) : NULL, *fd = ok ? bd->ops->fork(bd) : NULL;
    if (ok && (!fz || !fd)) ok = 0, snprintf(why, sizeof why, "fork: %s / %s", bz->err, bd->err);
    if (ok) {
        float lz = fz->ops->forward(fz, d.ids[rank % ZN], d.tg[rank % ZN], 1, ZT);
        float ld = fd->ops->forward(fd, d.ids[rank % ZN], d.tg[rank % ZN], 1, ZT);
        if (isnan(lz) || lz != ld) ok = 0, snprintf(why, sizeof why, "forked reference: loss %.9g (ZeRO-1) vs %.9g", lz, ld);
    }
    train_backend_free(fz), train_backend_free(fd);
    if (rank == 0)
        printf("# zero1: grad norms %.6f..%.6f (clip %.2f), weights %.2g (vs plain DP) %.2g (vs one rank) of the update, "
               "moments m %.2g v %.2g\n", nz[0], nz[3], ac.grad_clip, ued, ue1, emd, evd);
    report(name, ok, "%s", why);
    train_backend_free(b1), train_backend_free(bd), train_backend_free(bz);
    qwen3_free(m1), qwen3_free(md), qwen3_free(mz), free(before);
}

/* The raw API on a model with an odd parameter count: hidden 33 makes every
 * tensor but the 32-wide head norms odd-sized. Each rank trains on its own
 * rows (as train-bench does); the handles with and without ZeRO-1 must agree. */
static void zero1_uneven(struct tokenizer *tok) {
    const char *name = "zero1_uneven";
    struct qwen3_config c = {.vocab_size = tokenizer_vocab_size(tok), .hidden_size = 33, .intermediate_size = 70,
                             .num_layers = 2, .num_heads = 4, .num_kv_heads = 2, .head_dim = 32, .max_position = 4096,
                             .rms_norm_eps = 1e-6f, .rope_theta = 10000, .tie_word_embeddings = 0,
                             .bos_token_id = -1, .eos_token_id = -1};
    char err[512] = "", why[1024] = "";
    struct qwen3 *m = qwen3_create(&c, err, sizeof err);
    if (!m) {
        report(name, 0, "model: %s", err);
        return;
    }
    qwen3_init_random(m, 5, 0.1f);
    size_t P = m->n_params, lo = 0, n;
    /* the ZeRO-1 handle moves the block through a staging buffer of 1000
     * floats (500 of each shard a gather: many chunks, the last one partial),
     * and starts off rank 0 from other weights, which broadcast_weights must
     * replace with rank 0's */
    struct qwen3_cuda_opts o0 = {.device = -1}, o1 = {.device = -1, .zero1 = 1, .stage_floats = 1000};
    struct qwen3 *mz = fixture_clone(m);
    for (size_t i = 0; rank && i < P; i++) mz->params[i] += 0.5f;
    struct qwen3_cuda *gd = qwen3_cuda_create(m, &o0, err, sizeof err), *gz = gd ? qwen3_cuda_create(mz, &o1, err, sizeof err) : NULL;
    struct zdata d;
    if (!gd || !gz || zdata_init(tok, &d)) {
        report(name, 0, "handles: %s", err);
        return;
    }
    n = qwen3_cuda_zero1_shard(gz, &lo);
    int ok = P % 2 == 1 && P % (size_t)world != 0;
    if (!ok) snprintf(why, sizeof why, "n_params %zu is a multiple of %d", P, world);
    /* the layout: 256-aligned equal shards tiling the padded block, this rank's at rank * n */
    if (ok && !(n % 256 == 0 && lo == (size_t)rank * n && n * world >= P && n * world < P + 256 * (size_t)world))
        ok = 0, snprintf(why, sizeof why, "shard %zu at %zu of %zu parameters", n, lo, P);
    int inside = 0; /* some shard boundary cuts a tensor */
    for (int t = 0; t < m->n_tensors; t++)
        for (int r = 1; r < world; r++)
            inside |= m->tensors[t].offset < (size_t)r * n && (size_t)r * n < m->tensors[t].offset + m->tensors[t].numel;
    if (ok && !inside) ok = 0, snprintf(why, sizeof why, "no shard boundary inside a tensor");
    struct adamw_config ac;
    z_config(&ac);
    ok = ok && qwen3_cuda_broadcast_weights(gd, m) == 0 && qwen3_cuda_broadcast_weights(gz, mz) == 0 &&
         qwen3_cuda_adamw_init(gd, &ac) == 0 && qwen3_cuda_adamw_init(gz, &ac) == 0;
    float nd = 0, nz = 0;
    for (int s = 0; s < 3 && ok; s++) {
        int r = (rank + s * world) % ZN; /* this rank's row */
        struct qwen3_cuda *gg[2] = {gd, gz};
        float nn[2];
        for (int k = 0; k < 2 && ok; k++) {
            qwen3_cuda_zero_grad(gg[k]);
            ok = !isnan(qwen3_cuda_forward(gg[k], d.ids[r], d.tg[r], NULL, 1, d.T)) && qwen3_cuda_backward(gg[k]) == 0 &&
                 qwen3_cuda_allreduce_grads(gg[k]) == 0 && !isnan(nn[k] = qwen3_cuda_adamw_step(gg[k], NULL));
        }
        if (!ok) snprintf(why, sizeof why, "step %d: %s / %s", s + 1, qwen3_cuda_error(gd), qwen3_cuda_error(gz));
        nd = nn[0], nz = nn[1];
        if (ok && fabsf(nz - nd) > 1e-6f * nd) ok = 0, snprintf(why, sizeof why, "step %d grad norm %.9g vs %.9g", s + 1, nz, nd);
    }
    struct qwen3 *hd = fixture_clone(m), *hz = fixture_clone(m);
    float *mm = malloc(4 * P * sizeof(float));
    long sd = 0, sz = 0;
    if (ok && (qwen3_cuda_to_host(gd, hd) || qwen3_cuda_to_host(gz, hz) ||
               qwen3_cuda_adamw_get(gd, mm, mm + P, &sd) || qwen3_cuda_adamw_get(gz, mm + 2 * P, mm + 3 * P, &sz)))
        ok = 0, snprintf(why, sizeof why, "down: %s", qwen3_cuda_error(gz));
    double ue = update_err(hd, hz, m->params), em = vec_err(mm, mm + 2 * P, P), ev = vec_err(mm + P, mm + 3 * P, P);
    if (ok && !(ue < 1e-5 && em < 1e-5 && ev < 1e-5 && sd == 3 && sz == 3))
        ok = 0, snprintf(why, sizeof why, "weights %.3g, m %.3g, v %.3g apart; steps %ld / %ld", ue, em, ev, sd, sz);
    if (rank == 0) printf("# zero1 uneven: %zu parameters, shards of %zu, weights %.2g of the update apart\n", P, n, ue);
    report(name, ok, "%s", why);
    free(mm), qwen3_free(hd), qwen3_free(hz), qwen3_free(mz);
    qwen3_cuda_free(gd), qwen3_cuda_free(gz), qwen3_free(m);
}

/* What a ZeRO-1 handle allocates after a step and a snapshot is what
 * qwen3_cuda_plan_memory says, and its per-rank state is a shard: fp32
 * masters (4), moments (8) and snapshot (12 bytes a parameter) over z_n
 * parameters, plus the norm weights' fp32 replica; the bf16 copy and the
 * gradients stay whole. */
static void zero1_memory_plan(struct tokenizer *tok) {
    const char *name = "zero1_memory_plan";
    struct qwen3 *m = fixture_model(tokenizer_vocab_size(tok), 31);
    struct qwen3_cuda_opts o = {.device = -1, .zero1 = 1};
    char err[512] = "", why[512] = "";
    struct qwen3_cuda *g = qwen3_cuda_create(m, &o, err, sizeof err);
    struct zdata d;
    struct adamw_config ac;
    z_config(&ac);
    int ok = g && zdata_init(tok, &d) == 0 && qwen3_cuda_adamw_init(g, &ac) == 0;
    qwen3_cuda_zero_grad(g);
    ok = ok && !isnan(qwen3_cuda_forward(g, d.ids[rank % ZN], d.tg[rank % ZN], NULL, 1, ZT)) &&
         qwen3_cuda_backward(g) == 0 && qwen3_cuda_allreduce_grads(g) == 0 && !isnan(qwen3_cuda_adamw_step(g, NULL)) &&
         qwen3_cuda_snapshot(g) == 0;
    if (!ok) snprintf(why, sizeof why, "%s", g ? qwen3_cuda_error(g) : err);
    struct qwen3_cuda_mem pz, pd;
    ok = ok && qwen3_cuda_plan_memory(&m->cfg, 1, ZT, 0, world, 1, 1, &pz) == 0 &&
         qwen3_cuda_plan_memory(&m->cfg, 1, ZT, 0, world, 0, 1, &pd) == 0;
    size_t got = ok ? qwen3_cuda_device_bytes(g) : 0, want = pz.total - pz.workspace, zn = ok ? qwen3_cuda_zero1_shard(g, NULL) : 0;
    const struct qwen3_config *c = &m->cfg;
    size_t vecs = (size_t)c->num_layers * (2 * c->hidden_size + 2 * c->head_dim) + c->hidden_size;
    if (ok && got != want) ok = 0, snprintf(why, sizeof why, "allocated %zu bytes, the plan says %zu", got, want);
    if (ok && !(pz.weights_f32 == 4 * (zn + vecs) && pz.adam == 8 * zn && pz.snapshot == 12 * zn && zn * world < m->n_params + 256 * world))
        ok = 0, snprintf(why, sizeof why, "per-rank state: f32 %zu, adam %zu, snapshot %zu bytes for a shard of %zu", pz.weights_f32,
                         pz.adam, pz.snapshot, zn);
    if (ok && !(pz.weights_bf16 >= pd.weights_bf16 && pz.grads >= pd.grads))
        ok = 0, snprintf(why, sizeof why, "bf16 %zu / grads %zu: not whole", pz.weights_bf16, pz.grads);
    if (rank == 0 && ok)
        printf("# zero1 memory: %zu bytes a rank over %d ranks (plain data parallel: %zu), masters+moments+snapshot %zu of %zu\n",
               want, world, pd.total - pd.workspace, pz.weights_f32 + pz.adam + pz.snapshot, pd.weights_f32 + pd.adam + pd.snapshot);
    report(name, ok, "%s", why);
    qwen3_cuda_free(g), qwen3_free(m);
}

/* host copies of a backend's weights and (gathered) moments */
struct zstate {
    float *w, *m, *v;
    long step;
};
static int z_save(struct train_backend *b, struct zstate *st) {
    size_t P = b->m->n_params;
    if (b->ops->sync_down(b)) return -1;
    st->w = malloc(P * sizeof(float)), st->m = malloc(P * sizeof(float)), st->v = malloc(P * sizeof(float));
    memcpy(st->w, b->m->params, P * sizeof(float));
    memcpy(st->m, b->opt.m, P * sizeof(float)), memcpy(st->v, b->opt.v, P * sizeof(float));
    st->step = b->opt.step;
    return 0;
}
static void z_free(struct zstate *st) { free(st->w), free(st->m), free(st->v); }

static void zero1_snapshot_restore(struct tokenizer *tok) {
    const char *name = "zero1_snapshot_restore";
    struct qwen3 *mz = fixture_model(tokenizer_vocab_size(tok), 23);
    size_t P = mz->n_params;
    struct zdata d;
    struct train_backend *bz = open_z(mz, 1);
    struct adamw_config ac;
    z_config(&ac);
    char why[1024] = "";
    int ok = bz && zdata_init(tok, &d) == 0 && bz->ops->opt_init(bz, &ac) == 0;
    for (int s = 0; s < 2 && ok; s++) ok = !isnan(z_step(bz, &d, s));
    struct zstate a = {0}, b = {0}, c = {0};
    ok = ok && bz->ops->snapshot(bz) == 0 && z_save(bz, &a) == 0;
    ok = ok && !isnan(z_step(bz, &d, 2)) && z_save(bz, &b) == 0; /* moves weights and moments */
    if (ok && (!memcmp(a.w, b.w, P * sizeof(float)) || !memcmp(a.m, b.m, P * sizeof(float))))
        ok = 0, snprintf(why, sizeof why, "the step after the snapshot changed nothing");
    ok = ok && bz->ops->set_param(bz, 7, NAN) == 0 && !bz->ops->params_finite(bz); /* poisoned */
    ok = ok && bz->ops->restore(bz) == 0 && z_save(bz, &c) == 0;
    if (!ok && !why[0]) snprintf(why, sizeof why, "%s", bz ? bz->err : "no backend");
    if (ok && (memcmp(a.w, c.w, P * sizeof(float)) || memcmp(a.m, c.m, P * sizeof(float)) ||
               memcmp(a.v, c.v, P * sizeof(float)) || a.step != c.step || c.step != 2))
        ok = 0, snprintf(why, sizeof why, "restore: weights %.3g, m %.3g, v %.3g from the snapshot, step %ld", vec_err(a.w, c.w, P),
                         vec_err(a.m, c.m, P), vec_err(a.v, c.v, P), c.step);
    /* and the step from the restored state is the step taken after the snapshot */
    struct zstate e = {0};
    ok = ok && !isnan(z_step(bz, &d, 2)) && z_save(bz, &e) == 0;
    if (ok && (memcmp(b.w, e.w, P * sizeof(float)) || memcmp(b.m, e.m, P * sizeof(float))))
        ok = 0, snprintf(why, sizeof why, "the step after restore: weights %.3g from the first time", vec_err(b.w, e.w, P));
    report(name, ok, "%s", why);
    z_free(&a), z_free(&b), z_free(&c), z_free(&e);
    train_backend_free(bz), qwen3_free(mz);
}

/* A checkpoint as rl/train.c writes one (sync_down on every rank, the whole m
 * and v) and a resume (every rank loads them whole, sync_up keeps its shard). */
static void zero1_save_resume(struct tokenizer *tok) {
    const char *name = "zero1_save_resume";
    struct qwen3 *ma = fixture_model(tokenizer_vocab_size(tok), 29);
    size_t P = ma->n_params;
    struct zdata d;
    struct train_backend *ba = open_z(ma, 1);
    struct adamw_config ac;
    z_config(&ac);
    char why[1024] = "";
    int ok = ba && zdata_init(tok, &d) == 0 && ba->ops->opt_init(ba, &ac) == 0;
    for (int s = 0; s < 2 && ok; s++) ok = !isnan(z_step(ba, &d, s));
    struct zstate ck = {0}, next = {0}, rz = {0}, rd = {0};
    float na = NAN, nz = NAN, nd = NAN;
    ok = ok && z_save(ba, &ck) == 0 && !isnan(na = z_step(ba, &d, 2)) && z_save(ba, &next) == 0;
    struct qwen3 *mz = fixture_clone(ma), *md = fixture_clone(ma);
    memcpy(mz->params, ck.w, P * sizeof(float)), memcpy(md->params, ck.w, P * sizeof(float));
    struct train_backend *bz = open_z(mz, 1), *bd = open_z(md, 0), *bb[2] = {bz, bd};
    for (int k = 0; k < 2 && ok; k++) {
        struct train_backend *b = bb[k];
        ok = b && b->ops->opt_init(b, &ac) == 0;
        if (!ok) break;
        memcpy(b->opt.m, ck.m, P * sizeof(float)), memcpy(b->opt.v, ck.v, P * sizeof(float));
        b->opt.step = ck.step;
        ok = b->ops->sync_up(b) == 0 && !isnan(k ? (nd = z_step(b, &d, 2)) : (nz = z_step(b, &d, 2))) &&
             z_save(b, k ? &rd : &rz) == 0;
    }
    if (!ok) snprintf(why, sizeof why, "%s", ba && ba->err[0] ? ba->err : bz && bz->err[0] ? bz->err : "failed");
    if (ok && (ck.step != 2 || rz.step != 3 || rd.step != 3)) ok = 0, snprintf(why, sizeof why, "steps %ld %ld %ld", ck.step, rz.step, rd.step);
    if (ok && (memcmp(next.w, rz.w, P * sizeof(float)) || memcmp(next.m, rz.m, P * sizeof(float)) ||
               memcmp(next.v, rz.v, P * sizeof(float)) || na != nz))
        ok = 0, snprintf(why, sizeof why, "resumed ZeRO-1: weights %.3g, m %.3g from the uninterrupted run's, norm %.9g vs %.9g",
                         vec_err(next.w, rz.w, P), vec_err(next.m, rz.m, P), nz, na);
    if (ok && !(vec_err(next.w, rd.w, P) < 1e-6 && vec_err(next.m, rd.m, P) < 1e-5 && fabsf(nd - na) <= 1e-6f * na))
        ok = 0, snprintf(why, sizeof why, "resumed without ZeRO-1: weights %.3g, m %.3g apart, norm %.9g vs %.9g",
                         vec_err(next.w, rd.w, P), vec_err(next.m, rd.m, P), nd, na);
    report(name, ok, "%s", why);
    z_free(&ck), z_free(&next), z_free(&rz), z_free(&rd);
    train_backend_free(ba), train_backend_free(bz), train_backend_free(bd);
    qwen3_free(ma), qwen3_free(mz), qwen3_free(md);
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
    zero1_matches_dp(tok);
    zero1_uneven(tok);
    zero1_memory_plan(tok);
    zero1_snapshot_restore(tok);
    zero1_save_resume(tok);
    tokenizer_free(tok);
    train_dist_finalize(0);
    return failed;
}
