/* caps.h - drop every capability and set no_new_privs. */
#ifndef VIV_CAPS_H
#define VIV_CAPS_H
#include <stddef.h>

/* Lock the securebits, clear the bounding and ambient sets, clear the
 * effective, permitted and inheritable sets, set PR_SET_NO_NEW_PRIVS, and
 * check the result. 0, or -1 with err. */
int caps_drop_all(char *err, size_t errlen);

/* For a zygote (see zygote.c): the same locked securebits and no_new_privs,
 * but CAP_SYS_ADMIN and CAP_SETPCAP stay in the bounding, permitted,
 * effective, inheritable and ambient sets, so the exec'd interpreter keeps
 * them (in the jail's own user namespace only) to give each request child
 * fresh namespaces and then drop them for good. Every other capability is
 * gone, and the result is checked. 0, or -1 with err. */
int caps_keep_for_zygote(char *err, size_t errlen);

#endif
