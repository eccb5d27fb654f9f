#!/usr/bin/env bash
# Conda build benchmark: a generated channel of 50 packages (0.5–4 MB each,
# ~94 MB, partly compressible; crates/dockyard-testsupport/examples/
# write_bench_channel.rs), built one layer per package and pushed to a
# local docker-registry. Three runs, medians:
#   cold      fresh cache, empty repository: solve, install, layer, push
#   change    bench25 1.0 → 1.1, same cache: only its layer (and the top
#             layer, and the config) should be made and uploaded
#   unchanged the same spec again
# Prints wall time, peak RSS (GNU time), layers made/reused, blobs and bytes
# uploaded, and the change/cold ratio (target ≤ 0.10). Not a test.
#
#   bash bench/conda.sh
# Needs: docker-registry, GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v docker-registry >/dev/null || { echo "bench needs docker-registry (see .ci/run)"; exit 1; }
[ -x /usr/bin/time ] || { echo "bench needs GNU time (apt-get install time)"; exit 1; }
cargo build --release -q -p dockyard-cli
cargo build --release -q -p dockyard-testsupport --example write_bench_channel
dockyard=$PWD/target/release/dockyard
work=${BENCH_DIR:-$PWD/target/bench}
mkdir -p "$work"
channel=$work/conda-channel
if [ ! -f "$channel/linux-64/repodata.json" ]; then
  rm -rf "$channel"
  target/release/examples/write_bench_channel "$channel" >/dev/null
fi
run=$(mktemp -d "$work/conda.XXXX")
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$run"; }
trap cleanup EXIT

cat > "$run/registry.yml" <<YML
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $run/registry
http:
  addr: 127.0.0.1:0
  secret: bench
YML
docker-registry serve "$run/registry.yml" 2>"$run/registry.log" &
pid=$!
port=
for _ in $(seq 100); do
  port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$run/registry.log" | sed 's/.*://' || true)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "docker-registry did not start"; cat "$run/registry.log"; exit 1; }

spec() { # version of bench25, file
  {
    echo "name: bench"
    echo "channels: [$channel]"
    echo "dependencies:"
    for i in $(seq -w 0 49); do
      if [ "$i" = 25 ]; then echo "  - bench25 ==$1"; else echo "  - bench$i"; fi
    done
    echo "image:"
    echo "  base: scratch"
    echo "  name: bench"
    echo "  tag: '1'"
  } > "$2"
}

# One build: prints "seconds rss_kb new_layers reused_layers blobs bytes".
build() { # cache spec ref
  # Wall time to the millisecond (GNU time's %e has 10 ms steps, a tenth
  # of a rebuild); peak RSS from GNU time.
  local t0=$EPOCHREALTIME
  /usr/bin/time -f "%M" -o "$run/time" \
    env DOCKYARD_CACHE="$1" "$dockyard" build "$2" --push "127.0.0.1:$port/$3" \
    >/dev/null 2>"$run/log" || { cat "$run/log"; exit 1; }
  local secs
  secs=$(echo "$EPOCHREALTIME - $t0" | bc -l)
  read -r rss < "$run/time"
  layers=$(grep -o '([0-9]* reused, [0-9]* new)' "$run/log" | tr -d '(),' | awk '{print $3, $1}')
  pushed=$(grep -o '[0-9]* blobs uploaded ([0-9]* bytes)' "$run/log" | tr -d '(' | awk '{print $1, $4}')
  echo "$secs $rss $layers $pushed"
}

for r in 1 2 3; do
  mkdir -p "$run/r$r"
  spec 1.0 "$run/r$r/v1.yml"
  spec 1.1 "$run/r$r/v2.yml"
  cp "$run/r$r/v2.yml" "$run/r$r/v2again.yml"
  build "$run/cache$r" "$run/r$r/v1.yml" "bench/r$r:1" >> "$run/cold"
  build "$run/cache$r" "$run/r$r/v2.yml" "bench/r$r:2" >> "$run/change"
  build "$run/cache$r" "$run/r$r/v2again.yml" "bench/r$r:3" >> "$run/unchanged"
done

median() { sort -n | sed -n 2p; }
col() { awk -v c="$2" '{print $c}' "$run/$1" | median; }
cold_s=$(col cold 1)
echo
echo "conda build → push, 50 packages (~94 MB), $(nproc) cores, $(date -u +%F); medians of 3"
echo
echo "| case | time | peak RSS | layers made / reused | blobs uploaded | bytes uploaded | time / cold |"
echo "|---|---|---|---|---|---|---|"
for c in cold change unchanged; do
  s=$(col $c 1)
  printf '| %s | %.3f s | %d MB | %s / %s | %s | %s | %.3f |\n' "$c" "$s" "$(( $(col $c 2) / 1024 ))" \
    "$(col $c 3)" "$(col $c 4)" "$(col $c 5)" "$(col $c 6)" "$(echo "$s / $cold_s" | bc -l)"
done
