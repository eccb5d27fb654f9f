#!/usr/bin/env bash
# Registry benchmark: pull and push of a ~220 MB, 4-layer image (busybox
# base + 3 filler layers, half random / half compressible) through a local
# docker-registry, dockyard vs skopeo vs python-docker 0.2.0 (and, for the
# pulls into an OCI layout, oci-client 0.18 through bench/oci-client-pull),
# in one run. Prints wall time and peak RSS (/usr/bin/time -v) and the
# ratios, and the bytes an unchanged re-push uploads. Not a test: nothing
# here asserts.
#
#   bash bench/registry.sh
# Needs: docker-registry, skopeo, busybox-static, GNU time, python3 -m venv
# (python-docker is pip-installed into target/bench/venv on first run;
# bench/oci-client-pull is built into target/bench/oci-client-target).
set -euo pipefail
cd "$(dirname "$0")/.."
for t in docker-registry skopeo busybox; do
  command -v $t >/dev/null || { echo "bench needs $t (see .ci/run for the apt-get line)"; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench needs GNU time (apt-get install time)"; exit 1; }
cargo build --release -q -p dockyard-cli
dockyard=$PWD/target/release/dockyard
# oci-client 0.18 peer: a standalone crate (not a workspace member), rebuilt
# only when its sources are newer than the binary.
ocp=$PWD/bench/oci-client-pull
ociclient=$PWD/target/bench/oci-client-target/release/oci-client-pull
if [ ! -x "$ociclient" ] || [ -n "$(find "$ocp/Cargo.toml" "$ocp/Cargo.lock" "$ocp/src" -newer "$ociclient" 2>/dev/null)" ]; then
  cargo build --release -q --manifest-path "$ocp/Cargo.toml" --target-dir "$PWD/target/bench/oci-client-target"
fi
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

# --- the uncompressed-layer image users push, built once and cached ---
# 4 layers, ~300 MB uncompressed: a Debian minbase rootfs (debootstrap,
# cached in $BENCH_CACHE; the bench stops if it cannot be made, since no
# stand-in is the same image), a half-compressible layer, a text layer of 3,000 files, a random
# layer. Written by mutate ($work/imgraw: OCI layout, uncompressed layers)
# and by skopeo as a docker-archive ($work/imgraw.tar).
cache=${BENCH_CACHE:-/work/bench-cache}
if [ ! -f "$work/imgraw.tar" ]; then
  rootfs=$cache/bookworm-minbase
  if [ ! -x "$rootfs/bin/sh" ]; then
    mkdir -p "$cache"
    command -v debootstrap >/dev/null || { echo "bench needs debootstrap (apt-get install debootstrap)"; exit 1; }
    if ! debootstrap --variant=minbase bookworm "$rootfs" >"$cache/debootstrap.log" 2>&1; then
      rm -rf "$rootfs"
      echo "debootstrap failed (see $cache/debootstrap.log): the bench needs Debian's mirror once"
      exit 1
    fi
  fi
  # As an image's rootfs: no package cache, an empty /dev (no device nodes in layers).
  rm -f "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin
  find "$rootfs/dev" -mindepth 1 -delete 2>/dev/null || true
  src=$(mktemp -d "$work/src.XXXX")
  rm -rf "$work/imgraw"
  mk() { DOCKYARD_CACHE="$src/cache" "$dockyard" mutate "$@" >/dev/null; }
  mk scratch "oci:$work/imgraw:base" --add "$rootfs:/"
  # half-compressible: 1 MiB runs of random bytes and of numbered text lines, alternating
  mkdir -p "$src/half"
  python3 -c '
import os, sys
line = b"".join(b"line %d of a half-compressible file, some words repeat\n" % i for i in range(20000))[: 1 << 20]
with open(sys.argv[1], "wb") as f:
    for i in range(48):
        f.write(os.urandom(1 << 20) if i % 2 else line)
' "$src/half/mixed.bin"
  mk "oci:$work/imgraw:base" "oci:$work/imgraw:l2" --add "$src/half:/data/half"
  mkdir -p "$src/text"
  (set +o pipefail; cd /usr/include && find . -type f | sort | head -3000 | tar -cf - -T - | tar -xf - -C "$src/text")
  mk "oci:$work/imgraw:l2" "oci:$work/imgraw:l3" --add "$src/text:/data/text"
  mkdir -p "$src/rand"; head -c $((40 * 1024 * 1024)) /dev/urandom > "$src/rand/random.bin"
  mk "oci:$work/imgraw:l3" "oci:$work/imgraw:final" --add "$src/rand:/data/rand"
  skopeo copy -q "oci:$work/imgraw:final" "docker-archive:$work/imgraw.tar.tmp:bench/raw:1"
  mv "$work/imgraw.tar.tmp" "$work/imgraw.tar"
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
# table CASE DOCKYARD_S SKOPEO_S PYTHON_DOCKER_S OCI_CLIENT DOCKYARD_RSS_KB SKOPEO_RSS_KB PUSHED:
# one summary row; PYTHON_DOCKER_S and OCI_CLIENT are preformatted cells, "-" where the tool does not apply.
table() {
  local bytes=$8
  [ "$bytes" != "-" ] && bytes=$(echo "$8" | awk '{printf "%.1f / %.1f MB", $1/1e6, $3/1e6}')
  printf '| %-32s | %6.2f s | %6.2f s | %13s | %15s | %5.2f | %3.0f MB / %3.0f MB | %-23s |\n' "$1" "$2" "$3" "$4" "$5" \
    "$(echo "$2 / $3" | bc -l)" "$(echo "$6 / 1024" | bc -l)" "$(echo "$7 / 1024" | bc -l)" "$bytes" >> "$run/table"
}

# --- seed the source registry (gzip layers, compressed by dockyard once) ---
start_registry src; SRC=$REG
# Docker schema 2: python-docker asks for nothing else.
DOCKYARD_CACHE="$run/seed-cache" "$dockyard" push --format v2s2 "oci:$work/img220:final" "$SRC/bench/img:1" >/dev/null 2>&1
size=$(du -sb "$run/src/data" | cut -f1)
echo "image: 4 layers, $(du -sb "$work/img220/blobs" | cut -f1) bytes uncompressed on disk, registry holds $size bytes"
echo

# best3 LABEL CMD... : run CMD three times ({i} in arguments is replaced by
# the run number, so each run gets fresh caches and outputs); print the
# median wall time and the largest peak RSS as "wall rss".
best3() {
  local walls=() rsses=() i
  for i in 1 2 3; do
    local args=() a
    for a in "$@"; do args+=("${a//\{i\}/$i}"); done
    clear_skopeo_cache
    read -r w r < <(measure "${args[@]}")
    walls+=("$w"); rsses+=("$r")
    # What the run wrote goes (BEST3_DROP: paths with {i}): on this machine
    # writes slow to half speed once ~12 GB of page cache has built up, so
    # runs that pile up outputs would time the cache, not the tool.
    for a in ${BEST3_DROP:-}; do rm -rf "${a//\{i\}/$i}"; done
  done
  local med max
  med=$(printf '%s\n' "${walls[@]}" | sort -g | sed -n 2p)
  max=$(printf '%s\n' "${rsses[@]}" | sort -g | tail -1)
  echo "$med $max"
}

echo "PULL  $SRC/bench/img:1   (median of 3 runs, fresh caches each)"
read -r d1w d1r < <(BEST3_DROP="$run/c1-{i}" best3 env DOCKYARD_CACHE="$run/c1-{i}" "$dockyard" pull "$SRC/bench/img:1")
row "dockyard pull (into its store)" "$d1w" "$d1r"
read -r d2w d2r < <(BEST3_DROP="$run/c2-{i} $run/d-{i}.tar" best3 env DOCKYARD_CACHE="$run/c2-{i}" "$dockyard" pull "$SRC/bench/img:1" -o "$run/d-{i}.tar")
row "dockyard pull -o docker-archive" "$d2w" "$d2r"
read -r d3w d3r < <(BEST3_DROP="$run/c3-{i} $run/d-oci-{i}" best3 env DOCKYARD_CACHE="$run/c3-{i}" "$dockyard" pull "$SRC/bench/img:1" --oci "$run/d-oci-{i}")
row "dockyard pull --oci layout" "$d3w" "$d3r"
read -r s1w s1r < <(BEST3_DROP="$run/s-{i}.tar" best3 skopeo copy -q --src-tls-verify=false "docker://$SRC/bench/img:1" "docker-archive:$run/s-{i}.tar:bench/img:1")
row "skopeo copy → docker-archive" "$s1w" "$s1r"
read -r s2w s2r < <(best3 skopeo copy -q --src-tls-verify=false "docker://$SRC/bench/img:1" "oci:$run/s-oci-{i}:x")
row "skopeo copy → oci layout" "$s2w" "$s2r"
cat > "$run/pd_pull.py" <<PY
import sys
from python_docker.registry import Registry
img = Registry(hostname="http://$SRC").pull_image("bench/img", "1")
img.write_filename(sys.argv[1])
PY
read -r p1w p1r < <(BEST3_DROP="$run/p-{i}.tar" best3 "$work/venv/bin/python" "$run/pd_pull.py" "$run/p-{i}.tar")
row "python-docker 0.2.0 pull + write" "$p1w" "$p1r"
read -r o1w o1r < <(BEST3_DROP="$run/o-oci-{i}" best3 "$ociclient" "$SRC/bench/img:1" "$run/o-oci-{i}")
row "oci-client 0.18 pull → oci layout" "$o1w" "$o1r"
ratio "dockyard/skopeo (docker-archive)" "$d2w" "$d2r" "$s1w" "$s1r"
ratio "dockyard/skopeo (oci layout)" "$d3w" "$d3r" "$s2w" "$s2r"
ratio "dockyard store/skopeo oci layout" "$d1w" "$d1r" "$s2w" "$s2r"
ratio "dockyard/python-docker (docker-archive)" "$d2w" "$d2r" "$p1w" "$p1r"
ratio "dockyard store/oci-client (oci layout)" "$d1w" "$d1r" "$o1w" "$o1r"
ratio "dockyard/oci-client (oci layout)" "$d3w" "$d3r" "$o1w" "$o1r"
oc=$(printf '%.2f s, %.0f MB' "$o1w" "$(echo "$o1r / 1024" | bc -l)")
table "pull to store (220 MB)" "$d1w" "$s2w" "-" "$oc" "$d1r" "$s2r" "-"
table "pull --oci layout (220 MB)" "$d3w" "$s2w" "-" "$oc" "$d3r" "$s2r" "-"
table "pull to docker-archive (220 MB)" "$d2w" "$s1w" "$(printf '%.2f s' "$p1w")" "-" "$d2r" "$s1r" "-"
rm -rf "$run"/d-*.tar "$run"/s-*.tar "$run"/p-*.tar "$run"/d-oci-* "$run"/s-oci-[23] "$run"/o-oci-* "$run"/c[123]-*
echo

echo "PUSH  (gzip OCI layout → empty registry; median of 3, each run to its own empty registry)"
walls_d=(); walls_s=()
for i in 1 2 3; do
  start_registry "pushd$i"; PD=$REG
  start_registry "pushs$i"; PS=$REG
  read -r w r < <(DOCKYARD_CACHE="$run/c4-$i" measure "$dockyard" push "oci:$run/s-oci-1:x" "$PD/bench/img:1")
  walls_d+=("$w $r")
  clear_skopeo_cache
  read -r w r < <(measure skopeo copy -q --dest-tls-verify=false "oci:$run/s-oci-1:x" "docker://$PS/bench/img:1")
  walls_s+=("$w $r")
done
read -r d4w d4r < <(printf '%s\n' "${walls_d[@]}" | sort -g | sed -n 2p)
read -r s4w s4r < <(printf '%s\n' "${walls_s[@]}" | sort -g | sed -n 2p)
row "dockyard push" "$d4w" "$d4r"
row "skopeo copy → docker://" "$s4w" "$s4r"
ratio "dockyard/skopeo push" "$d4w" "$d4r" "$s4w" "$s4r"
table "push gzip OCI layout (220 MB)" "$d4w" "$s4w" "-" "-" "$d4r" "$s4r" "-"
DOCKYARD_CACHE="$run/c4-3" "$dockyard" push "oci:$run/s-oci-1:x" "$PD/bench/img:1" >/dev/null 2>"$run/repush.txt"
echo "unchanged re-push: $(grep -o '[0-9]* blobs uploaded ([0-9]* bytes)' "$run/repush.txt")"
echo

# --- pushes of what users push: uncompressed layers (~300 MB) ---
# push_case LABEL DOCKYARD_SRC SKOPEO_SRC: each tool pushes three times, each
# time to its own empty registry; prints and tabulates the median wall time,
# the largest peak RSS and the blob bytes the registry then holds.
blob_bytes() { du -sb "$run/$1/data/docker/registry/v2/blobs" | cut -f1; }
push_case() {
  local label=$1 dsrc=$2 ssrc=$3 ds=() ss=() i w r dreg
  for i in 1 2 3; do
    start_registry "$4d$i"; dreg=$REG
    read -r w r < <(DOCKYARD_CACHE="$run/$4c$i" measure "$dockyard" push "$dsrc" "$REG/bench/raw:1")
    ds+=("$w $r $(blob_bytes "$4d$i")")
    start_registry "$4s$i"
    clear_skopeo_cache
    read -r w r < <(measure skopeo copy -q --dest-tls-verify=false "$ssrc" "docker://$REG/bench/raw:1")
    ss+=("$w $r $(blob_bytes "$4s$i")")
  done
  read -r dw _ db < <(printf '%s\n' "${ds[@]}" | sort -g | sed -n 2p)
  read -r sw _ sb < <(printf '%s\n' "${ss[@]}" | sort -g | sed -n 2p)
  dr=$(printf '%s\n' "${ds[@]}" | awk '{print $2}' | sort -g | tail -1)
  sr=$(printf '%s\n' "${ss[@]}" | awk '{print $2}' | sort -g | tail -1)
  row "dockyard push ($label)" "$dw" "$dr"
  row "skopeo copy → docker:// ($label)" "$sw" "$sr"
  ratio "dockyard/skopeo push ($label)" "$dw" "$dr" "$sw" "$sr"
  printf '  pushed bytes: dockyard %d, skopeo %d (ratio %.4f)\n' "$db" "$sb" "$(echo "$db / $sb" | bc -l)"
  table "push $label" "$dw" "$sw" "-" "-" "$dr" "$sr" "$db / $sb"
  # An unchanged re-push from the same store uploads nothing.
  DOCKYARD_CACHE="$run/$4c3" "$dockyard" push "$dsrc" "$dreg/bench/raw:1" >/dev/null 2>"$run/repush.txt"
  echo "  unchanged re-push: $(grep -o '[0-9]* blobs uploaded ([0-9]* bytes)' "$run/repush.txt")"
}

echo "PUSH  uncompressed layers → empty registry ($(du -b "$work/imgraw.tar" | cut -f1)-byte docker-archive; median of 3)"
echo "  (python-docker 0.2.0 cannot read a skopeo-written archive: KeyError 'os')"
push_case "docker-archive" "docker-archive:$work/imgraw.tar" "docker-archive:$work/imgraw.tar" pa
push_case "mutate-built OCI layout" "oci:$work/imgraw:final" "oci:$work/imgraw:final" pm
echo

# --- pull of that image into a docker archive ---
start_registry rawsrc; RAWSRC=$REG
DOCKYARD_CACHE="$run/seed-raw" "$dockyard" push --format v2s2 "docker-archive:$work/imgraw.tar" "$RAWSRC/bench/raw:1" >/dev/null 2>&1
echo "PULL  $RAWSRC/bench/raw:1 → docker-archive (median of 3)"
read -r d5w d5r < <(BEST3_DROP="$run/c5-{i} $run/d5-{i}.tar" best3 env DOCKYARD_CACHE="$run/c5-{i}" "$dockyard" pull "$RAWSRC/bench/raw:1" -o "$run/d5-{i}.tar")
row "dockyard pull -o docker-archive (300 MB)" "$d5w" "$d5r"
read -r s5w s5r < <(BEST3_DROP="$run/s5-{i}.tar" best3 skopeo copy -q --src-tls-verify=false "docker://$RAWSRC/bench/raw:1" "docker-archive:$run/s5-{i}.tar:bench/raw:1")
row "skopeo copy → docker-archive (300 MB)" "$s5w" "$s5r"
ratio "dockyard/skopeo (docker-archive, 300 MB)" "$d5w" "$d5r" "$s5w" "$s5r"
table "pull 300 MB to docker-archive" "$d5w" "$s5w" "-" "-" "$d5r" "$s5r" "-"
rm -rf "$run"/d5-*.tar "$run"/s5-*.tar "$run"/c5-*
echo

echo "SUMMARY (medians of 3 runs; ratio = dockyard / skopeo wall time; RSS dockyard / skopeo; oci-client: wall time, peak RSS)"
printf '| %-32s | %8s | %8s | %13s | %15s | %5s | %-15s | %-23s |\n' case dockyard skopeo python-docker oci-client ratio "peak RSS" "pushed bytes"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..34})" ---------- ---------- --------------- ----------------- ------- ----------------- -------------------------
cat "$run/table"
