/*
 * config.c - read and write Qwen3's config.json (see config.h).
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../sandbox/base/util.h"

/* An integer field: required (def < -1 means required) or defaulted. */
static int get_int(const cJSON *root, const char *key, long def, long min, long max, int *out, char *err,
                   size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < -1) return fail_with(err, errlen, "config.json: missing \"%s\"", key);
        *out = (int)def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return fail_with(err, errlen, "config.json: \"%s\" must be an integer", key);
    if (v->valuedouble < (double)min || v->valuedouble > (double)max)
        return fail_with(err, errlen, "config.json: \"%s\" = %.0f is out of range [%ld, %ld]", key, v->valuedouble, min,
                    max);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_double(const cJSON *root, const char *key, double def, double *out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0)
        return fail_with(err, errlen, "config.json: \"%s\" must be a positive number", key);
    *out = v->valuedouble;
    return 0;
}

/* RoPE: transformers <= 4.5x keeps rope_theta (and rope_scaling) at the top
 * level; newer versions write rope_parameters {"rope_type", "rope_theta"}.
 * Only the default (unscaled) RoPE is implemented. */
static int parse_rope(const cJSON *root, struct qwen3_config *c, char *err, size_t errlen) {
    double theta = 10000.0;
    if (get_double(root, "rope_theta", 10000.0, &theta, err, errlen)) return -1;
    const char *names[] = {"rope_scaling", "rope_parameters"};
    for (int i = 0; i < 2; i++) {
        const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, names[i]);
        if (!rp || cJSON_IsNull(rp)) continue;
        if (!cJSON_IsObject(rp)) return fail_with(err, errlen, "config.json: \"%s\" must be an object or null", names[i]);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(rp, "rope_type");
        if (!type) type = cJSON_GetObjectItemCaseSensitive(rp, "type");
        if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "default") != 0))
            return fail_with(err, errlen, "config.json: %s.rope_type %s is not supported (only \"default\" RoPE)",
                        names[i], cJSON_IsString(type) ? type->valuestring : "(not a string)");
        if (cJSON_GetObjectItemCaseSensitive(rp, "rope_theta") &&
            get_double(rp, "rope_theta", theta, &theta, err, errlen))
            return -1;
    }
    c->rope_theta = theta;
    return 0;
}

static int get_bool(const cJSON *root, const char *key, int def, int *out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v)) return fail_with(err, errlen, "config.json: \"%s\" must be true or false", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* eos_token_id may be an integer or a list of integers; we keep the first. */
static int get_token_id(const cJSON *root, const char *key, int *out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = -1;
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!v || !cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 2147483647.0)
        return fail_with(err, errlen, "config.json: \"%s\" must be a non-negative integer", key);
    *out = (int)v->valuedouble;
    return 0;
}

int qwen3_config_validate(const struct qwen3_config *c, char *err, size_t errlen) {
    if (c->num_heads % c->num_kv_heads)
        return fail_with(err, errlen, "config.json: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
                    c->num_heads, c->num_kv_heads);
    /* Every weight matrix must be addressable with size_t and small enough to
     * be a plausible model: cap each at 2^34 elements (64 GiB of fp32). */
    double big = 17179869184.0;
    double qd = (double)c->num_heads * c->head_dim, kvd = (double)c->num_kv_heads * c->head_dim;
    if ((double)c->vocab_size * c->hidden_size > big || qd * c->hidden_size > big || kvd * c->hidden_size > big ||
        (double)c->intermediate_size * c->hidden_size > big)
        return fail_with(err, errlen, "config.json: sizes are too large for one weight matrix");
    if (c->head_dim % 2) return fail_with(err, errlen, "config.json: head_dim (%d) must be even for RoPE", c->head_dim);
    if (!(c->rms_norm_eps > 0) || !(c->rope_theta > 1))
        return fail_with(err, errlen, "config.json: rms_norm_eps must be > 0 and rope_theta > 1");
    return 0;
}

int qwen3_config_parse(const char *json, struct qwen3_config *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fail_with(err, errlen, "config.json: not a JSON object");
    }
    int rc = -1, bias = 0, sliding = 0;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "qwen3") != 0)) {
        fail_with(err, errlen, "config.json: model_type is %s, expected \"qwen3\"",
             cJSON_IsString(mt) ? mt->valuestring : "not a string");
        goto out;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0)) {
        fail_with(err, errlen, "config.json: hidden_act must be \"silu\"");
        goto out;
    }
    const long M = 1L << 24;
    if (get_int(root, "vocab_size", -2, 1, M, &c->vocab_size, err, errlen) ||
        get_int(root, "hidden_size", -2, 1, M, &c->hidden_size, err, errlen) ||
        get_int(root, "intermediate_size", -2, 1, M, &c->intermediate_size, err, errlen) ||
        get_int(root, "num_hidden_layers", -2, 1, 4096, &c->num_layers, err, errlen) ||
        get_int(root, "num_attention_heads", -2, 1, 4096, &c->num_heads, err, errlen) ||
        get_int(root, "num_key_value_heads", c->num_heads, 1, 4096, &c->num_kv_heads, err, errlen) ||
        get_int(root, "head_dim", c->hidden_size / c->num_heads, 1, 65536, &c->head_dim, err, errlen) ||
        get_int(root, "max_position_embeddings", 32768, 1, 1L << 30, &c->max_position, err, errlen) ||
        get_bool(root, "tie_word_embeddings", 0, &c->tie_word_embeddings, err, errlen) ||
        get_bool(root, "attention_bias", 0, &bias, err, errlen) ||
        get_bool(root, "use_sliding_window", 0, &sliding, err, errlen) ||
        get_token_id(root, "bos_token_id", &c->bos_token_id, err, errlen) ||
        get_token_id(root, "eos_token_id", &c->eos_token_id, err, errlen) || parse_rope(root, c, err, errlen))
        goto out;
    double eps = 1e-6;
    if (get_double(root, "rms_norm_eps", 1e-6, &eps, err, errlen)) goto out;
    c->rms_norm_eps = (float)eps;
    if (bias) {
        fail_with(err, errlen, "config.json: attention_bias=true is not supported (Qwen3 has no biases)");
        goto out;
    }
    if (sliding) {
        fail_with(err, errlen, "config.json: use_sliding_window=true is not supported");
        goto out;
    }
    rc = qwen3_config_validate(c, err, errlen);
out:
    cJSON_Delete(root);
    return rc;
}

int qwen3_config_load(const char *path, struct qwen3_config *c, char *err, size_t errlen) {
    char why[256];
    char *text = read_file(path, 1 << 20, NULL, why, sizeof why);
    if (!text) return fail_with(err, errlen, "%s", why); /* read_file names the path */
    int rc = qwen3_config_parse(text, c, err, errlen);
    free(text);
    return rc;
}

char *qwen3_config_to_json(const struct qwen3_config *c, const char *dtype) {
    cJSON *o = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("Qwen3ForCausalLM"));
    cJSON_AddBoolToObject(o, "attention_bias", 0);
    cJSON_AddNumberToObject(o, "attention_dropout", 0.0);
    if (c->bos_token_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", c->bos_token_id);
    if (c->eos_token_id >= 0) cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_position);
    cJSON_AddStringToObject(o, "model_type", "qwen3");
    cJSON_AddNumberToObject(o, "num_attention_heads", c->num_heads);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->num_layers);
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->num_kv_heads);
    /* eps is a float; print it through double at float precision so that
     * 1e-6 comes back as 1e-06, not 9.9999999747524271e-07 */
    char eps[32];
    snprintf(eps, sizeof eps, "%.7g", (double)c->rms_norm_eps);
    cJSON_AddNumberToObject(o, "rms_norm_eps", strtod(eps, NULL));
    cJSON_AddNullToObject(o, "rope_scaling");
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddStringToObject(o, "torch_dtype", dtype);
    cJSON_AddBoolToObject(o, "use_cache", 1);
    cJSON_AddBoolToObject(o, "use_sliding_window", 0);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_file(const char *dir, const char *name) {
    char *p = xasprintf("%s/%s", dir, name);
    struct stat st;
    int ok = stat(p, &st) == 0 && S_ISREG(st.st_mode);
    free(p);
    return ok;
}

/* dir/latest names a checkpoint directory beside it: that directory, or NULL. */
static char *follow_latest(const char *dir) {
    char *lp = xasprintf("%s/latest", dir), name[256] = "";
    FILE *f = fopen(lp, "r");
    free(lp);
    if (!f) return NULL;
    if (!fgets(name, sizeof name, f)) name[0] = 0;
    fclose(f);
    name[strcspn(name, "\r\n")] = 0;
    if (!name[0] || strchr(name, '/')) return NULL; /* a name beside it, never a path elsewhere */
    char *ck = xasprintf("%s/%s", dir, name);
    if (has_file(ck, "config.json")) return ck; /* a checkpoint: loading it says what else it lacks */
    free(ck);
    return NULL;
}

char *qwen3_model_dir_resolve(const char *path, char *err, size_t errlen) {
    if (!path || !*path || !is_dir(path)) {
        fail_with(err, errlen, "model directory not found: %s", path ? path : "");
        return NULL;
    }
    /* a run directory has a config.json too (the run's): weights are what make a model directory */
    if (has_file(path, "config.json") &&
        (has_file(path, "model.safetensors") || has_file(path, "model.safetensors.index.json")))
        return xstrdup(path);
    char *ck = follow_latest(path);
    if (ck) return ck;
    char *cdir = xasprintf("%s/checkpoints", path);
    ck = is_dir(cdir) ? follow_latest(cdir) : NULL;
    free(cdir);
    if (ck) return ck;
    fail_with(err, errlen, "%s: not a model directory (config.json and model.safetensors) nor a run directory "
                           "(checkpoints/latest)", path);
    return NULL;
}
