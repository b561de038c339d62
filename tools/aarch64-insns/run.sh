#!/usr/bin/env bash
# Instructions executed per inference of one model by the CPU interpreter on aarch64, under
# qemu-user: the portable kernels, the widening NEON kernels (-cpu cortex-a53, no dotprod) and the
# dotprod kernels (-cpu cortex-a76). Counts are of guest instructions, the same on every run of
# the same binary and input; they say nothing of a real core's cycles.
#
#   tools/aarch64-insns/run.sh [MODEL]    (default: mobilenet_v2_1.0_224_quant.tflite)
#
# Needs gcc, Debian's gcc-aarch64-linux-gnu and qemu-user, and `rustup target add
# aarch64-unknown-linux-gnu`. The `profile` example runs one warm-up invocation and then RUNS
# more; the count with RUNS=1 less the count with RUNS=0 is one inference, on one thread.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
testdata=${EDGETPU_TESTDATA:-$root/../shared/testdata}
model=${1:-$testdata/mobilenet_v2_1.0_224_quant.tflite}
target_dir=${CARGO_TARGET_DIR:-$root/target}
plugin=$target_dir/qemu-insn-count.so
mkdir -p "$target_dir"
gcc -shared -fPIC -O2 -o "$plugin" "$here/insn_count.c"
(cd "$root" && CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  cargo build --release -q -p edgetpu --no-default-features --target aarch64-unknown-linux-gnu --example profile)
bin=$target_dir/aarch64-unknown-linux-gnu/release/examples/profile

# count CPU RUNS [VAR=VALUE...]: instructions of one run of the profile example.
count() {
  env "${@:3}" qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "$1" -plugin "$plugin" -d plugin \
    "$bin" "$model" 1 "$2" 2>&1 >/dev/null | sed -n 's/^insns: //p'
}
per_inference() {
  local one none
  one=$(count "$1" 1 "${@:2}")
  none=$(count "$1" 0 "${@:2}")
  echo $((one - none))
}
echo "model: $(basename "$model")"
printf '%-40s %15s\n' "kernels (qemu-aarch64 -cpu)" "instructions"
printf '%-40s %15s\n' "portable (cortex-a76)" "$(per_inference cortex-a76 EDGETPU_CPU_ISA=portable)"
printf '%-40s %15s\n' "NEON widening (cortex-a53)" "$(per_inference cortex-a53)"
printf '%-40s %15s\n' "NEON dotprod (cortex-a76)" "$(per_inference cortex-a76)"
