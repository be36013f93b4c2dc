/*
 * mcp.h - `viv mcp`: the sandbox as Model Context Protocol tools, over stdio.
 *
 * Newline-delimited JSON-RPC 2.0 on stdin/stdout (MCP's stdio transport);
 * logs go to stderr only. Tools: python (one-shot, or in a session),
 * python_session_open, python_session_close, shell, and sql when a database
 * is configured. Each call is a vivd request: a private vivd started for us
 * (envs/private_vivd.h), or the one at --socket.
 */
#ifndef VIV_ENVS_MCP_H
#define VIV_ENVS_MCP_H

int cmd_mcp(int argc, char **argv);

#endif
