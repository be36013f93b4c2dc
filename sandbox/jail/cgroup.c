/*
 * cgroup.c - memory, pids and cpu cgroups for a job, best effort.
 *
 * rlimits bound each process; a cgroup bounds the job as a whole (memory of
 * all its processes and its tmpfs pages; the number of tasks across uids;
 * its share of contended CPU and the CPU time it has used).
 * Whether we may create cgroups depends on the host: root, or a delegated
 * subtree. We look at where this process sits (/proc/self/cgroup) and where
 * the hierarchies are mounted (/proc/self/mountinfo):
 *   v2: a child of our cgroup, if our cgroup offers memory and pids in
 *       cgroup.subtree_control (or lets us enable them), with cpu too where
 *       it is offered; its cpu.stat counts CPU time with or without it;
 *   v1: a child of our cgroup in the memory, pids, cpu and cpuacct
 *       hierarchies (one directory where cpu and cpuacct share a mount).
 * Why a cpu cgroup: without one the job's processes sit in the root task
 * group, where the scheduler shares CPU per session (autogroup), so a job
 * that calls setsid() in each of many spinners takes that many shares. In
 * a task group of its own the job has one share, whatever it forks, because
 * autogroups apply only to the root group.
 * Anything that fails becomes a note in the job's result
 * ("limits_not_applied"), never a silent gap and never a refusal to run.
 */
#define _GNU_SOURCE
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/util.h"

void notes_add(char *notes, size_t len, const char *fmt, ...) {
    size_t used = strlen(notes);
    if (used && used + 2 < len) {
        strcat(notes, "; ");
        used += 2;
    }
    if (used >= len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(notes + used, len - used, fmt, ap);
    va_end(ap);
}

static int write_text(const char *dir, const char *file, const char *text) {
    char path[640];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = write_all(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* Mount point of the v1 hierarchy carrying `controller` (or of the v2
 * hierarchy when controller is NULL). */
static int find_mount(const char *controller, char *out, size_t outlen) {
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) return -1;
    char line[4096];
    int found = -1;
    while (found && fgets(line, sizeof line, f)) {
        /* id parent maj:min root mountpoint opts... - fstype source superopts */
        char mnt[1024], fstype[64], superopts[1024];
        char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %*s %1023s", mnt) != 1) continue;
        if (sscanf(dash + 3, "%63s %*s %1023s", fstype, superopts) != 2) continue;
        if (controller == NULL && strcmp(fstype, "cgroup2") == 0) found = 0;
        if (controller && strcmp(fstype, "cgroup") == 0) {
            for (char *tok = strtok(superopts, ","); tok; tok = strtok(NULL, ","))
                if (strcmp(tok, controller) == 0) found = 0;
        }
        if (!found) snprintf(out, outlen, "%s", mnt);
    }
    fclose(f);
    return found;
}

/* Our path in the hierarchy: v2 ("0::/path") when controller is NULL. */
static int own_path(const char *controller, char *out, size_t outlen) {
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f) return -1;
    char line[2048];
    int found = -1;
    while (found && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        const char *ctrls = c1 + 1, *path = c2 + 1;
        if (controller == NULL && strcmp(line, "0") == 0 && *ctrls == 0) found = 0;
        if (controller) {
            char tmp[256];
            snprintf(tmp, sizeof tmp, "%s", ctrls);
            for (char *tok = strtok(tmp, ","); tok; tok = strtok(NULL, ","))
                if (strcmp(tok, controller) == 0) found = 0;
        }
        if (!found) snprintf(out, outlen, "%s", strcmp(path, "/") == 0 ? "" : path);
    }
    fclose(f);
    return found;
}

static unsigned long job_counter;

/* A supervisor killed with SIGKILL cannot remove its job's cgroup. Each new
 * job removes such leftovers: "viv-PID-N" directories whose PID is gone
 * (rmdir fails harmlessly on a cgroup that still has tasks). */
static void sweep_stale(const char *parent) {
    DIR *d = opendir(parent);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid;
        unsigned long n;
        if (sscanf(e->d_name, "viv-%d-%lu", &pid, &n) != 2 || pid <= 0) continue;
        if (kill(pid, 0) == 0 || errno != ESRCH) continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
        rmdir(path);
    }
    closedir(d);
}

static int make_job_dir(const char *mnt, const char *own, char *out, size_t outlen, bool *swept) {
    char parent[1100];
    snprintf(parent, sizeof parent, "%s%s", mnt, own);
    if (!*swept) sweep_stale(parent), *swept = true; /* once per process and hierarchy */
    snprintf(out, outlen, "%s%s/viv-%d-%lu", mnt, own, (int)getpid(), job_counter++);
    if (mkdir(out, 0755) == 0) return 0;
    int e = errno;
    out[0] = 0;
    errno = e;
    return -1;
}

/* v2: the cpu controller in the job's cgroup, at the policy's weight. */
static void v2_cpu(struct job_cgroup *cg, const char *parent, const char *controllers,
                   const char *dir, long weight, char *notes, size_t noteslen) {
    if (!strstr(controllers, " cpu ")) {
        notes_add(notes, noteslen, "cgroup cpu: %.400s does not offer the cpu controller (no fair CPU share for the job)", parent);
        return;
    }
    write_text(parent, "cgroup.subtree_control", "+cpu"); /* may already be on */
    char val[32];
    snprintf(val, sizeof val, "%ld", weight);
    if (write_text(dir, "cpu.weight", val)) {
        notes_add(notes, noteslen, "cgroup cpu: cannot set cpu.weight under %.400s: %s (controller not enabled for the subtree?)", parent, strerror(errno));
        return;
    }
    snprintf(cg->cpu, sizeof cg->cpu, "%s", dir);
}

/* 1: done; 0: no usable v2 hierarchy offers memory+pids here (try v1);
 * -1: v2 offers them but we could not use them (why[] says how). */
static int try_v2(struct job_cgroup *cg, const struct cgroup_limits *lim, char *why, size_t whylen,
                  char *notes, size_t noteslen) {
    char mnt[1024], own[1024], parent[2100], ctrl[256] = "";
    if (find_mount(NULL, mnt, sizeof mnt) || own_path(NULL, own, sizeof own)) return 0;
    snprintf(parent, sizeof parent, "%s%s", mnt, own);
    char path[2200];
    snprintf(path, sizeof path, "%s/cgroup.controllers", parent);
    size_t n;
    char e[64];
    char *text = read_file(path, 4096, &n, e, sizeof e);
    if (!text) return 0;
    snprintf(ctrl, sizeof ctrl, " %s ", text);
    free(text);
    for (char *p = ctrl; *p; p++)
        if (*p == '\n') *p = ' ';
    if (!strstr(ctrl, " memory ") || !strstr(ctrl, " pids ")) return 0;
    write_text(parent, "cgroup.subtree_control", "+memory +pids"); /* may already be on */
    char dir[512];
    static bool swept;
    if (make_job_dir(mnt, own, dir, sizeof dir, &swept)) {
        snprintf(why, whylen, "cgroup v2: cannot create a job cgroup under %.400s: %s (no delegated subtree?)", parent, strerror(errno));
        return -1;
    }
    char val[64];
    snprintf(val, sizeof val, "%ld", lim->memory_mb * 1024 * 1024);
    if (write_text(dir, "memory.max", val) || write_text(dir, "pids.max", (snprintf(val, sizeof val, "%ld", lim->pids), val))) {
        snprintf(why, whylen, "cgroup v2: cannot set memory.max/pids.max under %.400s: %s (controllers not enabled for the subtree?)", parent, strerror(errno));
        rmdir(dir);
        return -1;
    }
    write_text(dir, "memory.swap.max", "0");
    snprintf(cg->memory, sizeof cg->memory, "%s", dir);
    snprintf(cg->pids, sizeof cg->pids, "%s", dir);
    snprintf(cg->usage, sizeof cg->usage, "%s", dir);
    cg->usage_v2 = true;
    v2_cpu(cg, parent, ctrl, dir, lim->cpu_weight, notes, noteslen);
    return 1;
}

static void try_v1(const char *controller, char *out, size_t outlen, const char *file,
                   long value, bool *swept, char *notes, size_t noteslen) {
    char mnt[1024], own[1024];
    if (find_mount(controller, mnt, sizeof mnt) || own_path(controller, own, sizeof own)) {
        notes_add(notes, noteslen, "cgroup %s: no hierarchy for it on this host", controller);
        return;
    }
    if (make_job_dir(mnt, own, out, outlen, swept)) {
        notes_add(notes, noteslen, "cgroup %s: cannot create a job cgroup under %s%s: %s",
                  controller, mnt, own, strerror(errno));
        return;
    }
    if (!file) return; /* accounting only: nothing to set */
    char val[64];
    snprintf(val, sizeof val, "%ld", value);
    if (write_text(out, file, val)) {
        notes_add(notes, noteslen, "cgroup %s: cannot set %s: %s", controller, file, strerror(errno));
        rmdir(out);
        out[0] = 0;
        return;
    }
    if (strcmp(controller, "memory") == 0) write_text(out, "memory.memsw.limit_in_bytes", val);
}

/* v1: cpu.shares (1024 is the kernel's default, our weight 100) in the cpu
 * hierarchy, CPU time from cpuacct.usage in the cpuacct one. */
static void v1_cpu(struct job_cgroup *cg, long weight, char *notes, size_t noteslen) {
    static bool swept_cpu, swept_cpuacct;
    long shares = weight * 1024 / 100;
    try_v1("cpu", cg->cpu, sizeof cg->cpu, "cpu.shares", shares < 2 ? 2 : shares, &swept_cpu,
           notes, noteslen);
    char cpu_mnt[1024], acct_mnt[1024];
    if (cg->cpu[0] && find_mount("cpu", cpu_mnt, sizeof cpu_mnt) == 0 &&
        find_mount("cpuacct", acct_mnt, sizeof acct_mnt) == 0 && strcmp(cpu_mnt, acct_mnt) == 0) {
        snprintf(cg->usage, sizeof cg->usage, "%s", cg->cpu); /* "cpu,cpuacct": one directory */
        return;
    }
    try_v1("cpuacct", cg->usage, sizeof cg->usage, NULL, 0, &swept_cpuacct, notes, noteslen);
}

void cgroup_create(struct job_cgroup *cg, const struct cgroup_limits *lim, char *notes,
                   size_t noteslen) {
    memset(cg, 0, sizeof *cg);
    char why[1200] = "";
    int v2 = try_v2(cg, lim, why, sizeof why, notes, noteslen);
    if (v2 == 1) return;
    char mnt[1024];
    if (v2 == -1 && find_mount("memory", mnt, sizeof mnt) != 0) {
        /* a v2-only host that would not give us a cgroup: say why, once */
        notes_add(notes, noteslen, "%s", why);
        notes_add(notes, noteslen, "cgroup cpu: no job cgroup (no fair CPU share, no CPU accounting across processes)");
        return;
    }
    static bool swept_memory, swept_pids;
    try_v1("memory", cg->memory, sizeof cg->memory, "memory.limit_in_bytes",
           lim->memory_mb * 1024 * 1024, &swept_memory, notes, noteslen);
    try_v1("pids", cg->pids, sizeof cg->pids, "pids.max", lim->pids, &swept_pids, notes, noteslen);
    v1_cpu(cg, lim->cpu_weight, notes, noteslen);
}

double cgroup_cpu_ms(const struct job_cgroup *cg) {
    if (!cg->usage[0]) return -1;
    char path[600], e[64];
    snprintf(path, sizeof path, "%s/%s", cg->usage, cg->usage_v2 ? "cpu.stat" : "cpuacct.usage");
    size_t n;
    char *text = read_file(path, 4096, &n, e, sizeof e);
    if (!text) return -1;
    double ms = -1;
    if (!cg->usage_v2) {
        ms = strtod(text, NULL) / 1e6; /* ns */
    } else {
        const char *s = strstr(text, "usage_usec ");
        if (s) ms = strtod(s + 11, NULL) / 1e3;
    }
    free(text);
    return ms;
}

/* The job's cgroup directories by role; a v2 job has one directory in
 * several roles, a v1 job one per hierarchy. */
enum { CG_ROLES = 4 };
static const char *const role_names[CG_ROLES] = {"memory", "pids", "cpu", "cpuacct"};

static void roles(struct job_cgroup *cg, char *dirs[CG_ROLES]) {
    dirs[0] = cg->memory, dirs[1] = cg->pids, dirs[2] = cg->cpu, dirs[3] = cg->usage;
}

/* Is dirs[i] a directory an earlier role already has? */
static bool seen_before(char *const dirs[CG_ROLES], int i) {
    for (int j = 0; j < i; j++)
        if (strcmp(dirs[j], dirs[i]) == 0) return true;
    return false;
}

void cgroup_attach(struct job_cgroup *cg, pid_t pid, char *notes, size_t noteslen) {
    char val[32], *dirs[CG_ROLES];
    snprintf(val, sizeof val, "%d", (int)pid);
    roles(cg, dirs);
    for (int i = 0; i < CG_ROLES; i++) {
        if (!dirs[i][0] || seen_before(dirs, i) || write_text(dirs[i], "cgroup.procs", val) == 0)
            continue;
        int e = errno;
        char gone[512], names[64] = "";
        snprintf(gone, sizeof gone, "%s", dirs[i]);
        rmdir(gone);
        for (int j = i; j < CG_ROLES; j++) /* every role this directory had goes */
            if (strcmp(dirs[j], gone) == 0) {
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? "+" : "", role_names[j]);
                dirs[j][0] = 0;
            }
        notes_add(notes, noteslen, "cgroup %s: cannot attach the job: %s", names, strerror(e));
    }
}

void cgroup_destroy(struct job_cgroup *cg) {
    char *dirs[CG_ROLES];
    roles(cg, dirs);
    /* The reaped job's cgroup can take a moment to report empty. */
    for (int t = 0; t < 100; t++) {
        int busy = 0;
        for (int i = 0; i < CG_ROLES; i++)
            if (dirs[i][0] && !seen_before(dirs, i) && rmdir(dirs[i]) != 0 && errno == EBUSY) busy = 1;
        if (!busy) break;
        usleep(1000);
    }
    for (int i = 0; i < CG_ROLES; i++) dirs[i][0] = 0;
}
