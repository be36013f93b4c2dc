/*
 * safetensors.h - read and write Hugging Face safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON mapping each
 * tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
 * relative to the byte after the header), then the raw little-endian data.
 * A model directory holds model.safetensors, or shards listed by
 * model.safetensors.index.json ({"weight_map": {name: file}}).
 *
 * Reading maps every file with mmap and checks the header before trusting
 * it: the header length against the file size, every dtype and shape, offsets
 * inside the data area, byte counts equal to numel * dtype size, no two
 * tensors overlapping, no duplicate names. Tensors are converted to fp32 on
 * request (BF16, F16, F32 are the float dtypes we accept).
 */
#ifndef VIV_MODEL_SAFETENSORS_H
#define VIV_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum st_dtype { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL, ST_NDTYPES };

#define ST_MAX_DIMS 8

struct st_tensor {
    char *name;
    enum st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    const uint8_t *data; /* inside the mapping */
    size_t nbytes;
};

struct st_dir; /* one or more mapped files and their tensors */

/* Open one .safetensors file. NULL + err on any problem. */
struct st_dir *st_open_file(const char *path, char *err, size_t errlen);
/* Open a model directory: model.safetensors, or the shards named by
 * model.safetensors.index.json. */
struct st_dir *st_open_dir(const char *dir, char *err, size_t errlen);
void st_close(struct st_dir *d);

int st_count(const struct st_dir *d);
const struct st_tensor *st_get(const struct st_dir *d, int i);
const struct st_tensor *st_find(const struct st_dir *d, const char *name);
const char *st_dtype_name(enum st_dtype t);

/* Convert a float tensor to fp32 into dst (numel floats). The shape must
 * equal want_shape (ndim dims) or an error names both. */
int st_read_f32(const struct st_dir *d, const char *name, int ndim, const int64_t *want_shape, float *dst, char *err,
                size_t errlen);

/* Conversions, exposed for tests. */
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */
float st_f16_to_f32(uint16_t h);

/* Writing: a list of fp32 tensors saved as F32 or BF16 into one file,
 * atomically (temp file, fsync, rename, fsync of the directory). */
struct st_item {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
};
int st_write(const char *path, const struct st_item *items, int n, enum st_dtype dtype, char *err, size_t errlen);

/* Atomic small-file write with directory fsync (config.json and friends). */
int st_write_text_atomic(const char *path, const char *text, char *err, size_t errlen);

#endif
