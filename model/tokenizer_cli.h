/* tokenizer_cli.h - `viv tokenize` (model/cmd_tokenize.c). */
#ifndef VIV_TOKENIZER_CLI_H
#define VIV_TOKENIZER_CLI_H

int cmd_tokenize(int argc, char **argv);

#endif
