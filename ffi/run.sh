#!/usr/bin/env bash
# The C API's checks, in the order a C user meets them:
#
#   1. the committed header is current: regenerate it with cbindgen into a temporary file and
#      fail if it differs from ffi/include/missive.h (fix: bash ffi/gen-header.sh);
#   2. build the library (release) and install it, with missive.pc, into a staging prefix
#      ($CARGO_TARGET_DIR/missive-c, default target/missive-c);
#   3. compile ffi/examples/chat.c (shared and static, flags from pkg-config) and
#      ffi/tests/test_ffi.c with the system C compiler, warnings as errors, and run them;
#   4. run test_ffi under valgrind (installed here if missing when running as root; otherwise
#      AddressSanitizer, and it says so): no leak, no invalid access, or it fails;
#   5. run ffi/examples/chat.py (ctypes) with python3.
#
# Works from any directory, as root, with no standard input. Honours CARGO_TARGET_DIR.
set -euo pipefail

ffi_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$ffi_dir")
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
export CARGO_TARGET_DIR="$target"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"

step() { printf '\n==> ffi: %s\n' "$*"; }
started=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "1. the header is current (cbindgen)"
bash "$ffi_dir/gen-header.sh" "$work/missive.h"
if ! cmp -s "$work/missive.h" "$ffi_dir/include/missive.h"; then
    diff -u "$ffi_dir/include/missive.h" "$work/missive.h" | head -n 60 || true
    echo "!! ffi/include/missive.h is stale: run 'bash ffi/gen-header.sh' and commit it"
    exit 1
fi
echo "ffi/include/missive.h matches ffi/src"

step "2. build and install the library into a staging prefix"
prefix="$target/missive-c"
bash "$ffi_dir/install.sh" "$prefix"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
cc=${CC:-gcc}
cflags=(-std=c11 -Wall -Wextra -Werror -pedantic -g -O1)
shared_libs=($(pkg-config --libs missive) "-Wl,-rpath,$prefix/lib" -lpthread)
static_libs=("$prefix/lib/libmissive.a"
    $(pkg-config --static --libs-only-l missive | sed 's/-lmissive\b//'))

step "3. compile and run the C example and the C tests ($cc)"
"$cc" "${cflags[@]}" $(pkg-config --cflags missive) "$ffi_dir/examples/chat.c" \
    -o "$work/chat" "${shared_libs[@]}"
"$cc" "${cflags[@]}" $(pkg-config --cflags missive) "$ffi_dir/examples/chat.c" \
    -o "$work/chat-static" "${static_libs[@]}"
"$cc" "${cflags[@]}" $(pkg-config --cflags missive) "$ffi_dir/tests/test_ffi.c" \
    -o "$work/test_ffi" "${shared_libs[@]}"
# The example must show the whole story: the receipts, a group's status, the clean end.
expect_in() {
    if ! grep -qF -- "$2" "$1"; then
        cat "$1"
        echo "!! $(basename "$1") lacks: $2"
        exit 1
    fi
}
for chat in chat chat-static; do
    "$work/$chat" >"$work/$chat.out"
    expect_in "$work/$chat.out" "[Bob's phone] Alice: Hi Bob!"
    expect_in "$work/$chat.out" "[Alice's phone] Bob read up to seq 1"
    expect_in "$work/$chat.out" '"Dinner at 8?": delivered to 2 of 2, read by 2'
    expect_in "$work/$chat.out" "members now: Alice (admin) Bob (admin)"
    expect_in "$work/$chat.out" "done"
    echo "$chat: ok ($(wc -l <"$work/$chat.out") lines of output)"
done
cat "$work/chat.out"
"$work/test_ffi"

step "4. test_ffi under valgrind: no leak, no invalid access"
if ! command -v valgrind >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "valgrind is missing: installing it"
    apt-get install -y valgrind </dev/null >/dev/null 2>&1 ||
        { apt-get update </dev/null >/dev/null 2>&1 &&
            apt-get install -y valgrind </dev/null >/dev/null 2>&1; } || true
fi
if command -v valgrind >/dev/null 2>&1; then
    valgrind --leak-check=full --show-leak-kinds=definite,indirect,possible \
        --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=1 \
        "$work/test_ffi" 2>"$work/valgrind.log" || {
        cat "$work/valgrind.log"
        echo "!! valgrind found errors or leaks"
        exit 1
    }
    grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|in use at exit" \
        "$work/valgrind.log" | sed 's/^==[0-9]*== */valgrind: /'
else
    echo "valgrind is not available: falling back to AddressSanitizer (with LeakSanitizer)"
    "$cc" "${cflags[@]}" -fsanitize=address -fno-omit-frame-pointer $(pkg-config --cflags missive) \
        "$ffi_dir/tests/test_ffi.c" -o "$work/test_ffi-asan" "${shared_libs[@]}"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 "$work/test_ffi-asan"
    echo "AddressSanitizer: no errors, no leaks"
fi

step "5. the Python example (ctypes)"
MISSIVE_LIB="$prefix/lib/libmissive.so" python3 "$ffi_dir/examples/chat.py" >"$work/chat.py.out"
expect_in "$work/chat.py.out" "[Alice's phone] Bob read up to seq 1"
expect_in "$work/chat.py.out" "members now: Alice (admin), Bob (admin)"
expect_in "$work/chat.py.out" "done"
cat "$work/chat.py.out"

step "all C API checks passed in $(($(date +%s) - started)) s"
