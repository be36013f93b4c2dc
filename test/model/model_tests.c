/*
 * model_tests.c - the Qwen3 model layer against a torch oracle and against
 * itself (test/model/run.sh runs test/model/ref_qwen3.py first and passes
 * its output directory in MODEL_FIXTURES).
 *
 * Built with ASan + UBSan: the configs are tiny, so the sanitizers cost
 * little, and the hostile-file tests are exactly where they matter.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../model/adamw.h"
#include "../../model/kernels.h"
#include "../../model/qwen3.h"
#include "../../model/qwen3_ops.h"
#include "../../model/safetensors.h"
#include "../../model/sample.h"
#include "../../sandbox/base/util.h"
#include "../harness.h"

static const char *fixtures(void) {
    const char *d = getenv("MODEL_FIXTURES");
    return d && *d ? d : NULL;
}

static char tmpdir[256];
static const char *scratch(void) {
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/viv-model-test-XXXXXX");
        if (!mkdtemp(tmpdir)) abort();
    }
    return tmpdir;
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mb = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d; /* NaN propagates */
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / mb;
}

/* One fixture: model + expected tensors. */
struct fx {
    struct qwen3 *m;
    struct st_dir *exp;
    int B, T, N;
    int32_t *ids, *targets;
    float *mask;
    char dir[512];
};

static void fx_free(struct fx *f) {
    qwen3_free(f->m);
    st_close(f->exp);
    free(f->ids);
    free(f->targets);
    free(f->mask);
    memset(f, 0, sizeof *f);
}

static float *read_exp(struct fx *f, const char *name, size_t *n_out) {
    const struct st_tensor *t = st_find(f->exp, name);
    if (!t) return NULL;
    float *p = xmalloc(t->numel * sizeof *p);
    char err[256];
    if (st_read_f32(f->exp, name, t->ndim, t->shape, p, err, sizeof err)) {
        free(p);
        return NULL;
    }
    if (n_out) *n_out = t->numel;
    return p;
}

static int fx_load(struct fx *f, const char *name, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    if (!fixtures()) return snprintf(err, errlen, "MODEL_FIXTURES is not set"), -1;
    snprintf(f->dir, sizeof f->dir, "%s/%s", fixtures(), name);
    f->m = qwen3_load(f->dir, err, errlen);
    if (!f->m) return -1;
    char *p = xasprintf("%s/expected.safetensors", f->dir);
    f->exp = st_open_file(p, err, errlen);
    free(p);
    if (!f->exp) return -1;
    const struct st_tensor *t = st_find(f->exp, "ids");
    if (!t || t->ndim != 2) return snprintf(err, errlen, "no ids in expected"), -1;
    f->B = (int)t->shape[0];
    f->T = (int)t->shape[1];
    f->N = f->B * f->T;
    float *ids = read_exp(f, "ids", NULL), *tg = read_exp(f, "targets", NULL);
    f->mask = read_exp(f, "mask", NULL);
    f->ids = xmalloc((size_t)f->N * sizeof *f->ids);
    f->targets = xmalloc((size_t)f->N * sizeof *f->targets);
    for (int i = 0; i < f->N; i++) f->ids[i] = (int32_t)ids[i], f->targets[i] = (int32_t)tg[i];
    free(ids);
    free(tg);
    return 0;
}

/* ---- kernels ----------------------------------------------------------------- */

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f - 0.5f;
}

static void check_kernels(void) {
    int sizes[][3] = {{1, 1, 1}, {5, 7, 9}, {13, 17, 33}, {64, 48, 100}, {7, 200, 300}, {100, 31, 257}, {1, 70, 513}};
    uint64_t s = 1;
    for (unsigned c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        int M = sizes[c][0], N = sizes[c][1], K = sizes[c][2];
        float *A = xmalloc(4 * (size_t)M * K), *B = xmalloc(4 * (size_t)N * K), *C = xmalloc(4 * (size_t)M * N);
        float *R = xmalloc(4 * (size_t)M * N);
        for (int i = 0; i < M * K; i++) A[i] = frand(&s);
        for (int i = 0; i < N * K; i++) B[i] = frand(&s);
        for (int which = 0; which < 3; which++) {
            for (int i = 0; i < M * N; i++) C[i] = R[i] = frand(&s);
            if (which == 0) mm_nt(C, A, B, M, N, K, 1);
            else if (which == 1) mm_nn(C, A, B, M, N, K);
            else mm_tn(C, A, B, M, N, K);
            double md = 0;
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double t = R[m * N + n];
                    for (int k = 0; k < K; k++)
                        t += which == 0 ? (double)A[m * K + k] * B[n * K + k]
                           : which == 1 ? (double)A[m * K + k] * B[k * N + n]
                                        : (double)A[k * M + m] * B[k * N + n];
                    md = fmax(md, fabs(t - C[m * N + n]));
                }
            if (md > 1e-4) {
                snprintf(t_msg, sizeof t_msg, "%s kernel %d, %dx%dx%d: max error %g", mm_isa(), which, M, N, K, md);
                t_status = 1;
            }
        }
        free(A), free(B), free(C), free(R);
        if (t_status) return;
    }
}

static void test_kernels_avx2(void) {
    mm_force_portable(0);
    if (strcmp(mm_isa(), "avx2+fma") != 0) SKIP("this CPU has no AVX2+FMA");
    check_kernels();
}

static void test_kernels_portable(void) {
    mm_force_portable(1);
    check_kernels();
    mm_force_portable(0);
}

/* The pool runs every region on every thread, whether its workers were
 * still spinning when the region came (back-to-back regions) or had gone
 * to sleep (a pause longer than the spin between regions), and the caller
 * returns only after all threads finished. A lost wake-up hangs here (the
 * suite's deadline), a returned-too-early caller shows as a short count. */
struct pool_count {
    _Atomic long done[64];
};
static void pool_count_worker(void *p, int tid, int nth) {
    struct pool_count *c = p;
    (void)nth;
    atomic_fetch_add(&c->done[tid], 1);
}
static void test_thread_pool_runs_every_region(void) {
    struct pool_count c;
    memset(&c, 0, sizeof c);
    int nth = par_threads() < 64 ? par_threads() : 64;
    long regions = 3000, short_count = 0;
    for (long r = 0; r < regions; r++) {
        if (r % 3 == 0) usleep(r % 2 ? 50 : 2000); /* past the spin: the workers sleep */
        par_run(pool_count_worker, &c);
        for (int t = 0; t < nth; t++) short_count += atomic_load(&c.done[t]) != r + 1;
    }
    CHECK(short_count == 0, "%ld times a thread had not run a region when par_run returned (%d threads)",
          short_count, nth);
}

/* ---- config --------------------------------------------------------------------- */

static void test_config_released(void) {
    /* the shape fields of Qwen3-0.6B and Qwen3-32B's config.json */
    const char *small = "{\"architectures\":[\"Qwen3ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
                        "\"bos_token_id\":151643,\"eos_token_id\":151645,\"head_dim\":128,\"hidden_act\":\"silu\","
                        "\"hidden_size\":1024,\"initializer_range\":0.02,\"intermediate_size\":3072,"
                        "\"max_position_embeddings\":40960,\"max_window_layers\":28,\"model_type\":\"qwen3\","
                        "\"num_attention_heads\":16,\"num_hidden_layers\":28,\"num_key_value_heads\":8,"
                        "\"rms_norm_eps\":1e-06,\"rope_scaling\":null,\"rope_theta\":1000000,"
                        "\"sliding_window\":null,\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\","
                        "\"transformers_version\":\"4.51.0\",\"use_cache\":true,\"use_sliding_window\":false,"
                        "\"vocab_size\":151936}";
    const char *big = "{\"model_type\":\"qwen3\",\"head_dim\":128,\"hidden_size\":5120,\"intermediate_size\":25600,"
                      "\"num_attention_heads\":64,\"num_hidden_layers\":64,\"num_key_value_heads\":8,"
                      "\"rms_norm_eps\":1e-06,\"rope_theta\":1000000,\"tie_word_embeddings\":false,"
                      "\"vocab_size\":151936,\"max_position_embeddings\":40960}";
    struct qwen3_config c;
    char err[256];
    CHECK(qwen3_config_parse(small, &c, err, sizeof err) == 0, "0.6B: %s", err);
    CHECK(c.hidden_size == 1024 && c.num_layers == 28 && c.num_kv_heads == 8 && c.head_dim == 128 &&
              c.tie_word_embeddings && c.rope_theta == 1e6 && fabsf(c.rms_norm_eps - 1e-6f) < 1e-12f &&
              c.eos_token_id == 151645,
          "0.6B fields misread");
    CHECK(qwen3_config_parse(big, &c, err, sizeof err) == 0, "32B: %s", err);
    CHECK(c.hidden_size == 5120 && c.num_heads == 64 && c.head_dim == 128 && !c.tie_word_embeddings, "32B misread");
    /* the writer's output parses back to the same config */
    char *js = qwen3_config_to_json(&c, "bfloat16");
    struct qwen3_config c2;
    int rc = qwen3_config_parse(js, &c2, err, sizeof err);
    free(js);
    CHECK(rc == 0 && memcmp(&c, &c2, sizeof c) == 0, "config -> json -> config changed it (%s)", err);
}

static void test_config_errors(void) {
    const char *base = "\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                       "\"vocab_size\":10";
    struct {
        const char *extra, *want;
    } cases[] = {
        {"\"model_type\":\"llama\"", "model_type"},
        {"\"attention_bias\":true", "attention_bias"},
        {"\"use_sliding_window\":true", "sliding"},
        {"\"num_key_value_heads\":3", "multiple"},
        {"\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}", "rope_type"},
        {"\"hidden_act\":\"gelu\"", "silu"},
        {"\"head_dim\":3", "even"},
        {"\"num_hidden_layers\":-1", "num_hidden_layers"},
        {"\"vocab_size\":1.5", "integer"},
        {"\"rms_norm_eps\":\"x\"", "rms_norm_eps"},
    };
    char err[256], json[512];
    struct qwen3_config c;
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(json, sizeof json, "{%s,%s}", cases[i].extra, base);
        err[0] = 0;
        CHECK(qwen3_config_parse(json, &c, err, sizeof err) == -1, "accepted %s", cases[i].extra);
        CHECK(strstr(err, cases[i].want), "%s: error '%s' does not mention %s", cases[i].extra, err, cases[i].want);
    }
    CHECK(qwen3_config_parse("{\"hidden_size\":8}", &c, err, sizeof err) == -1 && strstr(err, "missing"),
          "missing fields: %s", err);
    CHECK(qwen3_config_parse("[1,2", &c, err, sizeof err) == -1, "bad JSON accepted");
    snprintf(json, sizeof json, "{%s,\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":123.0}}", base);
    CHECK(qwen3_config_parse(json, &c, err, sizeof err) == 0 && c.rope_theta == 123.0 && c.head_dim == 4,
          "rope_parameters/head_dim default: %s", err);
}

/* ---- oracle: forward, loss, backward ------------------------------------------------- */

static void oracle(const char *name) {
    struct fx f;
    char err[512];
    if (fx_load(&f, name, err, sizeof err)) {
        fx_free(&f);
        FAIL("%s", err);
    }
    struct qwen3 *m = f.m;
    float loss = qwen3_forward(m, f.ids, f.targets, f.mask, f.B, f.T);
    size_t n;
    float *want = read_exp(&f, "logits", &n);
    double e_logits = rel_err(qwen3_logits(m), want, n);
    free(want);
    want = read_exp(&f, "logprobs", &n);
    double e_lp = rel_err(m->logprobs, want, n);
    free(want);
    want = read_exp(&f, "adam_losses", &n);
    float want_loss = want[0];
    free(want);
    double e_loss = fabs(loss - want_loss) / fabs(want_loss);
    qwen3_zero_grad(m);
    int rc = qwen3_backward(m);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < m->n_tensors && rc == 0; i++) {
        char gname[128];
        snprintf(gname, sizeof gname, "grad.%s", m->tensors[i].name);
        float *g = read_exp(&f, gname, &n);
        if (!g || n != m->tensors[i].numel) {
            free(g);
            fx_free(&f);
            FAIL("expected gradient %s missing", gname);
        }
        double e = rel_err(m->grads + m->tensors[i].offset, g, n);
        free(g);
        if (!(e <= worst)) worst = e, worst_name = m->tensors[i].name;
    }
    char wn[96];
    snprintf(wn, sizeof wn, "%s", worst_name);
    fx_free(&f);
    CHECK(rc == 0, "backward failed");
    CHECK(e_logits < 1e-4, "logits differ from torch: relative error %g", e_logits);
    CHECK(e_lp < 1e-4, "log-probs differ from torch: relative error %g", e_lp);
    CHECK(e_loss < 1e-4, "loss %.7f vs torch %.7f", loss, want_loss);
    CHECK(worst < 1e-3, "gradient of %s differs from torch: relative error %g", wn, worst);
}

/* qwen3_backward_logprobs: gradient of sum_i coef[i] * logprob[i] against
 * torch's, for arbitrary (signed) coefficients, as a policy-gradient loss uses. */
static void oracle_logprob_grads(const char *name) {
    struct fx f;
    char err[512];
    if (fx_load(&f, name, err, sizeof err)) {
        fx_free(&f);
        FAIL("%s", err);
    }
    size_t n;
    float *coef = read_exp(&f, "coef", &n);
    if (!coef || (int)n != f.N) {
        free(coef);
        fx_free(&f);
        FAIL("no coef in the fixture");
    }
    /* targets[0] is -1 in the fixture: its coefficient must not contribute */
    qwen3_forward(f.m, f.ids, f.targets, NULL, f.B, f.T);
    qwen3_zero_grad(f.m);
    int rc = qwen3_backward_logprobs(f.m, coef);
    double worst = 0;
    char wn[96] = "";
    for (int i = 0; i < f.m->n_tensors && rc == 0; i++) {
        char gname[128];
        snprintf(gname, sizeof gname, "gradlp.%s", f.m->tensors[i].name);
        float *g = read_exp(&f, gname, &n);
        double e = g && n == f.m->tensors[i].numel ? rel_err(f.m->grads + f.m->tensors[i].offset, g, n) : INFINITY;
        free(g);
        if (!(e <= worst)) worst = e, snprintf(wn, sizeof wn, "%s", f.m->tensors[i].name);
    }
    /* a second backward without a forward is refused (the logits are spent) */
    int again = qwen3_backward_logprobs(f.m, coef);
    free(coef);
    fx_free(&f);
    CHECK(rc == 0, "backward_logprobs failed");
    CHECK(worst < 1e-3, "gradient of %s differs from torch: relative error %g", wn, worst);
    CHECK(again == -1, "a second backward on spent logits was accepted");
}

/* qwen3_backward_logprobs_entropy: gradient of sum_i coef[i] * logprob[i] +
 * sum_i went[i] * H_i (H_i = the entropy of position i's softmax) against
 * torch autograd through log_softmax, float64. Every position takes its
 * entropy term, the one with target -1 too. */
static void oracle_entropy_grads(const char *name) {
    struct fx f;
    char err[512];
    if (fx_load(&f, name, err, sizeof err)) {
        fx_free(&f);
        FAIL("%s", err);
    }
    size_t n, nw;
    float *coef = read_exp(&f, "coef", &n), *went = read_exp(&f, "went", &nw);
    if (!coef || !went || (int)n != f.N || (int)nw != f.N) {
        free(coef), free(went);
        fx_free(&f);
        FAIL("no coef/went in the fixture");
    }
    qwen3_forward(f.m, f.ids, f.targets, NULL, f.B, f.T);
    qwen3_zero_grad(f.m);
    int rc = qwen3_backward_logprobs_entropy(f.m, coef, went);
    double worst = 0, worst_lp = 0; /* against the entropy oracle; against the one without */
    char wn[96] = "";
    for (int i = 0; i < f.m->n_tensors && rc == 0; i++) {
        char gname[128];
        snprintf(gname, sizeof gname, "gradent.%s", f.m->tensors[i].name);
        float *g = read_exp(&f, gname, &n);
        double e = g && n == f.m->tensors[i].numel ? rel_err(f.m->grads + f.m->tensors[i].offset, g, n) : INFINITY;
        free(g);
        if (!(e <= worst)) worst = e, snprintf(wn, sizeof wn, "%s", f.m->tensors[i].name);
        snprintf(gname, sizeof gname, "gradlp.%s", f.m->tensors[i].name);
        g = read_exp(&f, gname, &n);
        e = g && n == f.m->tensors[i].numel ? rel_err(f.m->grads + f.m->tensors[i].offset, g, n) : 0;
        free(g);
        if (e > worst_lp) worst_lp = e;
    }
    free(coef), free(went);
    fx_free(&f);
    CHECK(rc == 0, "backward_logprobs_entropy failed");
    CHECK(worst < 1e-3, "gradient of %s differs from torch: relative error %g", wn, worst);
    /* the entropy term is not negligible: without it the gradient is far off */
    CHECK(worst_lp > 1e-2, "the entropy term barely moved the gradient (%g)", worst_lp);
}

static void test_entropy_grads_gqa_tied(void) { oracle_entropy_grads("gqa_tied"); }
static void test_entropy_grads_hd16_untied(void) { oracle_entropy_grads("hd16_untied"); }

static void test_logprob_grads_gqa_tied(void) { oracle_logprob_grads("gqa_tied"); }
static void test_logprob_grads_hd16_untied(void) { oracle_logprob_grads("hd16_untied"); }

static void test_oracle_gqa_tied(void) { oracle("gqa_tied"); }
static void test_oracle_hd16_untied_bf16(void) { oracle("hd16_untied"); }
static void test_oracle_mha_wide(void) { oracle("mha_wide"); }
static void test_oracle_long_ctx(void) { oracle("long_ctx"); }

/* Ten AdamW steps with warmup, cosine decay, clipping and decay on matrices
 * only, against torch.optim.AdamW + clip_grad_norm_ on the same batch. */
static void adam_vs_torch(const char *name) {
    struct fx f;
    char err[512];
    if (fx_load(&f, name, err, sizeof err)) {
        fx_free(&f);
        FAIL("%s", err);
    }
    char *p = xasprintf("%s/expected.json", f.dir);
    char *text = read_file(p, 1 << 20, NULL, err, sizeof err);
    free(p);
    cJSON *root = cJSON_Parse(text ? text : "");
    free(text);
    cJSON *a = cJSON_GetObjectItem(root, "adam");
    struct adamw_config c = {
        .lr = (float)cJSON_GetObjectItem(a, "lr")->valuedouble,
        .beta1 = (float)cJSON_GetObjectItem(a, "beta1")->valuedouble,
        .beta2 = (float)cJSON_GetObjectItem(a, "beta2")->valuedouble,
        .eps = (float)cJSON_GetObjectItem(a, "eps")->valuedouble,
        .weight_decay = (float)cJSON_GetObjectItem(a, "weight_decay")->valuedouble,
        .grad_clip = (float)cJSON_GetObjectItem(a, "grad_clip")->valuedouble,
        .warmup_steps = cJSON_GetObjectItem(a, "warmup_steps")->valueint,
        .total_steps = cJSON_GetObjectItem(a, "total_steps")->valueint,
        .min_lr_ratio = (float)cJSON_GetObjectItem(a, "min_lr_ratio")->valuedouble,
    };
    int steps = cJSON_GetObjectItem(a, "steps")->valueint;
    cJSON_Delete(root);
    size_t n;
    float *want = read_exp(&f, "adam_losses", &n);
    struct adamw opt;
    adamw_init(&opt, &c, f.m->n_params);
    double worst = 0;
    int worst_step = 0;
    float got[32];
    for (int s = 0; s < steps && s < 32; s++) {
        got[s] = qwen3_forward(f.m, f.ids, f.targets, f.mask, f.B, f.T);
        qwen3_zero_grad(f.m);
        qwen3_backward(f.m);
        adamw_step(&opt, f.m, NULL);
        double e = fabs(got[s] - want[s]) / fabs(want[s]);
        if (!(e <= worst)) worst = e, worst_step = s;
    }
    float first = want[0], last = want[steps - 1], got_last = got[steps - 1], w_at = want[worst_step],
          g_at = got[worst_step];
    free(want);
    adamw_free(&opt);
    fx_free(&f);
    CHECK(last < first, "torch's loss did not fall (%g -> %g): the oracle is not testing training", first, last);
    CHECK(worst < 1e-3, "step %d: loss %.6f vs torch %.6f (final %.6f vs %.6f)", worst_step, g_at, w_at, got_last,
          last);
}

static void test_adamw_gqa_tied(void) { adam_vs_torch("gqa_tied"); }
static void test_adamw_hd16_untied(void) { adam_vs_torch("hd16_untied"); }

static void test_lr_schedule(void) {
    struct adamw_config c;
    adamw_defaults(&c);
    c.lr = 1.0f;
    c.warmup_steps = 4;
    c.total_steps = 14;
    c.min_lr_ratio = 0.1f;
    CHECK(fabsf(adamw_lr(&c, 0) - 0.25f) < 1e-6f && fabsf(adamw_lr(&c, 3) - 1.0f) < 1e-6f, "warmup");
    CHECK(fabsf(adamw_lr(&c, 4) - 1.0f) < 1e-6f, "peak at the end of warmup");
    CHECK(fabsf(adamw_lr(&c, 9) - 0.55f) < 1e-6f, "cosine midpoint %g", adamw_lr(&c, 9));
    CHECK(fabsf(adamw_lr(&c, 14) - 0.1f) < 1e-6f && fabsf(adamw_lr(&c, 100) - 0.1f) < 1e-6f, "floor");
}

/* ---- KV cache ------------------------------------------------------------------------ */

/* Logits from the cache (prefill a prefix, then one token at a time, two
 * slots decoded in one batch) equal the full-sequence forward's. */
static void test_kv_decode_matches_forward(void) {
    const char *names[] = {"gqa_tied", "hd16_untied"};
    for (int which = 0; which < 2; which++) {
        struct fx f;
        char err[512];
        if (fx_load(&f, names[which], err, sizeof err)) {
            fx_free(&f);
            FAIL("%s", err);
        }
        struct qwen3 *m = f.m;
        int T = f.T, V = m->cfg.vocab_size;
        /* reference: sequences 0 and 1 of the batch, full forward */
        qwen3_forward(m, f.ids, NULL, NULL, 2, T);
        float *ref = xmalloc((size_t)2 * T * V * sizeof *ref);
        memcpy(ref, qwen3_logits(m), (size_t)2 * T * V * sizeof *ref);
        struct qwen3_kv *kv = qwen3_kv_create(m, 3, T, err, sizeof err);
        float *out = xmalloc((size_t)T * V * sizeof *out);
        double worst = 0;
        /* slot 2 first gets junk, then is reset: reuse must not leak */
        int s2 = 2;
        qwen3_kv_forward(m, kv, f.ids, &s2, 1, NULL, out, err, sizeof err);
        qwen3_kv_reset(kv, 2);
        /* prefill: sequence 0 (3 tokens) into slot 0 and sequence 1 (2 tokens) into slot 2, one call */
        int32_t toks[5] = {f.ids[0], f.ids[1], f.ids[2], f.ids[T], f.ids[T + 1]};
        int slots[5] = {0, 0, 0, 2, 2};
        int rc = qwen3_kv_forward(m, kv, toks, slots, 5, NULL, out, err, sizeof err);
        for (int i = 0; i < 5 && rc == 0; i++) {
            int seq = slots[i] == 0 ? 0 : 1, pos = slots[i] == 0 ? i : i - 3;
            worst = fmax(worst, rel_err(out + (size_t)i * V, ref + ((size_t)seq * T + pos) * V, (size_t)V));
        }
        /* batched decode: both slots step together until the end */
        for (int pos = 3; pos < T && rc == 0; pos++) {
            int32_t tk[2] = {f.ids[pos], f.ids[T + pos - 1]};
            int sl[2] = {0, 2};
            rc = qwen3_kv_forward(m, kv, tk, sl, 2, NULL, out, err, sizeof err);
            worst = fmax(worst, rel_err(out, ref + (size_t)pos * V, (size_t)V));
            worst = fmax(worst, rel_err(out + V, ref + ((size_t)T + pos - 1) * V, (size_t)V));
        }
        /* a full slot is an error, not an overflow */
        int32_t one = 1;
        int s0 = 0, rc2 = qwen3_kv_forward(m, kv, &one, &s0, 1, NULL, out, err, sizeof err);
        qwen3_kv_free(kv);
        free(out);
        free(ref);
        fx_free(&f);
        CHECK(rc == 0, "%s: %s", names[which], err);
        CHECK(worst < 1e-5, "%s: cached logits differ from the full forward by %g", names[which], worst);
        CHECK(rc2 == -1 && strstr(err, "full"), "%s: writing past max_T was not refused", names[which]);
    }
}

/* The helpers as the AVX2+FMA attention compiles them (fused multiply-adds
 * in the lanes): checked against each other where the CPU has both. */
__attribute__((target("avx2,fma"))) static void rows8_avx2(float *out, const float *a, const float *b, size_t stride,
                                                          int n) {
    dot_f32_rows8(out, a, b, stride, n);
}
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int n) {
    return dot_f32(a, b, n);
}

/* The attention helpers give what the plain loops give, bit for bit:
 * the lane max (any length: the lanes and the tail), the weighted sum of
 * value rows for each block width (32, 8) and a scalar tail, every column
 * adding its terms in the same order, and eight keys' dot products at once
 * against dot_f32 one key at a time. */
static void test_attention_helpers_match_plain_loops(void) {
    float xs[37];
    for (int n = 1; n <= 37; n++) {
        float plain = -INFINITY;
        for (int i = 0; i < n; i++) xs[i] = (float)((i * 7 + n) % 11) - 5.5f + (i == n / 2 ? 9.0f : 0.0f);
        for (int i = 0; i < n; i++) plain = xs[i] > plain ? xs[i] : plain;
        CHECK(max_lanes(xs, n) == plain, "max of %d: %g, plain %g", n, max_lanes(xs, n), plain);
    }
    int widths[] = {32, 40, 37, 5, 128};
    for (int w = 0; w < 5; w++) {
        int hd = widths[w], n = 23;
        size_t stride = (size_t)hd + 3;
        float p[23], *v = xmalloc(stride * n * sizeof *v), o[128], want[128];
        for (int t = 0; t < n; t++) p[t] = 1.0f / (float)(t + 2);
        for (size_t i = 0; i < stride * n; i++) v[i] = (float)((i * 7919) % 101) / 50.0f - 1.0f;
        weighted_sum_rows(o, p, v, stride, n, hd);
        memset(want, 0, sizeof want);
        for (int t = 0; t < n; t++)
            for (int i = 0; i < hd; i++) want[i] += p[t] * v[(size_t)t * stride + i];
        for (int i = 0; i < hd; i++)
            CHECK(o[i] == want[i], "head_dim %d, column %d: %.9g, the plain loop %.9g", hd, i, o[i], want[i]);
        /* the adding form: onto o's own values, as dq += ds . k adds */
        add_weighted_rows(o, p, v, stride, n, hd);
        for (int t = 0; t < n; t++)
            for (int i = 0; i < hd; i++) want[i] += p[t] * v[(size_t)t * stride + i];
        free(v);
        for (int i = 0; i < hd; i++)
            CHECK(o[i] == want[i], "adding, head_dim %d, column %d: %.9g, the plain loop %.9g", hd, i, o[i], want[i]);
    }
    /* eight keys' dot products at once: the bits of eight dot_f32 calls, for
     * widths that are multiples of 8 (the transposed sum) and not (the
     * fallback), values of mixed sign and size, a -0 product included */
    int dws[] = {8, 32, 64, 128, 12, 37};
    for (int w = 0; w < 6; w++) {
        int hd = dws[w];
        size_t stride = (size_t)hd + 5;
        float *a = xmalloc((size_t)hd * sizeof *a), *b = xmalloc(stride * 8 * sizeof *b), got[8];
        uint64_t r = 11 + (uint64_t)w;
        for (int i = 0; i < hd; i++) a[i] = (frand(&r) - 0.5f) * (i % 5 == 0 ? 1e3f : 1.0f);
        for (size_t i = 0; i < stride * 8; i++) b[i] = (frand(&r) - 0.5f) * (i % 7 == 0 ? 1e-3f : 3.0f);
        a[0] = -0.0f;
        dot_f32_rows8(got, a, b, stride, hd);
        for (int k = 0; k < 8; k++) {
            float want = dot_f32(a, b + (size_t)k * stride, hd);
            CHECK(memcmp(&got[k], &want, sizeof want) == 0, "width %d, key %d: %.9g, dot_f32 %.9g", hd, k,
                  got[k], want);
        }
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            rows8_avx2(got, a, b, stride, hd);
            for (int k = 0; k < 8; k++) {
                float want = dot_avx2(a, b + (size_t)k * stride, hd);
                CHECK(memcmp(&got[k], &want, sizeof want) == 0, "AVX2, width %d, key %d: %.9g, dot_f32 %.9g", hd,
                      k, got[k], want);
            }
        }
        free(a), free(b);
    }
}

/* ---- save / load ------------------------------------------------------------------------ */

static int same_params(const struct qwen3 *a, const struct qwen3 *b) {
    return a->n_params == b->n_params && memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0;
}

static void test_save_load_bitexact(void) {
    struct fx f;
    char err[512];
    if (fx_load(&f, "gqa_tied", err, sizeof err)) {
        fx_free(&f);
        FAIL("%s", err);
    }
    char *dir = xasprintf("%s/saved_f32", scratch());
    int rc = qwen3_save(f.m, dir, ST_F32, err, sizeof err);
    struct qwen3 *m2 = rc ? NULL : qwen3_load(dir, err, sizeof err);
    int ok = m2 && same_params(f.m, m2) && memcmp(&f.m->cfg, &m2->cfg, sizeof m2->cfg) == 0;
    qwen3_free(m2);
    /* BF16: values already representable in bf16 come back bit-exact */
    for (size_t i = 0; i < f.m->n_params; i++) f.m->params[i] = st_bf16_to_f32(st_f32_to_bf16(f.m->params[i]));
    char *dir2 = xasprintf("%s/saved_bf16", scratch());
    int rc2 = qwen3_save(f.m, dir2, ST_BF16, err, sizeof err);
    struct qwen3 *m3 = rc2 ? NULL : qwen3_load(dir2, err, sizeof err);
    int ok2 = m3 && same_params(f.m, m3);
    char *gen = xasprintf("%s/generation_config.json", dir2);
    int has_gen = access(gen, R_OK) == 0;
    qwen3_free(m3);
    fx_free(&f);
    free(dir), free(dir2), free(gen);
    CHECK(rc == 0 && ok, "F32 save -> load is not bit-exact (%s)", err);
    CHECK(rc2 == 0 && ok2, "BF16 save -> load is not bit-exact (%s)", err);
    CHECK(has_gen, "no generation_config.json written");
}

static void test_bf16_rounding(void) {
    CHECK(st_f32_to_bf16(1.0f) == 0x3f80, "1.0");
    /* 1 + 2^-8 is halfway between two bf16 values: ties to even (down) */
    CHECK(st_f32_to_bf16(1.00390625f) == 0x3f80, "tie to even down");
    CHECK(st_f32_to_bf16(1.01171875f) == 0x3f82, "tie to even up");
    CHECK(st_f32_to_bf16(-2.0f) == 0xc000, "-2");
    CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))), "NaN stays NaN");
    CHECK(st_f16_to_f32(0x3c00) == 1.0f && st_f16_to_f32(0xc000) == -2.0f && st_f16_to_f32(0x0001) == 5.9604644775390625e-08f &&
              isinf(st_f16_to_f32(0x7c00)) && st_f16_to_f32(0x7bff) == 65504.0f,
          "f16 conversion");
}

/* A sharded checkpoint: two files + model.safetensors.index.json. */
static void test_sharded_load(void) {
    struct fx f;
    char err[512];
    if (fx_load(&f, "hd16_untied", err, sizeof err)) {
        fx_free(&f);
        FAIL("%s", err);
    }
    char *dir = xasprintf("%s/sharded", scratch());
    mkdir(dir, 0755);
    int n = f.m->n_tensors, half = n / 2;
    struct st_item *items = xcalloc((size_t)n, sizeof *items);
    cJSON *root = cJSON_CreateObject(), *wm = cJSON_AddObjectToObject(root, "weight_map");
    for (int i = 0; i < n; i++) {
        items[i].name = f.m->tensors[i].name;
        items[i].data = f.m->params + f.m->tensors[i].offset;
        items[i].ndim = f.m->tensors[i].ndim;
        items[i].shape[0] = f.m->tensors[i].shape[0];
        items[i].shape[1] = f.m->tensors[i].shape[1];
        cJSON_AddStringToObject(wm, items[i].name, i < half ? "model-00001-of-00002.safetensors"
                                                            : "model-00002-of-00002.safetensors");
    }
    char *p1 = xasprintf("%s/model-00001-of-00002.safetensors", dir), *p2 = xasprintf("%s/model-00002-of-00002.safetensors", dir);
    char *pi = xasprintf("%s/model.safetensors.index.json", dir), *pc = xasprintf("%s/config.json", dir);
    char *idx = cJSON_Print(root), *cfg = qwen3_config_to_json(&f.m->cfg, "float32");
    int rc = st_write(p1, items, half, ST_F32, err, sizeof err) || st_write(p2, items + half, n - half, ST_BF16, err, sizeof err) ||
             st_write_text_atomic(pi, idx, err, sizeof err) || st_write_text_atomic(pc, cfg, err, sizeof err);
    struct qwen3 *m2 = rc ? NULL : qwen3_load(dir, err, sizeof err);
    int ok = m2 != NULL;
    for (int i = 0; ok && i < n; i++) {
        const float *a = f.m->params + f.m->tensors[i].offset, *b = m2->params + f.m->tensors[i].offset;
        for (size_t j = 0; j < f.m->tensors[i].numel; j++)
            ok &= i < half ? a[j] == b[j] : st_bf16_to_f32(st_f32_to_bf16(a[j])) == b[j];
    }
    qwen3_free(m2);
    /* an index naming a tensor that its shard lacks */
    cJSON_AddStringToObject(wm, "model.layers.99.mlp.up_proj.weight", "model-00001-of-00002.safetensors");
    free(idx);
    idx = cJSON_Print(root);
    st_write_text_atomic(pi, idx, err, sizeof err);
    struct qwen3 *m3 = qwen3_load(dir, err, sizeof err);
    int bad_index_refused = m3 == NULL && strstr(err, "layers.99") != NULL;
    qwen3_free(m3);
    cJSON_Delete(root);
    free(idx), free(cfg), free(items), free(p1), free(p2), free(pi), free(pc), free(dir);
    fx_free(&f);
    CHECK(rc == 0 && ok, "sharded load wrong (%s)", err);
    CHECK(bad_index_refused, "index naming a missing tensor accepted (%s)", err);
}

/* ---- hostile files ----------------------------------------------------------------------- */

static int write_raw(const char *path, const void *hdr, size_t hlen, uint64_t claimed, size_t data_len) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(claimed >> (8 * i));
    fwrite(len8, 1, 8, fp);
    fwrite(hdr, 1, hlen, fp);
    for (size_t i = 0; i < data_len; i++) fputc(0x3f, fp);
    return fclose(fp);
}

static void test_hostile_safetensors(void) {
    struct {
        const char *header;
        size_t data;
        int64_t claimed; /* -1: the true header length */
        const char *want;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 1ll << 40, "cap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 4000, "exceeds"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, -1, "past the end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, -1, "overlaps"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, -1, "gap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 16, -1, "cover"},
        {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, -1, "dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, -1, "bytes for"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, -1, "overflow"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, -1, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, -1, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, -1, "twice"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]", 8, -1, "JSON"},
        {"[1,2,3]", 0, -1, "JSON"},
        {"{\"a\":5}", 0, -1, "not an object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, -1, "dimensions"},
    };
    char err[512];
    char *path = xasprintf("%s/hostile.safetensors", scratch());
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t hl = strlen(cases[i].header);
        write_raw(path, cases[i].header, hl, cases[i].claimed < 0 ? hl : (uint64_t)cases[i].claimed, cases[i].data);
        err[0] = 0;
        struct st_dir *d = st_open_file(path, err, sizeof err);
        st_close(d);
        if (d || !strstr(err, cases[i].want)) {
            free(path);
            FAIL("case %u (%s): %s; error '%s' should mention '%s'", i, cases[i].header, d ? "accepted" : "refused",
                 err, cases[i].want);
        }
    }
    /* too short for the length field, and empty */
    write_raw(path, "", 0, 0, 0);
    truncate(path, 3);
    CHECK(st_open_file(path, err, sizeof err) == NULL && strstr(err, "too short"), "3-byte file: %s", err);
    free(path);
}

/* A real checkpoint cut short at every few bytes, and one whose tensor has
 * the wrong shape or is missing, must fail to load with a message. */
static void test_truncated_and_mismatched(void) {
    if (!fixtures()) FAIL("MODEL_FIXTURES is not set");
    char err[512];
    char *src = xasprintf("%s/gqa_tied/model.safetensors", fixtures());
    size_t len;
    char *data = read_file(src, 1 << 24, &len, err, sizeof err);
    free(src);
    CHECK(data, "%s", err);
    char *dir = xasprintf("%s/trunc", scratch());
    mkdir(dir, 0755);
    char *cfgsrc = xasprintf("%s/gqa_tied/config.json", fixtures()), *cfg = read_file(cfgsrc, 1 << 20, NULL, err, sizeof err);
    char *cfgdst = xasprintf("%s/config.json", dir), *dst = xasprintf("%s/model.safetensors", dir);
    write_file_atomic(cfgdst, cfg, strlen(cfg));
    int accepted = -1;
    for (size_t cut = 0; cut < len; cut += cut < 600 ? 7 : 997) {
        write_file_atomic(dst, data, cut);
        struct qwen3 *m = qwen3_load(dir, err, sizeof err);
        if (m) {
            accepted = (int)cut;
            qwen3_free(m);
            break;
        }
    }
    /* config says more layers than the file has: a missing tensor */
    write_file_atomic(dst, data, len);
    char *more = xasprintf("%s", cfg), *at = strstr(more, "\"num_hidden_layers\": 2");
    if (at) at[strlen("\"num_hidden_layers\": ")] = '3';
    write_file_atomic(cfgdst, more, strlen(more));
    struct qwen3 *m = qwen3_load(dir, err, sizeof err);
    int missing_ok = !m && strstr(err, "missing tensor") && strstr(err, "layers.2");
    qwen3_free(m);
    /* wider intermediate_size than the file: a shape error naming both shapes */
    char *wide = xasprintf("%s", cfg);
    at = strstr(wide, "\"intermediate_size\": 48");
    if (at) memcpy(at + strlen("\"intermediate_size\": "), "50", 2);
    write_file_atomic(cfgdst, wide, strlen(wide));
    m = qwen3_load(dir, err, sizeof err);
    int shape_ok = !m && strstr(err, "shape [48, 32], expected [50, 32]");
    qwen3_free(m);
    free(data), free(dir), free(cfgsrc), free(cfg), free(cfgdst), free(dst), free(more), free(wide);
    CHECK(accepted < 0, "a checkpoint cut to %d bytes loaded", accepted);
    CHECK(at != NULL, "fixture config format changed");
    CHECK(missing_ok, "missing tensor: '%s'", err);
    CHECK(shape_ok, "wrong shape: '%s'", err);
}

/* ---- sampling and generation -------------------------------------------------------------------- */

static void test_sampler(void) {
    float logits[5] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f};
    struct sampler s;
    sampler_init(&s, 0.0f, 1.0f, 0, 1);
    CHECK(sampler_sample(&s, logits, 5) == 1, "greedy must take the first maximum");
    sampler_free(&s);
    /* same seed -> same stream; different seed -> different stream */
    int a[64], b[64], c[64], differ = 0;
    sampler_init(&s, 1.0f, 1.0f, 0, 42);
    for (int i = 0; i < 64; i++) a[i] = sampler_sample(&s, logits, 5);
    sampler_free(&s);
    sampler_init(&s, 1.0f, 1.0f, 0, 42);
    for (int i = 0; i < 64; i++) b[i] = sampler_sample(&s, logits, 5);
    sampler_free(&s);
    sampler_init(&s, 1.0f, 1.0f, 0, 43);
    for (int i = 0; i < 64; i++) c[i] = sampler_sample(&s, logits, 5), differ |= c[i] != a[i];
    sampler_free(&s);
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed gave different tokens");
    CHECK(differ, "different seeds gave the same 64 tokens");
    /* a reused sampler, reset to a seed, draws what a fresh one with that seed
     * draws (a token and a sampler per row: batched decoding relies on it) */
    sampler_init(&s, 0.5f, 1.0f, 0, 99);
    for (int i = 0; i < 64; i++) {
        struct sampler fresh;
        sampler_init(&fresh, 1.0f, 0.9f, 0, 1000 + (uint64_t)i);
        sampler_reset(&s, 1.0f, 0.9f, 0, 1000 + (uint64_t)i);
        int want = sampler_sample(&fresh, logits, 5), got = sampler_sample(&s, logits, 5);
        sampler_free(&fresh);
        CHECK(got == want, "draw %d: a reset sampler gave %d, a fresh one %d", i, got, want);
    }
    sampler_free(&s);
    /* frequencies follow softmax(logits / T) */
    int count[5] = {0}, n = 200000;
    sampler_init(&s, 0.7f, 1.0f, 0, 7);
    for (int i = 0; i < n; i++) count[sampler_sample(&s, logits, 5)]++;
    sampler_free(&s);
    double z = 0, p[5];
    for (int i = 0; i < 5; i++) z += exp(logits[i] / 0.7);
    for (int i = 0; i < 5; i++) {
        p[i] = exp(logits[i] / 0.7) / z;
        double sd = sqrt(n * p[i] * (1 - p[i]));
        CHECK(fabs(count[i] - n * p[i]) < 5 * sd + 1, "token %d drawn %d times, expected %.0f", i, count[i], n * p[i]);
    }
    /* top-k 2 keeps only the two 3.0s; top-p 0.5 keeps the smallest set reaching 0.5 */
    int seen[5] = {0};
    sampler_init(&s, 1.0f, 1.0f, 2, 9);
    for (int i = 0; i < 2000; i++) seen[sampler_sample(&s, logits, 5)]++;
    sampler_free(&s);
    CHECK(seen[0] == 0 && seen[2] == 0 && seen[4] == 0 && seen[1] > 0 && seen[3] > 0, "top-k 2 drew outside the top 2");
    memset(seen, 0, sizeof seen);
    /* probs at T=1: 3.0 -> .387 each (two of them), 2.0 -> .142: top_p .5 needs both 3.0s only */
    sampler_init(&s, 1.0f, 0.5f, 0, 9);
    for (int i = 0; i < 2000; i++) seen[sampler_sample(&s, logits, 5)]++;
    sampler_free(&s);
    CHECK(seen[0] == 0 && seen[2] == 0 && seen[4] == 0 && seen[1] > 0 && seen[3] > 0, "top-p 0.5 drew outside the nucleus");
    /* a large vocabulary: top-k selection must keep exactly the k largest */
    enum { BIGV = 5000, K = 10 };
    float *big = xmalloc(BIGV * sizeof *big);
    uint64_t r = 3;
    for (int i = 0; i < BIGV; i++) big[i] = 4.0f * frand(&r);
    float kth[BIGV];
    memcpy(kth, big, sizeof kth);
    for (int i = 0; i < K; i++) /* partial selection sort: kth[i] = i-th largest */
        for (int j = i + 1; j < BIGV; j++)
            if (kth[j] > kth[i]) {
                float t = kth[i];
                kth[i] = kth[j];
                kth[j] = t;
            }
    int outside = 0, distinct = 0;
    static int hit[BIGV];
    memset(hit, 0, sizeof hit);
    sampler_init(&s, 3.0f, 1.0f, K, 5);
    for (int i = 0; i < 4000; i++) {
        int t = sampler_sample(&s, big, BIGV);
        outside += big[t] < kth[K - 1];
        distinct += !hit[t]++;
    }
    sampler_free(&s);
    free(big);
    CHECK(outside == 0 && distinct == K, "top-k %d over %d tokens: %d draws outside, %d distinct", K, BIGV, outside, distinct);
}

struct collect {
    int32_t toks[64];
    int n;
};
static int collect_tok(int32_t t, void *u) {
    struct collect *c = u;
    c->toks[c->n++] = t;
    return 0;
}

/* Greedy generation through the KV cache equals argmax of repeated full forwards. */
static void test_generate_greedy(void) {
    struct fx f;
    char err[512];
    if (fx_load(&f, "hd16_untied", err, sizeof err)) {
        fx_free(&f);
        FAIL("%s", err);
    }
    int np = 4, ng = 8, V = f.m->cfg.vocab_size;
    struct gen_opts o = {.max_tokens = ng, .temperature = 0, .top_p = 1, .seed = 1};
    struct collect c = {.n = 0};
    struct gen_stats st;
    int rc = qwen3_generate(f.m, f.ids, np, &o, collect_tok, &c, &st, err, sizeof err);
    int32_t seq[64];
    memcpy(seq, f.ids, (size_t)np * sizeof *seq);
    int mism = -1;
    for (int g = 0; g < ng && rc == 0; g++) {
        qwen3_forward(f.m, seq, NULL, NULL, 1, np + g);
        const float *l = qwen3_logits(f.m) + (size_t)(np + g - 1) * V;
        int best = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[best]) best = i;
        seq[np + g] = best;
        if (mism < 0 && (g >= c.n || c.toks[g] != best)) mism = g;
    }
    /* a stop id ends generation after emitting it */
    struct collect c2 = {.n = 0};
    int32_t stop = c.toks[2];
    struct gen_opts o2 = o;
    o2.stop_ids = &stop;
    o2.n_stop = 1;
    int rc2 = qwen3_generate(f.m, f.ids, np, &o2, collect_tok, &c2, &st, err, sizeof err);
    int first_stop = 0;
    while (c.toks[first_stop] != stop) first_stop++;
    fx_free(&f);
    CHECK(rc == 0 && c.n == ng, "generate: rc %d, %d tokens (%s)", rc, c.n, err);
    CHECK(mism < 0, "token %d differs from the full-forward argmax", mism);
    CHECK(rc2 == 0 && c2.n == first_stop + 1 && st.stopped_on_stop_id, "stop id: %d tokens, expected %d", c2.n,
          first_stop + 1);
}

static void cleanup(void) {
    if (tmpdir[0]) {
        char *cmd = xasprintf("rm -rf '%s'", tmpdir);
        if (system(cmd)) {}
        free(cmd);
    }
}

int main(int argc, char **argv) {
    static const struct test_case tests[] = {
        {"kernels_avx2", test_kernels_avx2},
        {"attention_helpers_match_plain_loops", test_attention_helpers_match_plain_loops},
        {"kernels_portable", test_kernels_portable},
        {"thread_pool_runs_every_region", test_thread_pool_runs_every_region},
        {"config_released", test_config_released},
        {"config_errors", test_config_errors},
        {"oracle_gqa_tied", test_oracle_gqa_tied},
        {"oracle_hd16_untied_bf16", test_oracle_hd16_untied_bf16},
        {"oracle_mha_wide", test_oracle_mha_wide},
        {"oracle_long_ctx", test_oracle_long_ctx},
        {"logprob_grads_gqa_tied", test_logprob_grads_gqa_tied},
        {"logprob_grads_hd16_untied", test_logprob_grads_hd16_untied},
        {"entropy_grads_gqa_tied", test_entropy_grads_gqa_tied},
        {"entropy_grads_hd16_untied", test_entropy_grads_hd16_untied},
        {"adamw_gqa_tied", test_adamw_gqa_tied},
        {"adamw_hd16_untied", test_adamw_hd16_untied},
        {"lr_schedule", test_lr_schedule},
        {"kv_decode_matches_forward", test_kv_decode_matches_forward},
        {"save_load_bitexact", test_save_load_bitexact},
        {"bf16_rounding", test_bf16_rounding},
        {"sharded_load", test_sharded_load},
        {"hostile_safetensors", test_hostile_safetensors},
        {"truncated_and_mismatched", test_truncated_and_mismatched},
        {"sampler", test_sampler},
        {"generate_greedy", test_generate_greedy},
    };
    int rc = run_test_cases(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
    cleanup();
    return rc;
}
