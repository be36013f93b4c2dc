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
#include <stdbool.h>
#include <linux/securebits.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>

/* Lock the securebits; `ambient_locked` also forbids raising ambient caps. */
static int lock_securebits(bool ambient_locked, char *err, size_t errlen) {
    unsigned bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                    SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED;
    if (ambient_locked) bits |= SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (cap_set_secbits(bits) != 0) {
        snprintf(err, errlen, "set securebits: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static bool kept_by_zygote(int c) { return c == CAP_SYS_ADMIN || c == CAP_SETPCAP; }

int caps_keep_for_zygote(char *err, size_t errlen) {
    if (lock_securebits(false, err, errlen)) return -1;
    int last = (int)cap_max_bits();
    for (int c = 0; c < last; c++)
        if (!kept_by_zygote(c) && cap_drop_bound((cap_value_t)c) != 0 && errno != EINVAL) {
            snprintf(err, errlen, "drop bounding capability %d: %s", c, strerror(errno));
            return -1;
        }
    if (cap_reset_ambient() != 0 && errno != EINVAL) {
        snprintf(err, errlen, "clear ambient capabilities: %s", strerror(errno));
        return -1;
    }
    cap_value_t keep[] = {CAP_SYS_ADMIN, CAP_SETPCAP};
    cap_t want = cap_init();
    int rc = want ? 0 : -1;
    for (int f = CAP_EFFECTIVE; rc == 0 && f <= CAP_INHERITABLE; f++)
        rc = cap_set_flag(want, (cap_flag_t)f, 2, keep, CAP_SET);
    if (rc == 0) rc = cap_set_proc(want);
    for (int i = 0; rc == 0 && i < 2; i++) rc = cap_set_ambient(keep[i], CAP_SET);
    if (rc != 0) {
        snprintf(err, errlen, "keep the zygote's capabilities: %s", strerror(errno));
        if (want) cap_free(want);
        return -1;
    }
    /* now nothing may raise an ambient capability again */
    if (lock_securebits(true, err, errlen) || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        if (!*err) snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
        cap_free(want);
        return -1;
    }
    cap_t now = cap_get_proc();
    int same = now && cap_compare(now, want) == 0;
    if (now) cap_free(now);
    cap_free(want);
    if (!same) {
        snprintf(err, errlen, "the zygote's capability sets are not what was asked");
        return -1;
    }
    for (int c = 0; c < last; c++)
        if ((prctl(PR_CAPBSET_READ, c, 0, 0, 0) > 0) != kept_by_zygote(c)) {
            snprintf(err, errlen, "bounding capability %d is not what was asked", c);
            return -1;
        }
    return 0;
}

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
