# envs/mcp.mk - `viv mcp`, the sandbox's tools as an MCP server over stdio
# (envs/mcp.c; its suite is test/mcp/run.sh).
ENVS_SRC += envs/mcp.c
