/* interrupt.c - see interrupt.h. */
#define _GNU_SOURCE
#include "interrupt.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PATHS 16
#define MAX_CHILDREN 4
#define PATH_LEN 512
#define NOTE_LEN 512

/* Slots are written whole before `used` is set, so the handler never reads
 * half a path. Two note buffers: the handler reads the one `note` points at
 * while the next is written into the other. */
static struct {
    char path[PATH_LEN];
    volatile sig_atomic_t used;
} paths[MAX_PATHS];
static volatile pid_t children[MAX_CHILDREN];
static char notes[2][NOTE_LEN];
static char *volatile note;
static char prefix[64];

static void say(const char *s) {
    if (write(2, s, strlen(s)) < 0) {}
}

/* rm of a file, or of a directory and the entries directly in it */
static void remove_path(const char *p) {
    if (unlink(p) == 0) return;
    int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return;
    char buf[4096];
    long n;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < n;) {
            struct dirent64 *e = (struct dirent64 *)(buf + off);
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(fd, e->d_name, 0);
            off += e->d_reclen;
        }
    }
    close(fd);
    rmdir(p);
}

static void on_interrupt(int sig) {
    (void)sig;
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] > 0) kill(children[i], SIGKILL), waitpid(children[i], NULL, 0);
    int removed = 0;
    for (int i = 0; i < MAX_PATHS; i++)
        if (paths[i].used) remove_path(paths[i].path), removed++;
    say(prefix);
    say(": interrupted; ");
    say(removed ? "temporary files removed; " : "");
    say(note ? note : "nothing was kept");
    say("\n");
    _exit(130);
}

void interrupt_install(const char *prog) {
    snprintf(prefix, sizeof prefix, "%s", prog);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigfillset(&sa.sa_mask); /* one handler run at a time */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int interrupt_track_path(const char *path) {
    for (int i = 0; i < MAX_PATHS; i++)
        if (!paths[i].used && strlen(path) < PATH_LEN) {
            memcpy(paths[i].path, path, strlen(path) + 1);
            paths[i].used = 1;
            return i;
        }
    return -1;
}

void interrupt_forget_path(int slot) {
    if (slot >= 0 && slot < MAX_PATHS) paths[slot].used = 0;
}

int interrupt_track_child(pid_t pid) {
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] <= 0) {
            children[i] = pid;
            return i;
        }
    return -1;
}

void interrupt_forget_child(int slot) {
    if (slot >= 0 && slot < MAX_CHILDREN) children[slot] = 0;
}

void interrupt_note(const char *fmt, ...) {
    char *next = note == notes[0] ? notes[1] : notes[0];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(next, NOTE_LEN, fmt, ap);
    va_end(ap);
    note = next;
}
