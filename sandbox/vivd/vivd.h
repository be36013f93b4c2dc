/* vivd.h - the sandbox daemon (bin/vivd, also `viv sandbox`). */
#ifndef VIV_VIVD_H
#define VIV_VIVD_H
/* Runs until SIGTERM/SIGINT; returns the process exit status. */
int vivd_main(int argc, char **argv);
#endif
