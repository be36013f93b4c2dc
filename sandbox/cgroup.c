/*
 * cgroup.c - memory and pids cgroups for a job, best effort.
 *
 * rlimits bound each process; a cgroup bounds the job as a whole (memory of
 * all its processes and its tmpfs pages; the number of tasks across uids).
 * Whether we may create cgroups depends on the host: root, or a delegated
 * subtree. We look at where this process sits (/proc/self/cgroup) and where
 * the hierarchies are mounted (/proc/self/mountinfo):
 *   v2: a child of our cgroup, if our cgroup offers memory and pids in
 *       cgroup.subtree_control (or lets us enable them);
 *   v1: a child of our cgroup in the memory and pids hierarchies.
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

#include "util.h"

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

/* 1: done; 0: no usable v2 hierarchy offers memory+pids here (try v1);
 * -1: v2 offers them but we could not use them (why[] says how). */
static int try_v2(struct job_cgroup *cg, long memory_mb, long pids, char *why, size_t whylen) {
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
    snprintf(val, sizeof val, "%ld", memory_mb * 1024 * 1024);
    if (write_text(dir, "memory.max", val) || write_text(dir, "pids.max", (snprintf(val, sizeof val, "%ld", pids), val))) {
        snprintf(why, whylen, "cgroup v2: cannot set memory.max/pids.max under %.400s: %s (controllers not enabled for the subtree?)", parent, strerror(errno));
        rmdir(dir);
        return -1;
    }
    write_text(dir, "memory.swap.max", "0");
    snprintf(cg->memory, sizeof cg->memory, "%s", dir);
    snprintf(cg->pids, sizeof cg->pids, "%s", dir);
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

void cgroup_create(struct job_cgroup *cg, long memory_mb, long pids, char *notes,
                   size_t noteslen) {
    memset(cg, 0, sizeof *cg);
    char why[1200] = "";
    int v2 = try_v2(cg, memory_mb, pids, why, sizeof why);
    if (v2 == 1) return;
    char mnt[1024];
    if (v2 == -1 && find_mount("memory", mnt, sizeof mnt) != 0) {
        /* a v2-only host that would not give us a cgroup: say why, once */
        notes_add(notes, noteslen, "%s", why);
        return;
    }
    static bool swept_memory, swept_pids;
    try_v1("memory", cg->memory, sizeof cg->memory, "memory.limit_in_bytes",
           memory_mb * 1024 * 1024, &swept_memory, notes, noteslen);
    try_v1("pids", cg->pids, sizeof cg->pids, "pids.max", pids, &swept_pids, notes, noteslen);
}

void cgroup_attach(struct job_cgroup *cg, pid_t pid, char *notes, size_t noteslen) {
    char val[32];
    snprintf(val, sizeof val, "%d", (int)pid);
    if (cg->memory[0] && write_text(cg->memory, "cgroup.procs", val)) {
        notes_add(notes, noteslen, "cgroup memory: cannot attach the job: %s", strerror(errno));
        rmdir(cg->memory);
        if (strcmp(cg->memory, cg->pids) == 0) cg->pids[0] = 0;
        cg->memory[0] = 0;
    }
    if (cg->pids[0] && strcmp(cg->pids, cg->memory) != 0 && write_text(cg->pids, "cgroup.procs", val)) {
        notes_add(notes, noteslen, "cgroup pids: cannot attach the job: %s", strerror(errno));
        rmdir(cg->pids);
        cg->pids[0] = 0;
    }
}

void cgroup_destroy(struct job_cgroup *cg) {
    /* The reaped job's cgroup can take a moment to report empty. */
    for (int i = 0; i < 100; i++) {
        int busy = 0;
        if (cg->memory[0] && rmdir(cg->memory) != 0 && errno == EBUSY) busy = 1;
        if (cg->pids[0] && strcmp(cg->pids, cg->memory) != 0 && rmdir(cg->pids) != 0 && errno == EBUSY) busy = 1;
        if (!busy) break;
        usleep(1000);
    }
    cg->memory[0] = cg->pids[0] = 0;
}
