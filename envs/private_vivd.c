/* private_vivd.c - see private_vivd.h. */
#define _GNU_SOURCE
#include "private_vivd.h"
#include "../sandbox/base/interrupt.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../sandbox/client/client.h"
#include "../sandbox/base/util.h"

int private_vivd_start(struct private_vivd *d, const char *data_dir, const char *who, char *err, size_t errlen) {
    char *db = NULL, *biodb = NULL;
    char *dbdir = xasprintf("%s/db", data_dir), *genes = xasprintf("%s/db/org.Hs.eg.sqlite", data_dir);
    char absdir[PATH_MAX], absgenes[PATH_MAX];
    if (realpath(dbdir, absdir) && realpath(genes, absgenes)) {
        biodb = xasprintf("biodb=%s", absdir);
        db = xasprintf("db=%s", absgenes);
    } else {
        fprintf(stderr, "%s: warning: no %s: #!SQL calls will fail (viv data build makes it)\n", who, genes);
    }
    free(dbdir), free(genes);
    const char *data[2] = {biodb, db};
    int rc = private_vivd_start_with_data(d, data, db ? 2 : 0, who, err, errlen);
    free(db), free(biodb);
    return rc;
}

int private_vivd_start_with_data(struct private_vivd *d, const char *const *data, int ndata, const char *who,
                                 char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    if (ndata < 0 || ndata > 4) return snprintf(err, errlen, "%s: at most 4 data mounts", who), -1;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) return snprintf(err, errlen, "cannot find my own binary: %s", strerror(errno)), -1;
    self[n] = 0;
    char *vivd = xasprintf("%s/vivd", dirname(self));
    if (access(vivd, X_OK) != 0) {
        snprintf(err, errlen, "%s: %s (build it, or pass --socket of a running vivd)", vivd, strerror(errno));
        free(vivd);
        return -1;
    }
    snprintf(d->dir, sizeof d->dir, "/tmp/viv-XXXXXX");
    if (!mkdtemp(d->dir)) {
        d->dir[0] = 0;
        free(vivd);
        return snprintf(err, errlen, "mkdtemp: %s", strerror(errno)), -1;
    }
    d->dir_slot = interrupt_track_path(d->dir) + 1;
    snprintf(d->sock, sizeof d->sock, "%s/vivd.sock", d->dir);
    snprintf(d->log, sizeof d->log, "%s/vivd.log", d->dir);
    /* our own daemon: its one client may sit idle for minutes between
     * phases (SFT, evaluation), so idle connections are not closed (24 h) */
    const char *argv[16] = {vivd, "--socket", d->sock, "--log", d->log, "--idle-ms", "86400000"};
    int k = 7;
    for (int i = 0; i < ndata; i++) argv[k++] = "--data", argv[k++] = data[i];
    argv[k] = NULL;
    d->pid = fork();
    if (d->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* the daemon dies with us, even when we are SIGKILLed */
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) dup2(nul, 0), dup2(nul, 1), dup2(nul, 2);
        execv(vivd, (char *const *)argv);
        _exit(127);
    }
    free(vivd);
    if (d->pid > 0) d->pid_slot = interrupt_track_child(d->pid) + 1;
    if (d->pid < 0) {
        d->pid = 0;
        return snprintf(err, errlen, "fork: %s", strerror(errno)), -1;
    }
    for (int i = 0; i < 1000; i++) { /* up to 10 s */
        char e[128];
        struct viv_client *c = viv_connect(d->sock, e, sizeof e);
        if (c) {
            viv_close(c);
            return 0;
        }
        int st;
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            d->pid = 0;
            return snprintf(err, errlen, "vivd exited at start (see its log %s)", d->log), -1;
        }
        usleep(10000);
    }
    return snprintf(err, errlen, "vivd did not come up in 10 s (log: %s)", d->log), -1;
}

void private_vivd_stop(struct private_vivd *d) {
    if (d->pid_slot) interrupt_forget_child(d->pid_slot - 1), d->pid_slot = 0;
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        int st, i;
        for (i = 0; i < 1000 && waitpid(d->pid, &st, WNOHANG) != d->pid; i++) usleep(10000);
        if (i == 1000) kill(d->pid, SIGKILL), waitpid(d->pid, &st, 0);
        d->pid = 0;
    }
    if (d->dir[0]) {
        unlink(d->sock), unlink(d->log);
        rmdir(d->dir);
        d->dir[0] = 0;
        if (d->dir_slot) interrupt_forget_path(d->dir_slot - 1), d->dir_slot = 0;
    }
}
