#!/usr/bin/env bash
# Local copy benchmark: dockyard vs skopeo on the same synthetic images.
# Builds a ~20 MB and a ~2 GB image (4 layers each, half random / half
# compressible data), then times `copy docker-archive → OCI layout` and
# `copy OCI layout → docker-archive` with /usr/bin/time -v, printing wall
# time and peak RSS for both tools and their ratios (dockyard / skopeo).
# Not a test: nothing here asserts; it prints what it measured.
#
#   bash bench/copy.sh            # both sizes
#   SIZES="20" bash bench/copy.sh # only the small one (MB)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v skopeo >/dev/null || { echo "bench needs skopeo (apt-get install skopeo)"; exit 1; }
[ -x /usr/bin/time ] || { echo "bench needs GNU time (apt-get install time)"; exit 1; }
cargo build --release -q -p dockyard-cli
dockyard=$PWD/target/release/dockyard
work=${BENCH_DIR:-$PWD/target/bench}
mkdir -p "$work"
export DOCKYARD_CACHE="$work/cache"

# measure LABEL CMD... → prints "LABEL wall_s rss_kb"
measure() {
  local label=$1; shift
  sync
  /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null 2>"$work/err.txt" || { cat "$work/err.txt"; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  echo "$label $wall $rss"
}

make_image() {  # make_image MB → $work/img-MB.tar
  local mb=$1 out="$work/img-$1.tar"
  [ -f "$out" ] && return
  local per=$((mb / 4))
  for i in 1 2 3 4; do
    local d="$work/src-$mb/l$i"
    mkdir -p "$d"
    # half random (incompressible), half text-like (compressible)
    head -c $((per * 512 * 1024)) /dev/urandom > "$d/random.bin"
    (set +o pipefail; yes "dockyard layer $i line of compressible filler text" | head -c $((per * 512 * 1024)) > "$d/text.txt")
  done
  # one layer per step, base first
  local prev=scratch
  for i in 1 2 3 4; do
    "$dockyard" mutate "$prev" "oci:$work/build-$mb:step$i" --add "$work/src-$mb/l$i:/layer$i" >/dev/null
    prev="oci:$work/build-$mb:step$i"
  done
  "$dockyard" copy "$prev" "docker-archive:$out:bench/img:$mb" >/dev/null
  rm -rf "$work/src-$mb" "$work/build-$mb"
}

printf '%-34s %10s %10s %12s %12s %8s %8s\n' case dockyard_s skopeo_s dockyard_kb skopeo_kb time_x rss_x
for mb in ${SIZES:-20 2000}; do
  make_image "$mb"
  img="$work/img-$mb.tar"
  for dir in to-oci to-archive; do
    rm -rf "$work/out-d" "$work/out-s" "$work/out-d.tar" "$work/out-s.tar"
    if [ $dir = to-oci ]; then
      d=$(measure dockyard "$dockyard" copy "docker-archive:$img" "oci:$work/out-d:x")
      s=$(measure skopeo skopeo copy -q "docker-archive:$img" "oci:$work/out-s:x")
    else
      "$dockyard" copy "docker-archive:$img" "oci:$work/src-oci:x" >/dev/null
      d=$(measure dockyard "$dockyard" copy "oci:$work/src-oci:x" "docker-archive:$work/out-d.tar:bench/x:1")
      s=$(measure skopeo skopeo copy -q "oci:$work/src-oci:x" "docker-archive:$work/out-s.tar:bench/x:1")
      rm -rf "$work/src-oci"
    fi
    read -r _ dw dr <<<"$d"
    read -r _ sw sr <<<"$s"
    printf '%-34s %10.2f %10.2f %12d %12d %8.2f %8.2f\n' "copy ${mb}MB docker-archive $dir" "$dw" "$sw" "$dr" "$sr" \
      "$(echo "$dw / $sw" | bc -l)" "$(echo "$dr / $sr" | bc -l)"
  done
  rm -rf "$work/out-d" "$work/out-s" "$work/out-d.tar" "$work/out-s.tar"
done
echo "time_x, rss_x: dockyard / skopeo (lower is better for dockyard)"
