/*
 * builtin_filters.h - seccomp programs for the built-in policies, compiled at
 * build time.
 *
 * Compiling a filter with libseccomp costs ~1 ms in the static musl binary
 * (its allocator returns memory to the kernel on almost every free), and a
 * one-shot `viv run` would pay that on its critical path. The built-in
 * policies are known when viv is built, so the Makefile runs a first-stage
 * viv (`viv policy bpf NAME FILE`) to compile each one with the same
 * libseccomp, and links the programs into the final binaries. A policy from
 * a file is still compiled at run time.
 */
#ifndef VIV_BUILTIN_FILTERS_H
#define VIV_BUILTIN_FILTERS_H

#include <linux/filter.h>

#include "policy.h"

/* The precompiled program for a policy loaded by built-in name, or NULL
 * (a policy from a file, or a first-stage build without the programs). */
const struct sock_fprog *builtin_filter_for(const struct policy *p);

#endif
