/*
 * config.h - the Qwen3 hyper-parameters, read from a Hugging Face config.json.
 *
 * Field meanings follow transformers' Qwen3Config. Defaults for absent keys
 * are Qwen3Config's defaults (head_dim = hidden/heads, rope_theta 10000,
 * rms_norm_eps 1e-6, tie_word_embeddings false). Features we do not implement
 * (sliding-window attention, attention biases, RoPE scaling other than the
 * default) are refused with a clear error rather than silently ignored.
 */
#ifndef VIV_MODEL_CONFIG_H
#define VIV_MODEL_CONFIG_H

#include <stddef.h>

struct qwen3_config {
    int vocab_size;
    int hidden_size;       /* D: width of the residual stream */
    int intermediate_size; /* F: width of the SwiGLU MLP */
    int num_layers;        /* L */
    int num_heads;         /* Hq: query heads */
    int num_kv_heads;      /* Hkv: key/value heads (GQA: Hq % Hkv == 0) */
    int head_dim;          /* hd: may differ from D / Hq */
    int max_position;      /* max_position_embeddings (informational) */
    float rms_norm_eps;
    double rope_theta;
    int tie_word_embeddings; /* 1: lm_head shares model.embed_tokens.weight */
    int bos_token_id;        /* -1 when absent */
    int eos_token_id;        /* -1 when absent (first one when a list) */
};

/* Parse config.json text / a file. Returns 0, or -1 with a message in err. */
int qwen3_config_parse(const char *json, struct qwen3_config *c, char *err, size_t errlen);
int qwen3_config_load(const char *path, struct qwen3_config *c, char *err, size_t errlen);
/* Check that the sizes are sane (positive, divisible, not absurdly large). */
int qwen3_config_validate(const struct qwen3_config *c, char *err, size_t errlen);
/* config.json text for c (malloc'd), recording the on-disk dtype
 * ("float32" or "bfloat16"). */
char *qwen3_config_to_json(const struct qwen3_config *c, const char *dtype);

/* The model directory a user's path means (malloc'd): a model directory
 * (it has config.json) as it is; a run directory (runs/NAME) or its
 * checkpoints/ directory: the checkpoint its `latest` file names. NULL with
 * err ("model directory not found: PATH", or what the path lacks). */
char *qwen3_model_dir_resolve(const char *path, char *err, size_t errlen);

#endif
