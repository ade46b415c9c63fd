#!/usr/bin/env bash
# Regenerates the C header from ffi/src with the cbindgen CLI (0.29; installed here if missing).
#
#   bash ffi/gen-header.sh            writes ffi/include/missive.h
#   bash ffi/gen-header.sh OUT.h      writes OUT.h instead (ffi/run.sh compares it with the
#                                     committed header)
set -euo pipefail

ffi_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

if ! cbindgen --version 2>/dev/null | grep -q '^cbindgen 0\.29\.'; then
    echo "== installing cbindgen 0.29" >&2
    cargo install cbindgen --locked --version '^0.29' </dev/null >&2
fi

out=${1:-$ffi_dir/include/missive.h}
mkdir -p "$(dirname "$out")"
cbindgen --quiet --config "$ffi_dir/cbindgen.toml" --output "$out" "$ffi_dir" </dev/null
