/* vivd_main.c - bin/vivd: the sandbox daemon on its own. */
#include "vivd.h"

int main(int argc, char **argv) { return vivd_main(argc, argv); }
