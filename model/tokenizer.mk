# model/tokenizer.mk - the Qwen3 tokenizer, chat format and `viv tokenize`.
#
# The Unicode tables are generated at build time from Debian's unicode-data
# (/usr/share/unicode) by model/unicode_gen.py.
UNICODE_DIR ?= /usr/share/unicode
MODEL_SRC += model/unicode.c model/tokenizer.c model/tokenizer_scan.c model/tokenizer_save.c \
             model/tokenizer_train.c model/chat.c model/cmd_tokenize.c $(BUILD)/gen/unicode_tables.c

$(BUILD)/gen/unicode_tables.c: model/unicode_gen.py
	@mkdir -p $(@D)
	python3 model/unicode_gen.py $(UNICODE_DIR) $@

# The tokenizer's tests: ASan + UBSan (hostile tokenizer.json files, the
# chat format, NFC against the UCD's NormalizationTest.txt).
EXTRA_TESTS += $(BUILD)/test/tokenizer_tests
$(BUILD)/test/tokenizer_tests: $(BUILD)/asan/test/tokenizer/tokenizer_tests.o $(call layer_libs,asan)
	@mkdir -p $(@D)
	$(ASAN_LINK)

# libFuzzer target: any bytes as a tokenizer.json (test/tokenizer/run.sh runs it briefly).
$(eval $(call fuzz_target,fuzz_tokenizer_json,test/tokenizer/fuzz_tokenizer_json.c))
