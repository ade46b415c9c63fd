#!/usr/bin/env bash
# Builds the C library (release) and installs it under a prefix:
#
#   PREFIX/include/missive.h
#   PREFIX/lib/libmissive.so         (SONAME libmissive.so)
#   PREFIX/lib/libmissive.a
#   PREFIX/lib/pkgconfig/missive.pc  (from ffi/missive.pc.in)
#
#   bash ffi/install.sh [PREFIX]     PREFIX defaults to /usr/local
#
# Then: cc app.c $(pkg-config --cflags --libs missive)            (shared)
#       cc app.c $(pkg-config --cflags missive) PREFIX/lib/libmissive.a \
#          $(pkg-config --static --libs-only-l missive | sed 's/-lmissive//')   (static)
# (set PKG_CONFIG_PATH=PREFIX/lib/pkgconfig if PREFIX is not a standard one).
#
# Builds into $CARGO_TARGET_DIR if set, else the workspace's target/.
set -euo pipefail

ffi_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$ffi_dir")
prefix=${1:-/usr/local}
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
export CARGO_TARGET_DIR="$target"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"

# `cargo rustc` builds every crate type of the library (cdylib, staticlib, rlib) and, when it
# compiles, prints the system libraries a static link needs; they are kept for the next time.
native_libs_file="$target/release/missive-native-static-libs.txt"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo rustc --release -p missive-ffi --lib -- --print native-static-libs </dev/null 2>"$log" ||
    { cat "$log" >&2; exit 1; }
native=$(sed -n 's/^note: native-static-libs: //p' "$log" | tail -n 1)
if [ -n "$native" ]; then
    printf '%s\n' "$native" >"$native_libs_file"
elif [ -f "$native_libs_file" ]; then
    native=$(cat "$native_libs_file")
else
    native="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)
mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 "$ffi_dir/include/missive.h" "$prefix/include/missive.h"
install -m 755 "$target/release/libmissive_ffi.so" "$prefix/lib/libmissive.so"
install -m 644 "$target/release/libmissive_ffi.a" "$prefix/lib/libmissive.a"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" -e "s|@LIBS_PRIVATE@|$native|" \
    "$ffi_dir/missive.pc.in" >"$prefix/lib/pkgconfig/missive.pc"
echo "installed missive $version in $prefix (include/missive.h, lib/libmissive.{so,a}, lib/pkgconfig/missive.pc)"
