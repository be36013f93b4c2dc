# test/bench/bwrap_args.sh - sourced by the benchmarks: the bubblewrap command
# line with the jail's shape (every namespace, read-only /usr and the /bin,
# /lib links, fresh /proc and minimal /dev, tmpfs /tmp and /work, a clean
# environment), in the array BWRAP.
links=()
for d in bin sbin lib lib64 lib32 libx32; do
  if [ -L "/$d" ]; then links+=(--symlink "$(readlink "/$d")" "/$d"); elif [ -d "/$d" ]; then links+=(--ro-bind "/$d" "/$d"); fi
done
etc=()
[ -e /etc/alternatives ] && etc+=(--ro-bind /etc/alternatives /etc/alternatives)
[ -e /etc/ld.so.cache ] && etc+=(--ro-bind /etc/ld.so.cache /etc/ld.so.cache)
BWRAP=(bwrap --unshare-all --unshare-user --die-with-parent --new-session --ro-bind /usr /usr "${links[@]}" "${etc[@]}"
       --proc /proc --dev /dev --tmpfs /tmp --tmpfs /work --chdir /work --clearenv --setenv PATH /usr/bin:/bin
       --setenv HOME /work --setenv OPENBLAS_NUM_THREADS 1)
