/*
 * zygote.h - warm one-shot execution: a jailed interpreter that has already
 * imported the policy's preload modules forks a fresh, isolated child per
 * request. See zygote.c for the design and zygote_driver.py for the child.
 */
#ifndef VIV_ZYGOTE_H
#define VIV_ZYGOTE_H

#include <stdbool.h>

#include <linux/filter.h>

#include "../jail/jail.h"

struct zygote_spec {
    const struct policy *policy;
    const struct sock_fprog *filter;        /* the policy's own filter: each request child installs it */
    const struct sock_fprog *zygote_filter; /* syscall_filter_compile_zygote(): the interpreter's */
    const struct jail_data *data;
    int ndata;
    const char *tool;
};

/* A policy can have zygotes when it runs python with a code file (as
 * sessions need) and names modules to preload. */
bool zygote_policy_supported(const struct policy *p);

/* The zygote worker (a process vivd forks): start the jail and wait until
 * the preload is imported, then serve one-shot calls read from ctl_fd (the
 * frames of warm_worker.h) until it hangs up or the zygote fails. Writes one
 * line for the start ({"ok":true} or an error object) and one exec response
 * object per call. A call the zygote could not answer gets an error object
 * with code "zygote_lost", and the worker exits (vivd starts another). */
int zygote_worker_main(const struct zygote_spec *zs, int ctl_fd);

#endif
