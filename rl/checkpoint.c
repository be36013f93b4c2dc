/*
 * checkpoint.c - a run's checkpoints: written whole under a temporary name
 * and renamed, `latest` replaced atomically, the previous one removed
 * (step-000000, the SFT model, stays); read back for --resume with the
 * optimizer's moments, and metrics lines past the checkpoint dropped.
 */
#define _GNU_SOURCE
#include "train_job.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../model/config.h"
#include "../sandbox/base/interrupt.h"
#include "../sandbox/base/util.h"

/* ---- checkpoints ------------------------------------------------------------------------------- */

static int write_blob(const char *path, const void *a, size_t na, const void *b, size_t nb, const void *c, size_t nc) {
    char *buf = xmalloc(na + nb + nc + 1);
    memcpy(buf, a, na), memcpy(buf + na, b, nb), memcpy(buf + na + nb, c, nc);
    int rc = rl_write_atomic(path, buf, na + nb + nc);
    free(buf);
    return rc;
}

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = xasprintf("%s/%s", dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

/* What an interrupt leaves and how to go on from it (interrupt.h). */
void note_resumable(const struct train_cfg *c, long step) {
    const char *runs_flag = strcmp(c->runs, "runs") ? " --runs " : "", *runs = strcmp(c->runs, "runs") ? c->runs : "";
    if (step < 0)
        interrupt_note("%s/%s has no checkpoint yet; start again with: viv %s --name %s%s%s --overwrite", c->runs, c->name,
                       c->sft_only ? "sft" : "train", c->name, runs_flag, runs);
    else
        interrupt_note("kept %s/%s/checkpoints/step-%06ld; continue with the same options and --resume: viv %s --name %s%s%s --resume", c->runs, c->name,
                       step, c->sft_only ? "sft" : "train", c->name, runs_flag, runs);
}

/* runs/NAME/checkpoints/step-NNNNNN: model, tokenizer, optimizer.bin
 * ("VIVOPT1\0", n, step, m[n], v[n]) and state.json; built as .tmp, renamed;
 * then `latest` names it. The previous checkpoint is removed after, except
 * step-000000 (the model SFT made, before any GRPO step), which stays so
 * GRPO can be rerun or compared from it (`--model .../step-000000 --no-sft`). */
int save_checkpoint(struct job *j, long step, char *err, size_t errlen) {
    char *cdir = xasprintf("%s/checkpoints", j->dir);
    mkdir(cdir, 0755);
    char *final = xasprintf("%s/step-%06ld", cdir, step), *tmp = xasprintf("%s.tmp", final);
    rm_tree(tmp);
    int slot = interrupt_track_path(tmp); /* Ctrl-C while it is written removes it */
    int rc = -1;
    struct adamw *opt = &j->be->opt; /* the caller ran sync_down on every rank (ZeRO-1 gathers) */
    if (qwen3_save(j->m, tmp, ST_F32, err, errlen) != 0) goto out;
    if (tokenizer_save(j->tok, tmp, err, errlen) != 0) goto out;
    {
        char hdr[24] = "VIVOPT1";
        uint64_t n = opt->n;
        int64_t s = opt->step;
        memcpy(hdr + 8, &n, 8), memcpy(hdr + 16, &s, 8);
        char *p = xasprintf("%s/optimizer.bin", tmp);
        int w = write_blob(p, hdr, 24, opt->m, opt->n * sizeof(float), opt->v, opt->n * sizeof(float));
        free(p);
        if (w != 0) {
            snprintf(err, errlen, "optimizer.bin: %s", strerror(errno));
            goto out;
        }
        char *st = xasprintf("{\"step\":%ld,\"seed\":%ld,\"optimizer_step\":%ld}\n", step, j->c.seed, opt->step);
        p = xasprintf("%s/state.json", tmp);
        w = rl_write_atomic(p, st, strlen(st));
        free(p), free(st);
        if (w != 0) {
            snprintf(err, errlen, "state.json: %s", strerror(errno));
            goto out;
        }
    }
    rm_tree(final);
    if (rename(tmp, final) != 0) {
        snprintf(err, errlen, "rename %s: %s", tmp, strerror(errno));
        goto out;
    }
    {
        /* the previous checkpoint, named by `latest`, goes once the new one is named */
        char *lp = xasprintf("%s/latest", cdir), prev[64] = "";
        FILE *f = fopen(lp, "r");
        if (f) {
            if (!fgets(prev, sizeof prev, f)) prev[0] = 0;
            fclose(f);
            prev[strcspn(prev, "\n")] = 0;
        }
        char *name = xasprintf("step-%06ld\n", step);
        int w = rl_write_atomic(lp, name, strlen(name));
        if (w == 0 && prev[0] && strncmp(prev, name, strlen(prev)) && strcmp(prev, "step-000000")) {
            char *pp = xasprintf("%s/%s", cdir, prev);
            rm_tree(pp);
            free(pp);
        }
        free(name), free(lp);
        if (w != 0) {
            snprintf(err, errlen, "latest: %s", strerror(errno));
            goto out;
        }
    }
    rc = 0;
out:
    if (rc) rm_tree(tmp);
    interrupt_forget_path(slot);
    if (rc == 0) note_resumable(&j->c, step);
    free(cdir), free(final), free(tmp);
    return rc;
}

int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Whether a run directory holds a run (metrics or checkpoints) that a new
 * run would replace; an empty or missing directory holds none. */
int run_dir_has_run(const char *dir) {
    char *m = xasprintf("%s/metrics.jsonl", dir), *k = xasprintf("%s/checkpoints", dir);
    int has = file_exists(m) || file_exists(k);
    free(m), free(k);
    return has;
}

/* The latest checkpoint's directory (malloc'd) and step; NULL if none. */
char *latest_checkpoint(const char *run_dir, long *step) {
    char *lp = xasprintf("%s/checkpoints/latest", run_dir), name[64] = "";
    FILE *f = fopen(lp, "r");
    free(lp);
    if (!f) return NULL;
    if (!fgets(name, sizeof name, f)) name[0] = 0;
    fclose(f);
    name[strcspn(name, "\n")] = 0;
    if (sscanf(name, "step-%ld", step) != 1) return NULL;
    return xasprintf("%s/checkpoints/%s", run_dir, name);
}

int load_optimizer(struct adamw *o, const char *dir, char *err, size_t errlen) {
    char *p = xasprintf("%s/optimizer.bin", dir);
    size_t len;
    char *buf = read_file(p, (size_t)1 << 34, &len, err, errlen);
    free(p);
    if (!buf) return -1;
    uint64_t n;
    int64_t s;
    if (len < 24 || memcmp(buf, "VIVOPT1", 8)) goto bad;
    memcpy(&n, buf + 8, 8), memcpy(&s, buf + 16, 8);
    if (n != o->n || len != 24 + 2 * n * sizeof(float)) goto bad;
    memcpy(o->m, buf + 24, n * sizeof(float));
    memcpy(o->v, buf + 24 + n * sizeof(float), n * sizeof(float));
    o->step = s;
    free(buf);
    return 0;
bad:
    free(buf);
    return snprintf(err, errlen, "%s/optimizer.bin: not an optimizer state for this model", dir), -1;
}

/* Keep the metrics lines of steps <= step (a killed run may have logged
 * steps after its last checkpoint; they are redone). */
int truncate_metrics(const char *run_dir, long step) {
    char *p = xasprintf("%s/metrics.jsonl", run_dir);
    size_t len;
    char err[128];
    char *txt = read_file(p, (size_t)1 << 30, &len, err, sizeof err);
    if (!txt) {
        free(p);
        return 0;
    }
    char *out = xmalloc(len + 1);
    size_t k = 0;
    for (char *line = txt; *line;) {
        char *nl = strchr(line, '\n');
        size_t l = nl ? (size_t)(nl - line + 1) : strlen(line);
        long s = -1;
        const char *q = strstr(line, "\"step\":");
        if (q) s = strtol(q + 7, NULL, 10);
        if (nl && s >= 0 && s <= step) memcpy(out + k, line, l), k += l; /* partial last lines go too */
        line += l;
    }
    int rc = rl_write_atomic(p, out, k);
    free(txt), free(out), free(p);
    return rc;
}
