/*
 * safetensors.c - mmap reader with a distrustful header check, and an
 * atomic writer (see safetensors.h for the format).
 */
#define _GNU_SOURCE
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../sandbox/base/util.h"

/* A real header is a few hundred KiB even for 32B models; 100 MiB is the cap
 * the reference implementation uses too. */
#define ST_MAX_HEADER (100u << 20)

struct st_map {
    uint8_t *base;
    size_t size;
};

struct st_dir {
    struct st_map *maps;
    int nmaps;
    struct st_tensor *t; /* sorted by name after opening */
    int n;
};

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_NDTYPES] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2}, [ST_F64] = {"F64", 8},
    [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4}, [ST_I16] = {"I16", 2},  [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1},   [ST_BOOL] = {"BOOL", 1},
};

const char *st_dtype_name(enum st_dtype t) { return (unsigned)t < ST_NDTYPES ? dtypes[t].name : "?"; }

/* ---- conversions ---------------------------------------------------------- */

float st_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    /* round to nearest, ties to even: add 0x7fff plus the lowest kept bit */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13); /* inf / NaN */
    } else if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: value = man * 2^-24; normalise it */
            float f = (float)man * 5.9604644775390625e-08f;
            memcpy(&u, &f, 4);
            u |= sign;
        }
    } else {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- reading ---------------------------------------------------------------- */

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const struct st_tensor *)a)->name, ((const struct st_tensor *)b)->name);
}

struct span {
    uint64_t begin, end;
    const char *name;
};
static int cmp_span(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

static int parse_u64(const cJSON *v, uint64_t *out) {
    /* JSON numbers arrive as doubles: exact up to 2^53, far beyond any file */
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != floor(v->valuedouble))
        return -1;
    *out = (uint64_t)v->valuedouble;
    return 0;
}

/* Check one tensor's header entry and fill *t (data pointer relative to data). */
static int parse_entry(const cJSON *e, const char *path, const uint8_t *data, uint64_t data_len, struct st_tensor *t,
                       struct span *sp, char *err, size_t errlen) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return fail_with(err, errlen, "%s: tensor \"%s\": entry is not an object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
        return fail_with(err, errlen, "%s: tensor \"%s\": needs dtype, shape and data_offsets", path, name);
    int k;
    for (k = 0; k < ST_NDTYPES; k++)
        if (strcmp(dt->valuestring, dtypes[k].name) == 0) break;
    if (k == ST_NDTYPES) return fail_with(err, errlen, "%s: tensor \"%s\": unknown dtype \"%.16s\"", path, name, dt->valuestring);
    t->dtype = (enum st_dtype)k;
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS) return fail_with(err, errlen, "%s: tensor \"%s\": %d dimensions (max %d)", path, name, nd, ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (parse_u64(cJSON_GetArrayItem(sh, i), &d))
            return fail_with(err, errlen, "%s: tensor \"%s\": bad shape entry", path, name);
        if (d && numel > UINT64_MAX / d) return fail_with(err, errlen, "%s: tensor \"%s\": shape overflows", path, name);
        numel *= d;
        t->shape[i] = (int64_t)d;
    }
    uint64_t b, en;
    if (cJSON_GetArraySize(off) != 2 || parse_u64(cJSON_GetArrayItem(off, 0), &b) ||
        parse_u64(cJSON_GetArrayItem(off, 1), &en) || b > en)
        return fail_with(err, errlen, "%s: tensor \"%s\": bad data_offsets", path, name);
    if (en > data_len)
        return fail_with(err, errlen, "%s: tensor \"%s\": data [%llu, %llu) runs past the end of the file's %llu data bytes "
                                 "(truncated file?)",
                    path, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_len);
    if (numel > UINT64_MAX / dtypes[k].size || numel * dtypes[k].size != en - b)
        return fail_with(err, errlen, "%s: tensor \"%s\": %llu bytes for %llu elements of %s", path, name,
                    (unsigned long long)(en - b), (unsigned long long)numel, dtypes[k].name);
    t->numel = (size_t)numel;
    t->nbytes = (size_t)(en - b);
    t->data = data + b;
    sp->begin = b;
    sp->end = en;
    sp->name = name;
    return 0;
}

/* Map one file and append its tensors to d. */
static int load_file(struct st_dir *d, const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail_with(err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail_with(err, errlen, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        return fail_with(err, errlen, "%s: %zu bytes is too short for a safetensors file", path, size);
    }
    uint8_t *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (base == MAP_FAILED) return fail_with(err, errlen, "%s: mmap: %s", path, strerror(errno));
    d->maps = xrealloc(d->maps, sizeof *d->maps * (size_t)(d->nmaps + 1));
    d->maps[d->nmaps++] = (struct st_map){base, size};

    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)base[i] << (8 * i);
    if (hlen > ST_MAX_HEADER) return fail_with(err, errlen, "%s: header length %llu is over the %u-byte cap", path, (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > size - 8)
        return fail_with(err, errlen, "%s: header length %llu exceeds the file size %zu (truncated file?)", path,
                    (unsigned long long)hlen, size);
    cJSON *root = cJSON_ParseWithLength((const char *)base + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fail_with(err, errlen, "%s: header is not a JSON object", path);
    }
    const uint8_t *data = base + 8 + hlen;
    uint64_t data_len = size - 8 - hlen;
    int count = cJSON_GetArraySize(root), rc = -1, first = d->n, ns = 0;
    struct span *spans = xcalloc((size_t)count + 1, sizeof *spans);
    d->t = xrealloc(d->t, sizeof *d->t * (size_t)(d->n + count));
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string) goto out;
        if (strcmp(e->string, "__metadata__") == 0) continue;
        struct st_tensor *t = &d->t[d->n];
        memset(t, 0, sizeof *t);
        if (parse_entry(e, path, data, data_len, t, &spans[ns], err, errlen)) goto out;
        t->name = xstrdup(e->string);
        d->n++;
        ns++;
    }
    /* The data area must be tiled exactly: sorted by offset, each tensor
     * starts where the previous ended, and the last ends at the file's end.
     * This rejects overlapping tensors (aliasing), holes and truncation. */
    qsort(spans, (size_t)ns, sizeof *spans, cmp_span);
    uint64_t pos = 0;
    for (int i = 0; i < ns; i++) {
        if (spans[i].begin != pos) {
            if (spans[i].begin < pos)
                fail_with(err, errlen, "%s: tensor \"%s\" overlaps the tensor before it", path, spans[i].name);
            else
                fail_with(err, errlen, "%s: gap in the data before tensor \"%s\"", path, spans[i].name);
            goto out;
        }
        pos = spans[i].end;
    }
    if (pos != data_len) {
        fail_with(err, errlen, "%s: tensors cover %llu of %llu data bytes", path, (unsigned long long)pos,
             (unsigned long long)data_len);
        goto out;
    }
    (void)first;
    rc = 0;
out:
    if (rc && err && !err[0]) fail_with(err, errlen, "%s: malformed header", path);
    free(spans);
    cJSON_Delete(root);
    return rc;
}

/* Sort by name and refuse duplicates (within or across shards). */
static int finish(struct st_dir *d, char *err, size_t errlen) {
    qsort(d->t, (size_t)d->n, sizeof *d->t, cmp_name);
    for (int i = 1; i < d->n; i++)
        if (strcmp(d->t[i - 1].name, d->t[i].name) == 0)
            return fail_with(err, errlen, "tensor \"%s\" appears twice", d->t[i].name);
    return 0;
}

struct st_dir *st_open_file(const char *path, char *err, size_t errlen) {
    struct st_dir *d = xcalloc(1, sizeof *d);
    if (err && errlen) err[0] = 0;
    if (load_file(d, path, err, errlen) || finish(d, err, errlen)) {
        st_close(d);
        return NULL;
    }
    return d;
}

/* model.safetensors.index.json: {"weight_map": {"tensor": "file", ...}}. */
static int load_index(struct st_dir *d, const char *dir, const char *index_path, char *err, size_t errlen) {
    char why[256];
    char *text = read_file(index_path, 64u << 20, NULL, why, sizeof why);
    if (!text) return fail_with(err, errlen, "%s", why); /* read_file names the path */
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    int rc = -1, nfiles = 0;
    char **files = NULL;
    if (!cJSON_IsObject(wm)) {
        fail_with(err, errlen, "%s: no \"weight_map\" object", index_path);
        goto out;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/') || e->valuestring[0] == '.') {
            fail_with(err, errlen, "%s: weight_map[\"%s\"] must be a plain file name in the directory", index_path,
                 e->string ? e->string : "?");
            goto out;
        }
        int seen = 0;
        for (int i = 0; i < nfiles && !seen; i++) seen = strcmp(files[i], e->valuestring) == 0;
        if (!seen) {
            files = xrealloc(files, sizeof *files * (size_t)(nfiles + 1));
            files[nfiles++] = e->valuestring;
        }
    }
    if (nfiles == 0) {
        fail_with(err, errlen, "%s: weight_map is empty", index_path);
        goto out;
    }
    for (int i = 0; i < nfiles; i++) {
        char *p = xasprintf("%s/%s", dir, files[i]);
        int r = load_file(d, p, err, errlen);
        free(p);
        if (r) goto out;
    }
    if (finish(d, err, errlen)) goto out;
    /* every tensor the index names must be where it says */
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!st_find(d, e->string)) {
            fail_with(err, errlen, "%s: tensor \"%s\" is listed in the index but missing from %s", index_path, e->string,
                 e->valuestring);
            goto out;
        }
    }
    rc = 0;
out:
    free(files);
    cJSON_Delete(root);
    return rc;
}

struct st_dir *st_open_dir(const char *dir, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    char *single = xasprintf("%s/model.safetensors", dir);
    char *index = xasprintf("%s/model.safetensors.index.json", dir);
    struct st_dir *d = NULL;
    if (access(single, F_OK) == 0) {
        d = st_open_file(single, err, errlen);
    } else if (access(index, F_OK) == 0) {
        d = xcalloc(1, sizeof *d);
        if (load_index(d, dir, index, err, errlen)) {
            st_close(d);
            d = NULL;
        }
    } else {
        fail_with(err, errlen, "%s: neither model.safetensors nor model.safetensors.index.json exists", dir);
    }
    free(single);
    free(index);
    return d;
}

void st_close(struct st_dir *d) {
    if (!d) return;
    for (int i = 0; i < d->nmaps; i++) munmap(d->maps[i].base, d->maps[i].size);
    for (int i = 0; i < d->n; i++) free(d->t[i].name);
    free(d->maps);
    free(d->t);
    free(d);
}

int st_count(const struct st_dir *d) { return d->n; }
const struct st_tensor *st_get(const struct st_dir *d, int i) { return i >= 0 && i < d->n ? &d->t[i] : NULL; }

const struct st_tensor *st_find(const struct st_dir *d, const char *name) {
    int lo = 0, hi = d->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(d->t[mid].name, name);
        if (c == 0) return &d->t[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && o < len; i++) o += (size_t)snprintf(buf + o, len - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

int st_read_f32(const struct st_dir *d, const char *name, int ndim, const int64_t *want, float *dst, char *err,
                size_t errlen) {
    const struct st_tensor *t = st_find(d, name);
    if (!t) return fail_with(err, errlen, "missing tensor \"%s\"", name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == want[i];
    if (!same) {
        char a[128], b[128];
        shape_str(a, sizeof a, t->ndim, t->shape);
        shape_str(b, sizeof b, ndim, want);
        return fail_with(err, errlen, "tensor \"%s\" has shape %s, expected %s", name, a, b);
    }
    const uint8_t *p = t->data; /* may be unaligned: read through memcpy */
    switch (t->dtype) {
    case ST_F32: memcpy(dst, p, t->numel * 4); break;
    case ST_BF16:
        for (size_t i = 0; i < t->numel; i++) dst[i] = st_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case ST_F16:
        for (size_t i = 0; i < t->numel; i++) dst[i] = st_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    default: return fail_with(err, errlen, "tensor \"%s\": dtype %s is not a float type we load", name, dtypes[t->dtype].name);
    }
    return 0;
}

/* ---- writing ------------------------------------------------------------------ */

static int fsync_parent(const char *path) {
    char *copy = xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int st_write(const char *path, const struct st_item *items, int n, enum st_dtype dtype, char *err, size_t errlen) {
    if (dtype != ST_F32 && dtype != ST_BF16) return fail_with(err, errlen, "st_write: only F32 and BF16 are written");
    size_t esize = dtypes[dtype].size, offset = 0;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        cJSON *e = cJSON_AddObjectToObject(root, items[i].name);
        cJSON_AddStringToObject(e, "dtype", dtypes[dtype].name);
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int k = 0; k < items[i].ndim; k++) {
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)items[i].shape[k]));
            numel *= (size_t)items[i].shape[k];
        }
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)offset));
        offset += numel * esize;
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)offset));
    }
    char *hdr = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7; /* 8-byte aligned data, padded with spaces */
    char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fail_with(err, errlen, "%s: %s", tmp, strerror(errno));
        free(tmp);
        free(hdr);
        return -1;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int bad = write_all(fd, len8, 8) || write_all(fd, hdr, hlen);
    for (size_t i = hlen; i < padded && !bad; i++) bad = write_all(fd, " ", 1);
    free(hdr);
    enum { CHUNK = 1 << 18 };
    uint16_t *buf = dtype == ST_BF16 ? xmalloc(CHUNK * 2) : NULL;
    for (int i = 0; i < n && !bad; i++) {
        size_t numel = 1;
        for (int k = 0; k < items[i].ndim; k++) numel *= (size_t)items[i].shape[k];
        if (dtype == ST_F32) { /* little-endian host assumed (x86-64, aarch64) */
            bad = write_all(fd, items[i].data, numel * 4);
            continue;
        }
        for (size_t s = 0; s < numel && !bad; s += CHUNK) {
            size_t m = numel - s < CHUNK ? numel - s : CHUNK;
            for (size_t j = 0; j < m; j++) buf[j] = st_f32_to_bf16(items[i].data[s + j]);
            bad = write_all(fd, buf, m * 2);
        }
    }
    free(buf);
    if (bad || fsync(fd)) bad = 1;
    if (close(fd)) bad = 1;
    if (bad || rename(tmp, path) || fsync_parent(path)) {
        fail_with(err, errlen, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

int st_write_text_atomic(const char *path, const char *text, char *err, size_t errlen) {
    if (write_file_atomic(path, text, strlen(text)) || fsync_parent(path))
        return fail_with(err, errlen, "%s: write failed: %s", path, strerror(errno));
    return 0;
}
