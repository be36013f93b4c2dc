/*
 * job_files.c - names and the init's side of a job's files (see
 * job_files.h).
 */
#define _GNU_SOURCE
#include "job_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/util.h"

int job_path_check(const char *name, char *err, size_t errlen) {
    size_t n = strlen(name);
    if (n == 0) return fail_with(err, errlen, "a file name is empty");
    if (n > JOB_FILE_NAME_MAX)
        return fail_with(err, errlen, "file name '%.40s...' is longer than %d bytes", name, JOB_FILE_NAME_MAX);
    if (name[0] == '/')
        return fail_with(err, errlen, "file name '%.64s' is absolute: names are relative to the job directory", name);
    for (const char *p = name; *p;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return fail_with(err, errlen, "file name '%.64s' has an empty, '.' or '..' component: names stay inside the job directory", name);
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
                return fail_with(err, errlen, "file name '%.64s' has a control character", name);
        p += len + (e ? 1 : 0);
        if (e && !*p) return fail_with(err, errlen, "file name '%.64s' ends with '/'", name);
    }
    return 0;
}

/* Open the directory that holds `name`'s last component, walking (and, when
 * `create`, making) each directory without following a symlink. Returns the
 * directory fd and sets *leaf, or -1 with errno. */
static int open_parent(const char *name, bool create, const char **leaf) {
    int dfd = open(JOB_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    const char *p = name;
    for (const char *e; dfd >= 0 && (e = strchr(p, '/'));) {
        char comp[JOB_FILE_NAME_MAX + 1];
        snprintf(comp, sizeof comp, "%.*s", (int)(e - p), p);
        if (create && mkdirat(dfd, comp, 0755) != 0 && errno != EEXIST) {
            int keep = errno;
            close(dfd), errno = keep;
            return -1;
        }
        int next = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int keep = errno;
        close(dfd), errno = keep;
        dfd = next;
        p = e + 1;
    }
    *leaf = p;
    return dfd;
}

int job_files_write(const struct job_file *files, int nfiles, char *err, size_t errlen) {
    for (int i = 0; i < nfiles; i++) {
        if (job_path_check(files[i].name, err, errlen)) return -1;
        const char *leaf;
        int dfd = open_parent(files[i].name, true, &leaf);
        int fd = dfd < 0 ? -1 : openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        int e = errno;
        if (dfd >= 0) close(dfd);
        if (fd < 0 || write_all(fd, files[i].data, files[i].len) != 0) {
            if (fd >= 0) e = errno, close(fd);
            return fail_with(err, errlen, "write %s/%s: %s", JOB_DIR, files[i].name, strerror(e));
        }
        close(fd);
    }
    return 0;
}

static void send_record(int fd, const char *name, int e, int src, size_t len) {
    uint32_t nl = (uint32_t)strlen(name);
    int32_t er = e;
    uint64_t l = len;
    if (write_all(fd, &nl, sizeof nl) || write_all(fd, name, nl) || write_all(fd, &er, sizeof er) ||
        write_all(fd, &l, sizeof l))
        return;
    char buf[65536];
    while (src >= 0 && len > 0) {
        ssize_t r = read(src, buf, len < sizeof buf ? len : sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) memset(buf, 0, r = (ssize_t)(len < sizeof buf ? len : sizeof buf)); /* keep the framing */
        if (write_all(fd, buf, (size_t)r)) return;
        len -= (size_t)r;
    }
}

/* Open a fetched file: a regular file on the job directory's own
 * filesystem, reached without following any symlink. fd, or -1 with errno. */
static int open_fetched(const char *name, dev_t work_dev, off_t *size) {
    char err[256];
    if (job_path_check(name, err, sizeof err)) return errno = EINVAL, -1;
    const char *leaf;
    int dfd = open_parent(name, false, &leaf);
    if (dfd < 0) return errno = errno == ENOTDIR ? ELOOP : errno, -1;
    /* O_NONBLOCK: a FIFO the job left must not block the init */
    int fd = openat(dfd, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    int e = errno;
    close(dfd);
    if (fd < 0) return errno = e, -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_dev != work_dev) {
        e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        close(fd);
        return errno = e, -1;
    }
    *size = st.st_size;
    return fd;
}

void job_files_fetch(int fd, char *const *names, int nnames, size_t budget) {
    struct stat wst;
    if (stat(JOB_DIR, &wst) != 0) wst.st_dev = (dev_t)-1;
    for (int i = 0; i < nnames; i++) {
        off_t size = 0;
        int src = open_fetched(names[i], wst.st_dev, &size);
        if (src < 0) {
            send_record(fd, names[i], errno, -1, 0);
            continue;
        }
        if ((size_t)size > budget) {
            send_record(fd, names[i], EFBIG, -1, 0);
        } else {
            send_record(fd, names[i], 0, src, (size_t)size);
            budget -= (size_t)size;
        }
        close(src);
    }
}

bool job_fetched_next(const char *buf, size_t n, size_t *off, struct job_fetched *f) {
    size_t o = *off;
    uint32_t nl;
    int32_t e;
    uint64_t l;
    if (n - o < sizeof nl) return false;
    memcpy(&nl, buf + o, sizeof nl), o += sizeof nl;
    if (n - o < (size_t)nl + sizeof e + sizeof l) return false;
    f->name = buf + o, f->name_len = nl, o += nl;
    memcpy(&e, buf + o, sizeof e), o += sizeof e;
    memcpy(&l, buf + o, sizeof l), o += sizeof l;
    if (n - o < l) return false;
    f->err = e, f->data = buf + o, f->len = (size_t)l;
    *off = o + (size_t)l;
    return true;
}
