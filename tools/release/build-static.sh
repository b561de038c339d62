#!/usr/bin/env bash
# Fully static `edgetpu` binaries (musl libc, libusb built in) for the boards this project names:
# aarch64 (Raspberry Pi 4/5 on a 64-bit OS, Coral Dev Board's Mendel Linux), armv7 (32-bit
# Raspberry Pi OS) and x86-64. A static binary needs no particular glibc, so it runs on Debian 10
# (glibc 2.28) and Raspberry Pi OS Bullseye (2.31) as on current systems.
#
# Cross-compiling uses zig as the C compiler and linker (cargo-zigbuild), both from PyPI, installed
# into target/zig-venv on first use. Needs rustup and Python 3, nothing else.
#
# usage: tools/release/build-static.sh [TARGET...]
#   TARGET    default: aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf x86_64-unknown-linux-musl
#   PROFILE   cargo profile, default release (CI uses dev to save time)
# The binaries land in target/TARGET/PROFILE_DIR/edgetpu; the script prints their paths.
set -euo pipefail
cd "$(dirname "$0")/../.."
profile="${PROFILE:-release}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf x86_64-unknown-linux-musl)
fi
venv="$PWD/target/zig-venv"
if ! "$venv/bin/cargo-zigbuild" --version >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet ziglang cargo-zigbuild
fi
export PATH="$venv/bin:$PATH"
dir="$profile"
[ "$profile" = dev ] && dir=debug
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
  if grep -qx "$t" <<<"$installed" || rustup target add "$t"; then
    cargo zigbuild --locked --profile "$profile" -p edgetpu-cli --target "$t"
  else
    # No prebuilt standard library for this target (rustup's download can fail: it does for
    # armv7 musl on some networks). Build it from source instead (-Zbuild-std, which needs the
    # rust-src component and, on a stable toolchain, RUSTC_BOOTSTRAP=1), and let zig supply
    # musl's start files (link-self-contained=no: rustc ships them only with the prebuilt one).
    echo "$t: no prebuilt standard library; building it from source" >&2
    rustup component add rust-src
    RUSTC_BOOTSTRAP=1 cargo-zigbuild rustc --locked --profile "$profile" -p edgetpu-cli --bin edgetpu \
      --target "$t" -Zbuild-std=std,panic_abort -- -C link-self-contained=no
  fi
  bin="target/$t/$dir/edgetpu"
  # A static executable has no program interpreter (no dynamic loader).
  if readelf -l "$bin" | grep -q "program interpreter"; then
    echo "error: $bin is dynamically linked" >&2
    exit 1
  fi
  echo "$bin"
done
