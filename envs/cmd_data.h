/* cmd_data.h - `viv data` (dispatched from rl/viv.c). */
#ifndef VIV_ENVS_CMD_DATA_H
#define VIV_ENVS_CMD_DATA_H
int cmd_data(int argc, char **argv);
#endif
