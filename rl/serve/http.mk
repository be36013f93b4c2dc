# rl/serve/http.mk - the OpenAI-compatible HTTP side (included by the top Makefile):
# the libcurl client of remote endpoints, `viv serve` (GNU libmicrohttpd) and
# the agents that take each turn from an endpoint or a local checkpoint.
#
# libcurl (with mbedTLS) and libmicrohttpd are built static with musl into
# $(MUSL) by build.sh (build_http_deps); the top Makefile appends
# HTTP_MUSL_LIBS to the static link and HTTP_GLIBC_LIBS to the sanitizer one.
HTTP_MUSL_LIBS = $(MUSL)/lib/libcurl.a $(MUSL)/lib/libmbedtls.a $(MUSL)/lib/libmbedx509.a \
                 $(MUSL)/lib/libmbedcrypto.a $(MUSL)/lib/libmicrohttpd.a
HTTP_GLIBC_LIBS := -lcurl -lmicrohttpd
# bin/viv-cuda (model/cuda/cuda.mk) links every viv source too, against glibc
CUDA_LIBS += $(HTTP_GLIBC_LIBS)

RL_SRC += rl/serve/openai_client.c rl/serve/textgen.c rl/serve/cmd_serve.c rl/serve/llm_agent.c rl/serve/agent_pool.c rl/serve/serve_batch.c rl/serve/serve_request.c

# test/http's client driver: one request through rl/serve/openai_client.c, ASan +
# UBSan, against the glibc libcurl (the static one is musl's).
EXTRA_TESTS += $(BUILD)/test/oai_request
$(BUILD)/test/oai_request: $(BUILD)/asan/test/http/oai_request.o $(call layer_libs,asan)
	@mkdir -p $(@D)
	$(ASAN_LINK)

# libFuzzer target: request bodies through parse_creq and the chat template
# (the server's input from the network), run briefly by test/http/run.sh.
$(eval $(call fuzz_target,fuzz_serve_request,test/http/fuzz_serve_request.c))
