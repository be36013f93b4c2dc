/*
 * http_front.h - `vivd --http ADDR:PORT`: the HTTP contracts of
 * http_api.h served by a process vivd forks, which turns each HTTP call into
 * vivd requests on vivd's own Unix socket. So an HTTP call is the same job
 * or session as any other (policies, limits, admission control, logs); the
 * front only translates.
 */
#ifndef VIV_HTTP_FRONT_H
#define VIV_HTTP_FRONT_H

#include <stddef.h>

/* A listening TCP socket for addr ("IPv4:PORT"); refuses a non-loopback
 * address unless token_required. fd, or -1 with err. */
int http_listen(const char *addr, int token_required, char *err, size_t errlen);

/* Serve on listen_fd until SIGTERM or the parent's death. token: "" for
 * none, else every call needs "Authorization: Bearer TOKEN". Returns the
 * exit status. */
int http_front_main(int listen_fd, const char *socket_path, const char *token, size_t max_body);

#endif
