#!/usr/bin/env bash
# Smoke run of the benchmark tools: `peers --quick` (Missive against SQLite, fjall and redb; not
# RocksDB) and `missive-load --spawn-server --quick` (a few dozen users, a few hundred messages
# over real WebSockets). Checks that both complete and produce their outputs, not their figures.
#
#   bash benches/smoke.sh            # builds (release) into $CARGO_TARGET_DIR, else ./target
#
# After the build it takes well under a minute here (each tool is killed, with everything it
# started, if it runs past its time limit), writes only to a temporary directory, and leaves no
# process running.
set -euo pipefail
set -m # every background job gets its own process group, so a tool and its children die together

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
tmp="$(mktemp -d -t missive-smoke.XXXXXX)"
groups=()

cleanup() {
    for pgid in "${groups[@]}"; do
        kill -KILL -- "-$pgid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# run_bounded SECONDS COMMAND...: runs COMMAND in its own process group; past SECONDS, the group
# gets SIGTERM, then SIGKILL 5 s later. Returns COMMAND's status; kills whatever of its group is
# left either way.
run_bounded() {
    local secs="$1"
    shift
    "$@" &
    local pid=$!
    groups+=("$pid")
    (
        sleep "$secs"
        echo "smoke: '$1' ran past ${secs}s; stopping it" >&2
        kill -TERM -- "-$pid" 2>/dev/null
        sleep 5
        kill -KILL -- "-$pid" 2>/dev/null
    ) &
    local watchdog=$!
    groups+=("$watchdog")
    local status=0
    wait "$pid" || status=$?
    kill -KILL -- "-$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    kill -KILL -- "-$pid" 2>/dev/null || true
    return "$status"
}

echo "smoke: building missive-server, missive-load and peers (release) into $target" >&2
(cd "$root" && cargo build --release --locked --quiet -p missive-server -p missive-load)
cargo build --release --locked --quiet --manifest-path "$root/benches/peers/Cargo.toml" --target-dir "$target"

started=$SECONDS
printf '# results\n' >"$tmp/RESULTS.md"
echo "smoke: peers --quick" >&2
run_bounded 150 "$target/release/peers" --quick --dir "$tmp" \
    --results "$tmp/RESULTS.md" --svg "$tmp/peers.svg" >"$tmp/peers.md"
grep -q '<!-- peers:begin -->' "$tmp/RESULTS.md"
grep -q '| 1:1 appends, fsync per commit' "$tmp/RESULTS.md"
grep -q '<svg' "$tmp/peers.svg"
if find "$tmp" -maxdepth 1 -name 'missive-peers-*' | grep -q .; then
    echo "smoke: peers left its stores behind" >&2
    exit 1
fi

echo "smoke: missive-load --spawn-server --quick" >&2
run_bounded 120 "$target/release/missive-load" --spawn-server \
    --server-bin "$target/release/missive-server" --quick --json "$tmp/load.json" >"$tmp/load.md"
grep -q '"delivered_per_s"' "$tmp/load.json"
if grep -q '"delivered": 0,' "$tmp/load.json"; then
    echo "smoke: missive-load delivered nothing" >&2
    exit 1
fi

echo "smoke: both tools completed in $((SECONDS - started)) s" >&2
