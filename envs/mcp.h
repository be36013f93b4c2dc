/*
 * mcp.h - `viv mcp`: the sandbox as Model Context Protocol tools, over stdio.
 *
 * Newline-delimited JSON-RPC 2.0 on stdin/stdout (MCP's stdio transport);
 * logs go to stderr only. Tools: python (one-shot, or in a session),
 * python_session_open, python_session_close, shell, r (when vivd has the r
 * policy), and sql when a database is configured. Each call is a vivd request: a private vivd started for us
 * (envs/private_vivd.h), or the one at --socket.
 */
#ifndef VIV_ENVS_MCP_H
#define VIV_ENVS_MCP_H

#include <stdbool.h>
#include <stddef.h>

struct viv_client;
struct mcp;

int cmd_mcp(int argc, char **argv);

/* The server without its stdio (cmd_mcp's loop; test/fuzz/fuzz_mcp.c):
 * its state over a connected vivd client, whose `policies` answer says
 * which tools exist and their limits (NULL with err when it gives none);
 * db_file names --db for the sql tool's description (NULL: none). */
struct mcp *mcp_new(struct viv_client *c, const char *db_file, char *err, size_t errlen);
void mcp_free(struct mcp *m);

/* The reply to one input line (its newline stripped): a message or a
 * batch. Malloc'd, or NULL when none is due (notifications, responses).
 * private_vivd: the vivd is ours (offers sql only with --db). */
char *mcp_reply(struct mcp *m, bool private_vivd, const char *line, size_t len);

#endif
