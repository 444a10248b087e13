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

# Print the folder of the glibc-2.17 gcc toolchain for TRIPLE, fetching and unpacking it
# into the user's cache on first use (about 45 MB download, 230 MB unpacked, 15 s).
sk_glibc_toolchain() {
  local triple=$1 spec=${SK_TOOLCHAIN_PKG[$1]:-}
  [ -n "$spec" ] || { sk_log "no glibc toolchain known for $triple"; return 1; }
  case "$(uname -m)" in
    x86_64) ;;
    *) sk_log "the pinned glibc toolchains run on x86_64 hosts only (this is $(uname -m))"; return 1 ;;
  esac
  local cache=${SPARSEKIT_CROSS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsekit/cross-toolchain}
  local name=${spec#@napi-rs/} dir
  dir="$cache/${name//@/-}"
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
