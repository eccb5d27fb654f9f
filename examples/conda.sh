#!/usr/bin/env bash
# The main offline example: build the conda environment of
# examples/conda/env.yml (from the real channel shipped in
# examples/conda/channel) into an image with one layer per package, on a
# busybox base when busybox is installed (else scratch); inspect it, export
# it, and run its tool with `dockyard run`. Run it twice: the second build reuses every layer
# and gives the same digest.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p dockyard-cli
dockyard=target/release/dockyard
export DOCKYARD_CACHE="${DOCKYARD_CACHE:-$PWD/target/example-cache}"

base=scratch
if busybox=$(command -v busybox); then
  rm -rf target/busybox-rootfs && mkdir -p target/busybox-rootfs/bin
  cp "$busybox" target/busybox-rootfs/bin/busybox
  for applet in sh cat ls echo; do ln -s busybox "target/busybox-rootfs/bin/$applet"; done
  $dockyard mutate scratch docker-archive:target/busybox-base.tar:busybox:local \
    --add target/busybox-rootfs:/ >/dev/null
  base=docker-archive:target/busybox-base.tar
fi

$dockyard build examples/conda/env.yml --base "$base" -o greet.tar --sbom greet.sbom.json
$dockyard inspect docker-archive:greet.tar
rm -rf target/greet-rootfs
$dockyard export docker-archive:greet.tar target/greet-rootfs
echo "--- /opt/conda/bin/greet, its prefix rewritten to /opt/conda:"
grep PREFIX= target/greet-rootfs/opt/conda/bin/greet
if [ "$base" != scratch ]; then
  echo "--- running greet in the image, without a daemon (dockyard run):"
  $dockyard run docker-archive:greet.tar ||
    echo "(no runtime here: install bubblewrap or runc, or: docker load -i greet.tar && docker run --rm dockyard/greet:1)"
else
  echo "--- run it: docker load -i greet.tar && docker run --rm dockyard/greet:1"
fi
