/*
 * grpo_check.c - a JSON front end to rl/grpo.c for the numpy oracle
 * (test/rl/grpo_oracle.py): reads one case on stdin, prints the loss,
 * gradients and stats on stdout. Test code, not part of viv.
 *
 *   {"cfg":{"clip_low":..,"clip_high":..,"std_norm":true,"agg":"token_mean",
 *           "dr_grpo_norm":..,"kl_coef":..,"entropy_coef":..,
 *           "mask_overlong_malformed":true,"dynamic_sampling":false},
 *    "group_size":G,"offsets":[..],"mask":[..],"logp":[..],"old_logp":[..],
 *    "ref_logp":[..] or null,"entropy":[..] or null,"rewards":[..],
 *    "overlong":[..],"malformed":[..]}
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../rl/grpo.h"

static int nitems(const cJSON *a) { return cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0; }

static float *floats(const cJSON *a) {
    if (!cJSON_IsArray(a)) return NULL;
    int n = cJSON_GetArraySize(a);
    float *v = calloc((size_t)n + 1, sizeof *v);
    for (int i = 0; i < n; i++) v[i] = (float)cJSON_GetArrayItem(a, i)->valuedouble;
    return v;
}

static uint8_t *bytes(const cJSON *a) {
    if (!cJSON_IsArray(a)) return NULL;
    int n = cJSON_GetArraySize(a);
    uint8_t *v = calloc((size_t)n + 1, 1);
    for (int i = 0; i < n; i++) v[i] = (uint8_t)cJSON_GetArrayItem(a, i)->valueint;
    return v;
}

static cJSON *farray(const float *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

int main(void) {
    static char buf[64 << 20];
    size_t len = fread(buf, 1, sizeof buf - 1, stdin);
    buf[len] = 0;
    cJSON *in = cJSON_Parse(buf);
    if (!in) {
        fprintf(stderr, "grpo_check: bad JSON\n");
        return 2;
    }
    struct grpo_cfg c;
    grpo_cfg_default(&c);
    const cJSON *cfg = cJSON_GetObjectItem(in, "cfg");
    const cJSON *v;
    if ((v = cJSON_GetObjectItem(cfg, "clip_low"))) c.clip_low = v->valuedouble;
    if ((v = cJSON_GetObjectItem(cfg, "clip_high"))) c.clip_high = v->valuedouble;
    if ((v = cJSON_GetObjectItem(cfg, "std_norm"))) c.std_norm = cJSON_IsTrue(v);
    if ((v = cJSON_GetObjectItem(cfg, "agg"))) c.agg = grpo_agg_parse(v->valuestring);
    if ((v = cJSON_GetObjectItem(cfg, "dr_grpo_norm"))) c.dr_grpo_norm = v->valuedouble;
    if ((v = cJSON_GetObjectItem(cfg, "kl_coef"))) c.kl_coef = v->valuedouble;
    if ((v = cJSON_GetObjectItem(cfg, "entropy_coef"))) c.entropy_coef = v->valuedouble;
    if ((v = cJSON_GetObjectItem(cfg, "mask_overlong_malformed"))) c.mask_overlong_malformed = cJSON_IsTrue(v);
    if ((v = cJSON_GetObjectItem(cfg, "dynamic_sampling"))) c.dynamic_sampling = cJSON_IsTrue(v);
    const cJSON *offs = cJSON_GetObjectItem(in, "offsets");
    int nseq = nitems(offs) - 1;
    int *offsets = calloc((size_t)nseq + 1, sizeof *offsets);
    for (int i = 0; i <= nseq; i++) offsets[i] = cJSON_GetArrayItem(offs, i)->valueint;
    int ntok = offsets[nseq];
    struct grpo_batch b = {
        .nseq = nseq,
        .group_size = cJSON_GetObjectItem(in, "group_size")->valueint,
        .offsets = offsets,
        .mask = bytes(cJSON_GetObjectItem(in, "mask")),
        .logp = floats(cJSON_GetObjectItem(in, "logp")),
        .old_logp = floats(cJSON_GetObjectItem(in, "old_logp")),
        .ref_logp = floats(cJSON_GetObjectItem(in, "ref_logp")),
        .entropy = floats(cJSON_GetObjectItem(in, "entropy")),
        .rewards = floats(cJSON_GetObjectItem(in, "rewards")),
        .overlong = bytes(cJSON_GetObjectItem(in, "overlong")),
        .malformed = bytes(cJSON_GetObjectItem(in, "malformed")),
    };
    struct grpo_out o = {.dlogp = calloc((size_t)ntok + 1, sizeof(float)),
                         .dentropy = calloc((size_t)ntok + 1, sizeof(float)),
                         .adv = calloc((size_t)nseq + 1, sizeof(float))};
    struct grpo_stats st;
    char err[256];
    if (grpo_loss(&c, &b, &o, &st, err, sizeof err) != 0) {
        printf("{\"error\":\"%s\"}\n", err);
        return 1;
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "loss", st.loss);
    cJSON_AddNumberToObject(r, "pg_loss", st.pg_loss);
    cJSON_AddNumberToObject(r, "kl_loss", st.kl_loss);
    cJSON_AddNumberToObject(r, "entropy_loss", st.entropy_loss);
    cJSON_AddNumberToObject(r, "kl_mean", st.kl_mean);
    cJSON_AddNumberToObject(r, "entropy_mean", st.entropy_mean);
    cJSON_AddNumberToObject(r, "clip_frac", st.clip_frac);
    cJSON_AddNumberToObject(r, "clip_frac_low", st.clip_frac_low);
    cJSON_AddNumberToObject(r, "clip_frac_high", st.clip_frac_high);
    cJSON_AddNumberToObject(r, "tokens", (double)st.tokens);
    cJSON_AddNumberToObject(r, "groups_kept", st.groups_kept);
    cJSON_AddNumberToObject(r, "groups_dropped", st.groups_dropped);
    cJSON_AddNumberToObject(r, "seqs_masked", st.seqs_masked);
    cJSON_AddItemToObject(r, "dlogp", farray(o.dlogp, ntok));
    cJSON_AddItemToObject(r, "dentropy", farray(o.dentropy, ntok));
    cJSON_AddItemToObject(r, "adv", farray(o.adv, nseq));
    char *s = cJSON_PrintUnformatted(r);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(r);
    cJSON_Delete(in);
    free(offsets);
    free((void *)b.mask), free((void *)b.logp), free((void *)b.old_logp), free((void *)b.ref_logp);
    free((void *)b.entropy), free((void *)b.rewards), free((void *)b.overlong), free((void *)b.malformed);
    free(o.dlogp), free(o.dentropy), free(o.adv);
    return 0;
}
