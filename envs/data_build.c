/*
 * data_build.c - fetch, extract, generate, verify, write.
 *
 * The databases come from Debian's r-bioc-org.hs.eg.db and r-bioc-go.db
 * (Bioconductor annotation packages: pure data, architecture "all").
 * `apt-get download` needs only the binary package lists and a mirror (no
 * deb-src, no root), and `dpkg -x` unpacks a .deb without installing it, so
 * R is never needed. A re-run reuses the cached .debs and, when the manifest
 * says the extracted files came from the same .debs and their checksums
 * still match, the extracted files too.
 */
#define _GNU_SOURCE
#include "data_build.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../sandbox/base/util.h"
#include "biodb.h"
#include "gen.h"
#include "verify.h"

struct dbpkg {
    const char *package; /* Debian package */
    const char *file;    /* the SQLite file it ships, by name */
};
static const struct dbpkg dbpkgs[] = {
    {"r-bioc-org.hs.eg.db", "org.Hs.eg.sqlite"},
    {"r-bioc-go.db", "GO.sqlite"},
};
#define NPKG 2

struct pkgstate {
    char *deb;     /* path of the .deb */
    char *version; /* its Version field */
    char sha_deb[65], sha_db[65];
    long long db_bytes;
    bool reused;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("viv data: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int data_size_parse(const char *s, int want[NSPLITS], int want_mc[NSPLITS], char *err, size_t errlen) {
    long n;
    if (strcmp(s, "default") == 0) {
        /* small, except 1000/125/125 of the two multiple-choice shapes: the
         * main job (viv train) trains on them, and a model learns from
         * scratch only with a couple of thousand distinct tasks (measured:
         * 800 train tasks, 400 SFT steps: held-out 0.22 = chance; 2000
         * tasks: 0.99). They verify fast (~25 ms each). */
        want[0] = 60, want[1] = 15, want[2] = 15;
        want_mc[0] = 1000, want_mc[1] = 125, want_mc[2] = 125;
        return 0;
    }
    if (strcmp(s, "small") == 0) want[0] = 60, want[1] = 15, want[2] = 15;
    else if (strcmp(s, "medium") == 0) want[0] = 400, want[1] = 60, want[2] = 60;
    else if (strcmp(s, "large") == 0) want[0] = 3000, want[1] = 300, want[2] = 300;
    else if (parse_long(s, 1, 100000, &n) == 0) {
        /* N train tasks per shape; val and test an eighth of that each (at least 2) */
        want[0] = (int)n;
        want[1] = want[2] = n / 8 > 2 ? (int)(n / 8) : 2;
    } else {
        snprintf(err, errlen, "--size '%s': use default, small, medium, large or a number of train tasks per "
                              "shape (1-100000)", s);
        return -1;
    }
    memcpy(want_mc, want, NSPLITS * sizeof *want);
    return 0;
}

static bool multiple_choice_shape(const char *name) { return !strcmp(name, "dbqa") || !strcmp(name, "seqqa"); }

/* Run argv (in cwd if given), stdout into *out if out != NULL (else
 * inherited), stderr inherited. Returns the exit status, or -1 (errno) if it
 * could not start, or 127 when the program is missing. */
static int run_cmd(char *const argv[], const char *cwd, char **out) {
    int p[2] = {-1, -1};
    if (out && pipe2(p, O_CLOEXEC) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (out) dup2(p[1], 1);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        if (cwd && chdir(cwd) != 0) _exit(126);
        execvp(argv[0], argv);
        _exit(127);
    }
    if (out) {
        close(p[1]);
        size_t cap = 4096, n = 0;
        char *buf = xmalloc(cap);
        for (;;) {
            if (cap - n < 1024) buf = xrealloc(buf, cap *= 2);
            ssize_t r = read(p[0], buf + n, cap - n - 1);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            n += (size_t)r;
        }
        buf[n] = 0;
        close(p[0]);
        *out = buf;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* sha256 of a file with coreutils' sha256sum. 0 or -1. */
static int sha256_file(const char *path, char hex[65]) {
    char *out = NULL;
    char *argv[] = {"sha256sum", "-b", (char *)path, NULL};
    int rc = run_cmd(argv, NULL, &out);
    if (rc != 0 || strlen(out) < 64) {
        free(out);
        return -1;
    }
    memcpy(hex, out, 64);
    hex[64] = 0;
    free(out);
    return 0;
}

static int mkdir_p(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return errno = ENAMETOOLONG, -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    struct stat st;
    if (stat(buf, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) return errno = ENOTDIR, -1;
    return 0;
}

/* The newest-named <package>_*.deb in dir, or NULL. */
static char *find_deb(const char *dir, const char *package) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char *best = NULL;
    size_t pl = strlen(package);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > pl + 5 && strncmp(e->d_name, package, pl) == 0 && e->d_name[pl] == '_' &&
            strcmp(e->d_name + n - 4, ".deb") == 0 && (!best || strcmp(e->d_name, best) > 0)) {
            free(best);
            best = xstrdup(e->d_name);
        }
    }
    closedir(d);
    if (!best) return NULL;
    char *path = xasprintf("%s/%s", dir, best);
    free(best);
    return path;
}

static int fetch_debs(const char *debs, struct pkgstate *st) {
    char *missing[NPKG + 4];
    int nm = 0;
    missing[nm++] = "apt-get";
    missing[nm++] = "download";
    missing[nm++] = "-q";
    for (int i = 0; i < NPKG; i++)
        if (!(st[i].deb = find_deb(debs, dbpkgs[i].package))) missing[nm++] = (char *)dbpkgs[i].package;
    missing[nm] = NULL;
    if (nm == 3) return 0;
    say("apt-get download %s%s%s (into %s)", missing[3], nm > 4 ? " " : "", nm > 4 ? missing[4] : "", debs);
    int rc = run_cmd(missing, debs, NULL);
    if (rc == 127) {
        say("error: apt-get is not installed: the databases come from Debian packages. Put %s%s%s "
            "(.deb files) into %s yourself, or run on Debian.",
            dbpkgs[0].package, " and ", dbpkgs[1].package, debs);
        return -1;
    }
    for (int i = 0; i < NPKG; i++)
        if (!st[i].deb && !(st[i].deb = find_deb(debs, dbpkgs[i].package))) {
            say("error: apt-get download %s failed (exit %d). It needs the package in apt's lists "
                "(Debian main, bookworm or later; run apt-get update) and network access to a Debian "
                "mirror; deb-src entries are not needed. Without network, copy the .deb into %s.",
                dbpkgs[i].package, rc, debs);
            return -1;
        }
    return 0;
}

static const char *find_target;
static char *found_path;
static int find_cb(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb, (void)ftw;
    if (type == FTW_F && strcmp(path + ftw->base, find_target) == 0) {
        found_path = xstrdup(path);
        return 1;
    }
    return 0;
}
static int rm_cb(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb, (void)type, (void)ftw;
    remove(path);
    return 0;
}

/* dpkg -x the .deb into a scratch dir under out, move the SQLite file to
 * db/<file>, remove the rest. */
static int extract(const char *out, const struct dbpkg *pk, struct pkgstate *st) {
    char *tmp = xasprintf("%s/.extract-%d", out, (int)getpid());
    char *dst = xasprintf("%s/db/%s", out, pk->file);
    int rc = -1;
    char *argv[] = {"dpkg", "-x", st->deb, tmp, NULL};
    say("dpkg -x %s", st->deb);
    int r = run_cmd(argv, NULL, NULL);
    if (r != 0) {
        say("error: dpkg -x %s failed (exit %d)%s", st->deb, r, r == 127 ? ": dpkg is not installed" : "");
        goto done;
    }
    find_target = pk->file;
    found_path = NULL;
    nftw(tmp, find_cb, 16, FTW_PHYS);
    if (!found_path) {
        say("error: %s has no file named %s", st->deb, pk->file);
        goto done;
    }
    chmod(found_path, 0444);
    if (rename(found_path, dst) != 0) {
        say("error: rename %s -> %s: %s", found_path, dst, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(found_path);
    found_path = NULL;
    free(tmp);
    free(dst);
    return rc;
}

/* The entry for `file` in an earlier manifest, if any. */
static const cJSON *old_entry(const cJSON *manifest, const char *file) {
    const cJSON *dbs = cJSON_GetObjectItemCaseSensitive(manifest, "databases"), *e;
    cJSON_ArrayForEach(e, dbs) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "file");
        if (cJSON_IsString(f) && strcmp(f->valuestring, file) == 0) return e;
    }
    return NULL;
}

static bool str_field_is(const cJSON *o, const char *key, const char *want) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}

/* Scratch dirs left by an interrupted extraction. */
static void remove_stale_scratch(const char *out) {
    DIR *d = opendir(out);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, ".extract-", 9) == 0) {
            char *path = xasprintf("%s/%s", out, e->d_name);
            nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
            free(path);
        }
    closedir(d);
}

static int prepare_databases(const char *out, const char *debs, struct pkgstate *st) {
    remove_stale_scratch(out);
    if (fetch_debs(debs, st)) return -1;
    char *mpath = xasprintf("%s/MANIFEST.json", out);
    char err[256];
    char *text = read_file(mpath, 1 << 20, NULL, err, sizeof err);
    cJSON *old = text ? cJSON_Parse(text) : NULL;
    free(text);
    free(mpath);
    int rc = -1;
    for (int i = 0; i < NPKG; i++) {
        char *argv[] = {"dpkg-deb", "-f", st[i].deb, "Version", NULL};
        if (run_cmd(argv, NULL, &st[i].version) != 0) {
            say("error: dpkg-deb -f %s Version failed: is it a .deb?", st[i].deb);
            goto done;
        }
        st[i].version[strcspn(st[i].version, "\n")] = 0;
        if (sha256_file(st[i].deb, st[i].sha_deb)) {
            say("error: sha256sum %s failed", st[i].deb);
            goto done;
        }
        char *dst = xasprintf("%s/db/%s", out, dbpkgs[i].file);
        const cJSON *e = old_entry(old, dbpkgs[i].file);
        struct stat sb;
        if (e && str_field_is(e, "deb_sha256", st[i].sha_deb) && stat(dst, &sb) == 0 &&
            sha256_file(dst, st[i].sha_db) == 0 && str_field_is(e, "sha256", st[i].sha_db)) {
            st[i].reused = true;
        } else if (extract(out, &dbpkgs[i], &st[i]) || sha256_file(dst, st[i].sha_db)) {
            free(dst);
            goto done;
        }
        if (stat(dst, &sb) == 0) st[i].db_bytes = (long long)sb.st_size;
        say("%s %s: %s (%lld bytes, sha256 %.16s...)%s", dbpkgs[i].package, st[i].version, dst,
            st[i].db_bytes, st[i].sha_db, st[i].reused ? ", reused" : "");
        free(dst);
    }
    rc = 0;
done:
    cJSON_Delete(old);
    return rc;
}

/* When viv runs as root, jobs run as an unprivileged host uid (see
 * sandbox/jail/namespaces.c), which must be able to walk down to the databases. */
static int check_reachable(const char *dir) {
    if (geteuid() != 0) return 0;
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        struct stat st;
        if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode) && !(st.st_mode & S_IXOTH)) {
            say("error: %s is mode %04o: sandboxed jobs run as an unprivileged user when viv runs as root, "
                "and cannot reach the databases under it. chmod o+x it, or choose another --out.",
                buf, (unsigned)(st.st_mode & 07777));
            return -1;
        }
        if (!c) return 0;
        *p = c;
    }
}

struct shape_count {
    int generated[NSPLITS], kept[NSPLITS];
    long attempts;
};

static int write_tasks(const char *out, const struct tasklist *l, int *kept_total) {
    char *dir = xasprintf("%s/tasks", out);
    if (mkdir_p(dir) != 0) {
        say("error: mkdir %s: %s", dir, strerror(errno));
        free(dir);
        return -1;
    }
    int rc = 0;
    *kept_total = 0;
    for (int s = 0; s < NSPLITS && rc == 0; s++) {
        struct sb text = {0};
        for (int gi = 0; generators[gi].task_name; gi++) {
            int n = 0;
            for (size_t i = 0; i < l->n; i++) {
                const struct task *t = &l->v[i];
                if (!t->verified || (int)t->split != s || strcmp(t->task_name, generators[gi].task_name)) continue;
                char id[128];
                snprintf(id, sizeof id, "viv-%s-%s-%d", t->task_name, split_names[s], n++);
                char *line = task_to_json(t, id);
                sb_puts(&text, line);
                sb_puts(&text, "\n");
                free(line);
                (*kept_total)++;
            }
        }
        char *path = xasprintf("%s/%s.jsonl", dir, split_names[s]);
        char *body = sb_take(&text);
        if (write_file_atomic(path, body, strlen(body)) != 0) {
            say("error: write %s: %s", path, strerror(errno));
            rc = -1;
        }
        free(body);
        free(path);
    }
    free(dir);
    return rc;
}

static int write_manifest(const struct build_opts *o, const char *out, const struct pkgstate *st,
                          const struct shape_count *counts, double seconds) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "format", 1);
    cJSON *pk = cJSON_AddArrayToObject(m, "packages");
    cJSON *dbs = cJSON_AddArrayToObject(m, "databases");
    for (int i = 0; i < NPKG; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", dbpkgs[i].package);
        cJSON_AddStringToObject(p, "version", st[i].version);
        const char *base = strrchr(st[i].deb, '/');
        cJSON_AddStringToObject(p, "deb", base ? base + 1 : st[i].deb);
        cJSON_AddStringToObject(p, "sha256", st[i].sha_deb);
        cJSON_AddItemToArray(pk, p);
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "file", dbpkgs[i].file);
        char *rel = xasprintf("db/%s", dbpkgs[i].file);
        cJSON_AddStringToObject(d, "path", rel);
        free(rel);
        cJSON_AddStringToObject(d, "sha256", st[i].sha_db);
        cJSON_AddNumberToObject(d, "bytes", (double)st[i].db_bytes);
        cJSON_AddStringToObject(d, "package", dbpkgs[i].package);
        cJSON_AddStringToObject(d, "deb_sha256", st[i].sha_deb);
        cJSON_AddItemToArray(dbs, d);
    }
    cJSON *b = cJSON_AddObjectToObject(m, "build");
    cJSON_AddNumberToObject(b, "seed", (double)o->seed);
    cJSON_AddStringToObject(b, "size", o->size_name);
    cJSON_AddStringToObject(b, "shapes", o->shapes ? o->shapes : "all");
    cJSON *per = cJSON_AddObjectToObject(b, "requested_per_shape");
    for (int s = 0; s < NSPLITS; s++) cJSON_AddNumberToObject(per, split_names[s], o->want[s]);
    cJSON *per_mc = cJSON_AddObjectToObject(b, "requested_per_multiple_choice_shape");
    for (int s = 0; s < NSPLITS; s++) cJSON_AddNumberToObject(per_mc, split_names[s], o->want_mc[s]);
    cJSON_AddNumberToObject(b, "seconds", seconds);
    cJSON *t = cJSON_AddObjectToObject(m, "tasks");
    for (int gi = 0; generators[gi].task_name; gi++) {
        cJSON *shape = cJSON_AddObjectToObject(t, generators[gi].task_name);
        for (int s = 0; s < NSPLITS; s++) {
            cJSON *c = cJSON_AddObjectToObject(shape, split_names[s]);
            cJSON_AddNumberToObject(c, "generated", counts[gi].generated[s]);
            cJSON_AddNumberToObject(c, "kept", counts[gi].kept[s]);
            cJSON_AddNumberToObject(c, "dropped", counts[gi].generated[s] - counts[gi].kept[s]);
        }
    }
    char *text = cJSON_Print(m);
    cJSON_Delete(m);
    char *path = xasprintf("%s/MANIFEST.json", out);
    size_t n = strlen(text);
    text = xrealloc(text, n + 2);
    text[n] = '\n', text[n + 1] = 0;
    int rc = write_file_atomic(path, text, n + 1);
    if (rc) say("error: write %s: %s", path, strerror(errno));
    free(text);
    free(path);
    return rc;
}

bool shape_selected(const char *list, const char *name) {
    if (!list) return true;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return true;
        p += len + (e != NULL);
    }
    return false;
}

int data_shapes_check(const char *list, char *err, size_t errlen) {
    if (!*list) return snprintf(err, errlen, "--shapes: empty list"), -1;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int known = 0;
        for (int gi = 0; generators[gi].task_name; gi++)
            known |= strlen(generators[gi].task_name) == len && !strncmp(generators[gi].task_name, p, len);
        if (!known) return snprintf(err, errlen, "--shapes: unknown task shape '%.*s'", (int)len, p), -1;
        p += len + (e != NULL);
    }
    return 0;
}

int data_build(const struct build_opts *o) {
    double t0 = now_ms();
    if (mkdir_p(o->out) != 0) {
        say("error: --out '%s': %s", o->out, strerror(errno));
        return -1;
    }
    char out[PATH_MAX];
    if (!realpath(o->out, out) || access(out, W_OK) != 0) {
        say("error: --out '%s': %s", o->out, strerror(errno));
        return -1;
    }
    char *debs = o->debs ? xstrdup(o->debs) : xasprintf("%s/debs", out);
    char *dbdir = xasprintf("%s/db", out);
    struct pkgstate st[NPKG] = {0};
    struct tasklist tasks = {0};
    struct biodb db = {0};
    struct shape_count counts[16] = {0};
    int rc = -1;
    if (mkdir_p(debs) != 0 || mkdir_p(dbdir) != 0) {
        say("error: mkdir %s: %s", mkdir_p(debs) ? debs : dbdir, strerror(errno));
        goto done;
    }
    chmod(dbdir, 0755); /* whatever the umask: the jail's user reads it */
    if (check_reachable(dbdir) || prepare_databases(out, debs, st)) goto done;

    char err[1024];
    char *org = xasprintf("%s/org.Hs.eg.sqlite", dbdir), *go = xasprintf("%s/GO.sqlite", dbdir);
    double t1 = now_ms();
    int lrc = biodb_load(&db, org, go, err, sizeof err);
    free(org);
    free(go);
    if (lrc) {
        say("error: reading the databases: %s", err);
        goto done;
    }
    say("loaded %d genes, %d loci, %d GO terms in %.1f s", db.ngenes, db.nloci, db.nterms, (now_ms() - t1) / 1e3);

    for (int gi = 0; generators[gi].task_name; gi++) {
        if (!shape_selected(o->shapes, generators[gi].task_name)) continue;
        struct gen_ctx g = {.task_name = generators[gi].task_name, .out = &tasks};
        g.rng = rng_seed(o->seed, g.task_name);
        memcpy(g.want, multiple_choice_shape(g.task_name) ? o->want_mc : o->want, sizeof g.want);
        generators[gi].fn(&db, &g);
        memcpy(counts[gi].generated, g.have, sizeof g.have);
        counts[gi].attempts = g.attempts;
        free(g.seen);
        say("%-23s generated %d/%d/%d (train/val/test) in %ld attempts%s", g.task_name, g.have[0], g.have[1],
            g.have[2], g.attempts, gen_done(&g) ? "" : " (quota not met: ran out of attempts)");
    }

    struct verify_opts vo = {.db_dir = dbdir, .jobs = o->jobs, .timeout_ms = 30000, .progress = o->progress};
    say("verifying %zu reference solutions in the sandbox (%d workers)", tasks.n, o->jobs);
    if (verify_tasks(&tasks, &vo, err, sizeof err)) {
        say("error: verification: %s", err);
        goto done;
    }
    for (size_t i = 0; i < tasks.n; i++) {
        const struct task *t = &tasks.v[i];
        for (int gi = 0; generators[gi].task_name; gi++)
            if (strcmp(generators[gi].task_name, t->task_name) == 0 && t->verified) counts[gi].kept[t->split]++;
        if (!t->verified) say("dropped %s task %zu: %s", t->task_name, i, t->why);
    }
    int kept;
    if (write_tasks(out, &tasks, &kept)) goto done;
    double secs = (now_ms() - t0) / 1e3;
    if (write_manifest(o, out, st, counts, secs)) goto done;
    for (int gi = 0; generators[gi].task_name; gi++) {
        const struct shape_count *c = &counts[gi];
        say("%-23s kept %d/%d/%d, dropped %d", generators[gi].task_name, c->kept[0], c->kept[1], c->kept[2],
            c->generated[0] + c->generated[1] + c->generated[2] - c->kept[0] - c->kept[1] - c->kept[2]);
    }
    say("wrote %d tasks to %s/tasks in %.1f s", kept, out, secs);
    rc = 0;
done:
    for (int i = 0; i < NPKG; i++) free(st[i].deb), free(st[i].version);
    tasklist_free(&tasks);
    biodb_free(&db);
    free(debs);
    free(dbdir);
    return rc;
}
