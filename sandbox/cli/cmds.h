/* cmds.h - the sandbox's `viv` subcommands (dispatched from rl/viv.c). */
#ifndef VIV_CMDS_H
#define VIV_CMDS_H
int cmd_run(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_sandbox(int argc, char **argv);
#endif
