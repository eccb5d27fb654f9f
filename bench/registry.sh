#!/usr/bin/env bash
# Registry benchmark: pull and push of a ~220 MB, 4-layer image (busybox
# base + 3 filler layers, half random / half compressible) through a local
# docker-registry, dockyard vs skopeo vs python-docker 0.2.0, in one run.
# Prints wall time and peak RSS (/usr/bin/time -v) and the ratios, and the
# bytes an unchanged re-push uploads. Not a test: nothing here asserts.
#
#   bash bench/registry.sh
# Needs: docker-registry, skopeo, busybox-static, GNU time, python3 -m venv
# (python-docker is pip-installed into target/bench/venv on first run).
set -euo pipefail
cd "$(dirname "$0")/.."
for t in docker-registry skopeo busybox; do
  command -v $t >/dev/null || { echo "bench needs $t (see .ci/run for the apt-get line)"; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench needs GNU time (apt-get install time)"; exit 1; }
cargo build --release -q -p dockyard-cli
dockyard=$PWD/target/release/dockyard
work=${BENCH_DIR:-$PWD/target/bench}
mkdir -p "$work"
run=$(mktemp -d "$work/run.XXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$run"; }
trap cleanup EXIT

# --- python-docker, once ---
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q python-docker==0.2.0 'pydantic<2'
fi

# --- the image, built once and cached: target/bench/img220 (OCI layout, uncompressed layers) ---
if [ ! -f "$work/img220/index.json" ]; then
  src=$(mktemp -d "$work/src.XXXX")
  mkdir -p "$src/base/bin"; cp "$(command -v busybox)" "$src/base/bin/busybox"
  for a in sh ls cat echo; do ln -s busybox "$src/base/bin/$a"; done
  DOCKYARD_CACHE="$src/cache" "$dockyard" mutate scratch "oci:$work/img220:step0" --add "$src/base:/" >/dev/null
  prev="oci:$work/img220:step0"
  for i in 1 2 3; do
    mkdir -p "$src/l$i"
    head -c $((36 * 1024 * 1024)) /dev/urandom > "$src/l$i/random.bin"
    (set +o pipefail; yes "dockyard benchmark filler line $i, compressible text" | head -c $((37 * 1024 * 1024)) > "$src/l$i/text.txt")
    DOCKYARD_CACHE="$src/cache" "$dockyard" mutate "$prev" "oci:$work/img220:step$i" --add "$src/l$i:/data$i" >/dev/null
    prev="oci:$work/img220:step$i"
    rm -rf "$src/l$i"
  done
  DOCKYARD_CACHE="$src/cache" "$dockyard" copy "$prev" "oci:$work/img220:final" >/dev/null
  rm -rf "$src"
fi

start_registry() {  # start_registry NAME → sets REG (host:port)
  local dir="$run/$1"; mkdir -p "$dir"
  cat > "$dir/config.yml" <<YML
version: 0.1
log: {level: info}
storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:0}
YML
  docker-registry serve "$dir/config.yml" > "$dir/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do
    REG=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$dir/log" | head -1 | sed 's/listening on //') && [ -n "$REG" ] && break
    sleep 0.1
  done
  [ -n "$REG" ] || { cat "$dir/log"; exit 1; }
}

clear_skopeo_cache() { rm -f /var/lib/containers/cache/blob-info-cache-v1.* ~/.local/share/containers/cache/blob-info-cache-v1.* 2>/dev/null || true; }

# measure CMD... → "wall_seconds peak_rss_kb"
measure() {
  sync
  /usr/bin/time -v -o "$run/time.txt" "$@" >"$run/out.txt" 2>"$run/err.txt" || { cat "$run/err.txt"; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$run/time.txt" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$run/time.txt")
  echo "$wall $rss"
}

row() { printf '%-46s %9.2f s %9.1f MB\n' "$1" "$2" "$(echo "$3 / 1024" | bc -l)"; }
ratio() { printf '  ratio %-38s time %.2f   rss %.2f\n' "$1" "$(echo "$2 / $4" | bc -l)" "$(echo "$3 / $5" | bc -l)"; }

# --- seed the source registry (gzip layers, compressed by dockyard once) ---
start_registry src; SRC=$REG
# Docker schema 2: python-docker asks for nothing else.
DOCKYARD_CACHE="$run/seed-cache" "$dockyard" push --format v2s2 "oci:$work/img220:final" "$SRC/bench/img:1" >/dev/null 2>&1
size=$(du -sb "$run/src/data" | cut -f1)
echo "image: 4 layers, $(du -sb "$work/img220/blobs" | cut -f1) bytes uncompressed on disk, registry holds $size bytes"
echo

echo "PULL  $SRC/bench/img:1"
read -r d1w d1r < <(DOCKYARD_CACHE="$run/c1" measure "$dockyard" pull "$SRC/bench/img:1")
row "dockyard pull (into its store)" "$d1w" "$d1r"
read -r d2w d2r < <(DOCKYARD_CACHE="$run/c2" measure "$dockyard" pull "$SRC/bench/img:1" -o "$run/d.tar")
row "dockyard pull -o docker-archive" "$d2w" "$d2r"
read -r d3w d3r < <(DOCKYARD_CACHE="$run/c3" measure "$dockyard" pull "$SRC/bench/img:1" --oci "$run/d-oci")
row "dockyard pull --oci layout" "$d3w" "$d3r"
clear_skopeo_cache
read -r s1w s1r < <(measure skopeo copy -q --src-tls-verify=false "docker://$SRC/bench/img:1" "docker-archive:$run/s.tar:bench/img:1")
row "skopeo copy → docker-archive" "$s1w" "$s1r"
clear_skopeo_cache
read -r s2w s2r < <(measure skopeo copy -q --src-tls-verify=false "docker://$SRC/bench/img:1" "oci:$run/s-oci:x")
row "skopeo copy → oci layout" "$s2w" "$s2r"
cat > "$run/pd_pull.py" <<PY
from python_docker.registry import Registry
img = Registry(hostname="http://$SRC").pull_image("bench/img", "1")
img.write_filename("$run/p.tar")
PY
read -r p1w p1r < <(measure "$work/venv/bin/python" "$run/pd_pull.py")
row "python-docker 0.2.0 pull + write" "$p1w" "$p1r"
ratio "dockyard/skopeo (docker-archive)" "$d2w" "$d2r" "$s1w" "$s1r"
ratio "dockyard/skopeo (oci layout)" "$d3w" "$d3r" "$s2w" "$s2r"
ratio "dockyard/python-docker (docker-archive)" "$d2w" "$d2r" "$p1w" "$p1r"
echo

echo "PUSH  (gzip OCI layout → empty registry)"
start_registry pushd; PD=$REG
start_registry pushs; PS=$REG
read -r d4w d4r < <(DOCKYARD_CACHE="$run/c4" measure "$dockyard" push "oci:$run/s-oci:x" "$PD/bench/img:1")
row "dockyard push" "$d4w" "$d4r"
clear_skopeo_cache
read -r s4w s4r < <(measure skopeo copy -q --dest-tls-verify=false "oci:$run/s-oci:x" "docker://$PS/bench/img:1")
row "skopeo copy → docker://" "$s4w" "$s4r"
ratio "dockyard/skopeo push" "$d4w" "$d4r" "$s4w" "$s4r"
DOCKYARD_CACHE="$run/c4" "$dockyard" push "oci:$run/s-oci:x" "$PD/bench/img:1" >/dev/null 2>"$run/repush.txt"
echo "unchanged re-push: $(grep -o '[0-9]* blobs uploaded ([0-9]* bytes)' "$run/repush.txt")"
