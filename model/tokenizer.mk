# model/tokenizer.mk - the Qwen3 tokenizer, chat format and `viv tokenize`.
#
# The Unicode tables are generated at build time from Debian's unicode-data
# (/usr/share/unicode) by model/unicode_gen.py.
UNICODE_DIR ?= /usr/share/unicode
TOKENIZER_SRC := model/unicode.c model/tokenizer.c model/tokenizer_scan.c model/tokenizer_save.c \
                 model/tokenizer_train.c model/chat.c
VIV_SRC += $(TOKENIZER_SRC) model/cmd_tokenize.c $(BUILD)/gen/unicode_tables.c
HEADERS += model/unicode.h model/tokenizer.h model/tokenizer_internal.h model/tokenizer_cli.h model/chat.h

$(BUILD)/gen/unicode_tables.c: model/unicode_gen.py
	@mkdir -p $(@D)
	python3 model/unicode_gen.py $(UNICODE_DIR) $@

# The tokenizer's tests: ASan + UBSan (hostile tokenizer.json files, the
# chat format, NFC against the UCD's NormalizationTest.txt).
TOKENIZER_TEST_OBJ = $(patsubst %.c,$(BUILD)/asan/%.o,$(TOKENIZER_SRC) $(BUILD)/gen/unicode_tables.c sandbox/util.c)
EXTRA_TESTS += $(BUILD)/test/tokenizer_tests

$(BUILD)/test/tokenizer_tests: test/tokenizer/tokenizer_tests.c test/harness.h $(TOKENIZER_TEST_OBJ)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -Imodel -o $@ $< $(TOKENIZER_TEST_OBJ) -lcjson -lpthread -lm

# libFuzzer target: any bytes as a tokenizer.json (test/tokenizer/run.sh runs it briefly).
EXTRA_TESTS += $(BUILD)/fuzz/fuzz_tokenizer_json
$(BUILD)/fuzz/fuzz_tokenizer_json: test/tokenizer/fuzz_tokenizer_json.c $(TOKENIZER_SRC) $(BUILD)/gen/unicode_tables.c sandbox/util.c $(HEADERS)
	@mkdir -p $(@D)
	clang -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined -Imodel -o $@ test/tokenizer/fuzz_tokenizer_json.c \
	    $(TOKENIZER_SRC) $(BUILD)/gen/unicode_tables.c sandbox/util.c -lcjson -lpthread -lm
