# envs/mcp.mk - `viv mcp`, the sandbox's tools as an MCP server over stdio
# (envs/mcp.c; its suite is test/mcp/run.sh).
ENVS_SRC += envs/mcp.c
# its JSON-RPC handling under libFuzzer, tool calls answered by a stand-in vivd
$(eval $(call fuzz_target,fuzz_mcp,test/fuzz/fuzz_mcp.c))
