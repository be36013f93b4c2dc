# envs/envs.mk - the environments layer: `viv data build` (task sets from
# org.Hs.eg.db and GO.db) and its generators. Included by the Makefile.
# The suite is test/envs/run.sh: the real bin/viv end to end, then
# build/test/envs_tests (below) against the databases it built.
# Another envs/*.mk may append more sources; these are the data builder's.
VIV_SRC += envs/cmd_data.c envs/data_build.c envs/biodb.c envs/task.c envs/verify.c \
           envs/gen_common.c envs/gen_causal_gene.c envs/gen_variant_prioritization.c \
           envs/gen_dbqa.c envs/gen_seqqa.c envs/gen_rare_disease.c \
           envs/gen_patient_gene_detection.c envs/gen_screen_gene_retrieval.c
HEADERS += envs/biodb.h envs/task.h envs/gen.h envs/verify.h envs/data_build.h envs/cmd_data.h

# Unit tests of the builder's pieces (ASan + UBSan, glibc). Prerequisites
# name the objects directly: ASAN_OBJ is defined after this file is included.
ENVS_OBJ_ASAN = $(patsubst %.c,$(BUILD)/asan/%.o,$(filter envs/%,$(VIV_SRC)) $(SANDBOX_SRC)) \
                $(BUILD)/asan/policies_embedded.o $(BUILD)/asan/policies_bpf.o $(BUILD)/asan/warm_drivers.o
EXTRA_TESTS += $(BUILD)/test/envs_tests
$(BUILD)/test/envs_tests: test/envs/envs_tests.c test/harness.h $(ENVS_OBJ_ASAN)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ $< $(ENVS_OBJ_ASAN) $(ASAN_LIBS)
