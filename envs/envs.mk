# envs/envs.mk - the environments layer: `viv data build` (task sets from
# org.Hs.eg.db and GO.db) and its generators. Included by the Makefile.
# The suite is test/envs/run.sh: the real bin/viv end to end, then
# build/test/envs_tests (below) against the databases it built.
# Another envs/*.mk may append more sources; these are the data builder's.
ENVS_SRC += envs/cmd_data.c envs/data_build.c envs/biodb.c envs/task.c envs/verify.c \
            envs/gen_common.c envs/gen_causal_gene.c envs/gen_variant_prioritization.c \
            envs/gen_dbqa.c envs/gen_seqqa.c envs/gen_rare_disease.c \
            envs/gen_patient_gene_detection.c envs/gen_screen_gene_retrieval.c

# Unit tests of the builder's pieces (ASan + UBSan, glibc).
EXTRA_TESTS += $(BUILD)/test/envs_tests
$(BUILD)/test/envs_tests: $(BUILD)/asan/test/envs/envs_tests.o $(call layer_libs,asan)
	@mkdir -p $(@D)
	$(ASAN_LINK)
