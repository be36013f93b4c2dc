/* builtin_filters.c - see builtin_filters.h. */
#include "builtin_filters.h"

#include <string.h>

struct builtin_filter {
    const char *name;
    const struct sock_filter *insns;
    unsigned short len;
};
/* Generated into build/policies_bpf.c (or an empty table in stage 1). */
extern const struct builtin_filter viv_builtin_filters[];

const struct sock_fprog *builtin_filter_for(const struct policy *p) {
    static struct sock_fprog prog;
    /* only a policy that came from the embedded text, never from a file */
    if (!p->origin || strncmp(p->origin, "built-in policy '", 17) != 0) return NULL;
    for (const struct builtin_filter *f = viv_builtin_filters; f->name; f++)
        if (strcmp(f->name, p->name) == 0 && f->len > 0) {
            prog.len = f->len;
            prog.filter = (struct sock_filter *)f->insns;
            return &prog;
        }
    return NULL;
}
