/*
 * private_vivd.h - a vivd of our own for one command (viv eval, viv train):
 * started from the bin/vivd beside the running viv, on a socket in a fresh
 * temporary directory, with the task data's databases as its @biodb and @db
 * mounts, dying with us (even on SIGKILL), and stopped with SIGTERM.
 */
#ifndef VIV_ENVS_PRIVATE_VIVD_H
#define VIV_ENVS_PRIVATE_VIVD_H

#include <stddef.h>
#include <sys/types.h>

struct private_vivd {
    pid_t pid;
    char dir[64], sock[128], log[128];
    int dir_slot, pid_slot; /* interrupt.h slots + 1 (0: none): Ctrl-C removes both */
};

/* Start it and wait (10 s at most) until it accepts connections. `who`
 * names the command in messages ("viv eval"). When data_dir has no
 * db/org.Hs.eg.sqlite a warning says #!SQL calls will fail. 0, or -1 with
 * err (call private_vivd_stop() either way). */
int private_vivd_start(struct private_vivd *d, const char *data_dir, const char *who, char *err, size_t errlen);

/* The same with the daemon's data mounts given outright: each of data[0..ndata)
 * is a `--data NAME=PATH` of vivd (PATH absolute), e.g. "db=/abs/x.sqlite"
 * for the sql tool. At most 4. */
int private_vivd_start_with_data(struct private_vivd *d, const char *const *data, int ndata, const char *who,
                                 char *err, size_t errlen);

/* SIGTERM (SIGKILL after 10 s), reap, remove the socket directory. */
void private_vivd_stop(struct private_vivd *d);

#endif
