/*
 * job_files.h - what an exec request brings into the job's directory and
 * takes back out of it: stdin, input files and fetched files.
 *
 * A file's name is a path relative to the job directory (/work): no leading
 * '/', no empty, "." or ".." component, at most JOB_FILE_NAME_MAX bytes.
 * job_path_check() is the one place that decides it; vivd checks a request
 * with it (a clear error) and the jail's init checks again before it writes
 * or reads anything, creating and walking every component with O_NOFOLLOW,
 * so neither a name nor a symlink the job left can lead out of /work.
 *
 * Fetched files travel from the init to the supervisor as records on a
 * pipe: [u32 name_len][name][i32 errno][u64 len][len bytes]; errno 0 is a
 * regular file read whole, else why it was not (ENOENT, EISDIR, ELOOP for a
 * symlink, EFBIG past the policy's files_bytes).
 */
#ifndef VIV_JOB_FILES_H
#define VIV_JOB_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOB_DIR "/work"
#define JOB_FILE_NAME_MAX 255
#define JOB_FILES_MAX 64 /* files, and fetch_files, per request */

struct job_file {
    char *name;
    char *data; /* len bytes */
    size_t len;
};

/* 0 when `name` is a valid relative name inside the job directory, else -1
 * with err saying why. */
int job_path_check(const char *name, char *err, size_t errlen);


/* Init side. Write each file under JOB_DIR (directories made as needed,
 * nothing followed, nothing replaced): 0 or -1 with err. */
int job_files_write(const struct job_file *files, int nfiles, char *err, size_t errlen);
/* Send each named file's record on fd, reading at most `budget` bytes in
 * all. Every process of the jail but the caller must be gone. */
void job_files_fetch(int fd, char *const *names, int nnames, size_t budget);

/* Supervisor side: one parsed record of the stream (pointers into it). */
struct job_fetched {
    const char *name;
    size_t name_len;
    int err;
    const char *data;
    size_t len;
};
/* Parse the next record at *off; false at the end or at a truncated record. */
bool job_fetched_next(const char *buf, size_t buf_len, size_t *off, struct job_fetched *f);

#endif
