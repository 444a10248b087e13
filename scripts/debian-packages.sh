# Debian packages the scripts and tests rely on, each checked by a file THAT package
# provides (not by a sibling that often comes with it: `gcc-aarch64-linux-gnu` does not bring
# the aarch64 C runtime, `gcc` does not bring libc6-dev, ...). Sourced (bash) by
# scripts/setup and scripts/cross-tools.sh.
#
# Each entry is "PACKAGE FILE": FILE is the path as the package's own file list records it
# (`dpkg -L PACKAGE`); `scripts/setup --verify` checks with `dpkg -S FILE` that every
# present FILE really belongs to PACKAGE, and scripts/test runs that check.

# What the test suites (cargo and ava), the demo and bench/ use.
SK_TEST_PACKAGES=(
  "qemu-utils /usr/bin/qemu-img"                      # qcow2 oracle
  "qemu-utils /usr/bin/qemu-io"
  "bmap-tools /usr/bin/bmaptool"                      # bmap reference, bench anchor
  "bmap-tools /usr/lib/python3/dist-packages/bmaptools/Filemap.py"
  "xz-utils /usr/bin/xz"
  "zstd /usr/bin/zstd"
  "bzip2 /bin/bzip2"
  "gzip /bin/gzip"
  "rsync /usr/bin/rsync"
  "socat /usr/bin/socat"
  "openssh-server /usr/sbin/sshd"                     # sync over ssh localhost (private sshd)
  "openssh-client /usr/bin/ssh"
  "openssh-client /usr/bin/ssh-keygen"
  "zip /usr/bin/zip"                                  # flash: zip sources
  "dmsetup /sbin/dmsetup"                             # flash: a failing drive (dm-error)
  "curl /usr/bin/curl"                                # bench/flash.sh anchor
  "openssl /usr/bin/openssl"                          # flash: the HTTPS test server's own CA
  "bc /usr/bin/bc"                                    # bench/flash.sh, bench/qcow2-edit.sh
  "xfsprogs /sbin/mkfs.xfs"
  "btrfs-progs /sbin/mkfs.btrfs"
  "e2fsprogs /sbin/mkfs.ext4"
  "e2fsprogs /usr/sbin/filefrag"
  "e2fsprogs /sbin/debugfs"                           # layout: a dirty ext4 (needs_recovery)
  "dosfstools /sbin/mkfs.vfat"                        # layout proof: FAT16/FAT32
  "dosfstools /sbin/fsck.fat"
  "mtools /usr/bin/mcopy"                             # FAT files in and out (no vfat driver)
  "exfatprogs /usr/sbin/mkfs.exfat"                   # layout proof: exFAT
  "exfatprogs /usr/sbin/fsck.exfat"
  "exfat-fuse /sbin/mount.exfat-fuse"                 # exFAT mounted through FUSE
  "ntfs-3g /sbin/mkfs.ntfs"                           # layout proof: NTFS (FUSE)
  "ntfs-3g /bin/ntfsfix"
  "gdisk /sbin/sgdisk"                                # layout: hybrid MBR
  "fdisk /sbin/sfdisk"                                # layout: GPT and MBR tables
  "mount /sbin/losetup"
  "util-linux /usr/bin/fallocate"
  "b3sum /usr/bin/b3sum"
  "hyperfine /usr/bin/hyperfine"                      # bench/run
  "gcc /usr/bin/gcc"                                  # bench/fiemap_floor.c (cc)
  "libc6-dev /usr/include/stdio.h"                    # gcc only recommends it
  "linux-libc-dev /usr/include/linux/fiemap.h"        # FIEMAP structs for the C floor
)

# Cross builds and aarch64 tests (scripts/cross-tools.sh: prebuilt, test-aarch64.sh).
SK_CROSS_PACKAGES=(
  "cargo-web /usr/bin/cargo"                          # Debian's cargo/rustc 1.96 with an
  "rustc-web /usr/bin/rustc"                          # aarch64 std (rustup's has none)
  "rustc-web /usr/bin/rustdoc"
  "libstd-rust-web-dev:arm64 /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib"
  "gcc-aarch64-linux-gnu /usr/bin/aarch64-linux-gnu-gcc"
  "libc6-dev-arm64-cross /usr/aarch64-linux-gnu/lib/crti.o"   # the aarch64 C runtime
  "libc6-dev-arm64-cross /usr/aarch64-linux-gnu/lib/Scrt1.o"
  "binutils-aarch64-linux-gnu /usr/bin/aarch64-linux-gnu-objdump"
  "binutils-aarch64-linux-gnu /usr/bin/aarch64-linux-gnu-ld"
  "libc6:arm64 /lib/ld-linux-aarch64.so.1"            # qemu -L / loads arm64 programs with it
  "qemu-user-static /usr/bin/qemu-aarch64-static"
  "binutils /usr/bin/readelf"                         # scripts/prebuilt checks the binaries
  "binutils /usr/bin/objdump"
  "xz-utils /usr/bin/xz"                              # unpacks the glibc-2.17 toolchains
)

# Print the packages of the named list (SK_TEST_PACKAGES or SK_CROSS_PACKAGES) whose file
# is missing, one per line, each once. Works without dpkg (only tests files).
sk_missing_packages() {
  local -n list=$1
  local entry pkg file
  for entry in "${list[@]}"; do
    read -r pkg file <<<"$entry"
    [ -e "$file" ] || echo "$pkg"
  done | awk '!seen[$0]++'
}

# Check with dpkg -S that every present file of the named lists belongs to its package.
# Prints one line per mismatch; returns 1 if there was any.
sk_verify_package_files() {
  local name entry pkg file owners bad=0
  command -v dpkg >/dev/null 2>&1 || { echo "no dpkg: cannot verify package files" >&2; return 0; }
  for name in "$@"; do
    local -n list=$name
    for entry in "${list[@]}"; do
      read -r pkg file <<<"$entry"
      [ -e "$file" ] || continue
      # "pkg[:arch][, pkg2]: path" (diversions print extra lines; keep the owners' line).
      owners=$(dpkg -S "$file" 2>/dev/null | grep -v '^diversion by' | sed -n "s|: $file\$||p" | tr ',' '\n' | tr -d ' ')
      if ! printf '%s\n' "$owners" | grep -Eqx "${pkg%%:*}(:${pkg#*:}|:[a-z0-9]+)?"; then
        echo "$name: $file is provided by '$(echo "$owners" | paste -sd ' ')', not by $pkg"
        bad=1
      fi
    done
    unset -n list
  done
  return $bad
}

# Install PACKAGES with apt-get (root only), printing "LABEL: installed: ..." or why not.
# Adds the arm64 architecture when an :arm64 package is asked for. Never pulls nodejs:arm64
# or libnode*:arm64 (they would replace this machine's x86_64 node) and never removes a
# package: the install is simulated first and refused if it would.
sk_apt_install() {
  local label=$1; shift
  [ $# -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "$label: missing Debian packages ($*) and cannot install them (need root and apt-get)" >&2
    return 1
  fi
  case " $* " in
    *:arm64*) dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64 ;;
  esac
  # Two scripts may install at once (ava runs test files in parallel): wait for the other's
  # dpkg/apt locks instead of failing.
  local wait=(-o DPkg::Lock::Timeout=600)
  apt-get "${wait[@]}" update -qq >/dev/null || { echo "$label: apt-get update failed" >&2; return 1; }
  local plan
  plan=$(DEBIAN_FRONTEND=noninteractive apt-get -s install -y --no-install-recommends "$@" 2>&1) || {
    echo "$plan" >&2; echo "$label: apt-get cannot install $*" >&2; return 1; }
  if echo "$plan" | grep -Eq '^Remv |^Inst (nodejs|libnode[^ ]*):arm64'; then
    echo "$label: refusing: installing $* would remove packages or install an arm64 node:" >&2
    echo "$plan" | grep -E '^(Remv|Inst)' >&2
    return 1
  fi
  local out
  out=$(DEBIAN_FRONTEND=noninteractive apt-get "${wait[@]}" install -y -qq --no-install-recommends "$@" 2>&1) || {
    echo "$out" >&2; echo "$label: apt-get install failed" >&2; return 1; }
  echo "$label: installed: $*"
  # Apt's plan also lists dependencies (new) and packages it upgraded for them ("[old] (new)").
  local deps upgraded
  deps=$(echo "$plan" | sed -n 's/^Inst \([^ ]*\) (.*/\1/p' | grep -vxF -f <(printf '%s\n' "$@") | paste -sd ' ')
  upgraded=$(echo "$plan" | sed -n 's/^Inst \([^ ]*\) \[.*/\1/p' | paste -sd ' ')
  [ -z "$deps" ] || echo "$label: and their dependencies: $deps"
  [ -z "$upgraded" ] || echo "$label: upgraded for them: $upgraded"
}
