# kemu.sed - the two CUDA constructs g++ cannot parse, rewritten for kemu.h
# (each must sit on one line in model/cuda/*.cu; the line count is kept so
# compiler messages point at the .cu lines):
#   name<<<grid, block[, smem[, stream]]>>>(args);  ->  kemu_launch(kemu_cfg(grid, block...), name, args);
#   extern __shared__ [__align__(n)] T name[];    ->  T *name = (T *)kemu_dyn_smem();
s/\([A-Za-z_][A-Za-z_0-9]*\(<[^<>]*>\)\{0,1\}\)<<<\(.*\)>>>(/kemu_launch(kemu_cfg(\3), \1, /
s/kemu_launch(\(.*\)), \([^,]*\), );/kemu_launch(\1), \2);/
s/extern __shared__ \(__align__([0-9]*) \)\{0,1\}\(.*[^ ]\) \{1,\}\([A-Za-z_][A-Za-z_0-9]*\)\[\];/\2 *\3 = (\2 *)kemu_dyn_smem();/
