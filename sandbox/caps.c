/*
 * caps.c - capabilities and no_new_privs, with libcap.
 *
 * The jail's init holds every capability of its (unprivileged) user
 * namespace while it builds the root. Before the job runs we remove them all,
 * in an order that leaves no way back:
 *   1. securebits: NOROOT (uid 0 gains nothing at exec), NO_SETUID_FIXUP,
 *      NO_CAP_AMBIENT_RAISE, each locked, and KEEP_CAPS locked off;
 *   2. the bounding set, one capability at a time (needs CAP_SETPCAP, so it
 *      comes before step 4);
 *   3. the ambient set;
 *   4. effective, permitted and inheritable, all at once;
 *   5. PR_SET_NO_NEW_PRIVS, so no setuid/setgid bit or file capability can
 *      grant anything at exec, ever again in this process tree.
 * Then we read everything back and refuse to continue if any bit survived.
 */
#define _GNU_SOURCE
#include "caps.h"

#include <errno.h>
#include <linux/securebits.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>

int caps_drop_all(char *err, size_t errlen) {
    unsigned bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                    SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                    SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (cap_set_secbits(bits) != 0) {
        snprintf(err, errlen, "set securebits: %s", strerror(errno));
        return -1;
    }
    int last = (int)cap_max_bits();
    for (int c = 0; c < last; c++) {
        if (cap_drop_bound((cap_value_t)c) != 0 && errno != EINVAL) {
            snprintf(err, errlen, "drop bounding capability %d: %s", c, strerror(errno));
            return -1;
        }
    }
    if (cap_reset_ambient() != 0 && errno != EINVAL) {
        snprintf(err, errlen, "clear ambient capabilities: %s", strerror(errno));
        return -1;
    }
    cap_t none = cap_init();
    if (!none || cap_set_proc(none) != 0) {
        snprintf(err, errlen, "clear capability sets: %s", strerror(errno));
        if (none) cap_free(none);
        return -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
        cap_free(none);
        return -1;
    }

    /* Verify: the sets must equal the empty set, the bounding set must be empty. */
    cap_t now = cap_get_proc();
    int same = now && cap_compare(now, none) == 0;
    if (now) cap_free(now);
    cap_free(none);
    if (!same) {
        snprintf(err, errlen, "capabilities survived the drop");
        return -1;
    }
    for (int c = 0; c < last; c++)
        if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) > 0) {
            snprintf(err, errlen, "bounding capability %d survived the drop", c);
            return -1;
        }
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
        snprintf(err, errlen, "no_new_privs did not stick");
        return -1;
    }
    return 0;
}
