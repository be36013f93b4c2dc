/*
 * interrupt.h - what a long command does on Ctrl-C (SIGINT), SIGTERM or
 * SIGHUP: remove its temporary files and directories, stop the helper
 * processes it started, say in one line what was kept and how to continue,
 * and exit 130.
 *
 * The handler does only async-signal-safe work (kill, waitpid, unlink,
 * getdents64, rmdir, write, _exit), from state the command registered
 * beforehand: up to 16 paths and 4 processes, and a note. A directory is
 * removed one level deep (a checkpoint being written, a socket directory).
 * Commands that must do more on an interrupt (viv run cancels its jail
 * through the supervisor) keep their own handlers.
 */
#ifndef VIV_INTERRUPT_H
#define VIV_INTERRUPT_H

#include <sys/types.h>

/* Install the handlers; prog prefixes the line ("viv eval"). */
void interrupt_install(const char *prog);

/* Register a temporary path (copied); returns a slot for interrupt_forget,
 * or -1 when the table is full (the path is then left behind). */
int interrupt_track_path(const char *path);
void interrupt_forget_path(int slot);

/* A process to stop (SIGKILL, then reaped) before the paths are removed. */
int interrupt_track_child(pid_t pid);
void interrupt_forget_child(int slot);

/* What was kept and how to continue, printed after "PROG: interrupted; ".
 * Copied; replaces the previous note. */
void interrupt_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
