#!/usr/bin/env bash
# The main offline example: build the conda environment of
# examples/conda/env.yml (from the real channel shipped in
# examples/conda/channel) into an image on scratch with one layer per
# package; inspect it, export it, and run its program (a static one, so the
# image needs no base) with `dockyard run`. Run it twice: the second build
# reuses every layer and gives the same digest.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p dockyard-cli
dockyard=target/release/dockyard
export DOCKYARD_CACHE="${DOCKYARD_CACHE:-$PWD/target/example-cache}"

$dockyard build examples/conda/env.yml -o greet.tar --sbom greet.sbom.json
$dockyard inspect docker-archive:greet.tar
rm -rf target/greet-rootfs
$dockyard export docker-archive:greet.tar target/greet-rootfs
echo "--- /opt/conda/bin/greet, its prefix rewritten to /opt/conda:"
grep PREFIX= target/greet-rootfs/opt/conda/bin/greet
echo "--- running the image (its cmd: /opt/conda/bin/hello), without a daemon (dockyard run):"
if ! $dockyard run docker-archive:greet.tar; then
  echo "(no runtime here: install bubblewrap or runc, or: docker load -i greet.tar && docker run --rm dockyard/greet:1)"
fi
