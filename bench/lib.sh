# Shared by the bench/*.sh scripts (sourced, POSIX sh): builds one release example of a
# core crate and enters the data folder.
#   bench_init CRATE EXAMPLE DIR   sets SK to the example binary, cd DIR (created)
#   now                            seconds since the epoch, nanosecond precision
#   median                         the median of the numbers on stdin, one per line
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

bench_init() {
  cargo build -q --release -p "$1" --example "$2" --manifest-path "$ROOT/Cargo.toml"
  SK="$CARGO_TARGET_DIR/release/examples/$2"
  mkdir -p "$3"
  cd "$3"
}
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
