/*
 * http_cmds.h - the OpenAI-compatible HTTP side's viv subcommands.
 */
#ifndef VIV_RL_HTTP_CMDS_H
#define VIV_RL_HTTP_CMDS_H

/* viv serve: a checkpoint as a chat-completions endpoint (rl/serve/cmd_serve.c) */
int cmd_serve(int argc, char **argv);
/* viv eval with the agents of rl/serve/llm_agent.c (endpoint:URL, model:DIR) added */
int cmd_eval_with_llm(int argc, char **argv);

#endif
