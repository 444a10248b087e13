#!/usr/bin/env bash
# Run the core crates' Rust tests (every workspace crate but the addon) for aarch64 under
# qemu-user: Debian's rustc 1.96 cross-compiles them (aarch64 std from
# libstd-rust-web-dev:arm64), Debian's aarch64-linux-gnu-gcc links them, and
# `qemu-aarch64-static -L /` runs them as cargo's runner
# (.cargo/config.toml). Installs the Debian packages when missing (scripts/cross-tools.sh).
#
# Usage: scripts/test-aarch64.sh [extra cargo test args]     also: npm run test:aarch64
# Env:   CARGO_TARGET_DIR (default target/)
# Output: cargo's own "test result:" lines, so scripts/test's counting picks them up.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cross-tools.sh
source scripts/cross-tools.sh
sk_ensure_debian_cross || exit 3   # 3: cannot run here (cross tools missing, not installable)

# Tests that re-execute their own binary (e.g. as another user through setpriv) need the
# kernel to run aarch64 executables: register qemu with binfmt_misc when it is not yet
# (what Debian's qemu-user-binfmt does on systemd machines; kernel-wide, lasts until
# reboot, and only routes aarch64 ELF files to qemu). F: the kernel opens qemu now, so it
# also works after a test drops privileges.
sk_binfmt_aarch64() {
  local dir=/proc/sys/fs/binfmt_misc
  [ -e "$dir/qemu-aarch64" ] && return 0
  [ "$(id -u)" -eq 0 ] || return 1
  [ -e "$dir/register" ] || mount -t binfmt_misc binfmt_misc "$dir" 2>/dev/null || return 1
  local qemu
  qemu=$(command -v qemu-aarch64-static) || return 1
  printf '%s' ":qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:$qemu:F" \
    > "$dir/register" 2>/dev/null
}
if ! sk_binfmt_aarch64; then
  echo "test-aarch64: no binfmt_misc handler for aarch64 (need root); tests that re-execute themselves will fail" >&2
fi

triple=aarch64-unknown-linux-gnu
echo "== cargo test --target $triple (core crates, under qemu-aarch64-static)"
# The addon crate (a cdylib that needs node's napi_* symbols) is not a core crate.
RUSTC="$SK_RUSTC" RUSTDOC="$SK_RUSTDOC" \
  "$SK_CARGO" test --locked --target "$triple" --workspace --exclude sparsekit "$@"
