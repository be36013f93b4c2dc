/* caps.h - drop every capability and set no_new_privs. */
#ifndef VIV_CAPS_H
#define VIV_CAPS_H
#include <stddef.h>

/* Lock the securebits, clear the bounding and ambient sets, clear the
 * effective, permitted and inheritable sets, set PR_SET_NO_NEW_PRIVS, and
 * check the result. 0, or -1 with err. */
int caps_drop_all(char *err, size_t errlen);

#endif
