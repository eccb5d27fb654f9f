#!/usr/bin/env bash
# The built-in offline example: build an image from examples/hello on
# scratch, write it as a docker archive (hello.tar), inspect it, and export
# its root filesystem. Run it twice: the digest does not change.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p dockyard-cli
dockyard=target/release/dockyard
export DOCKYARD_CACHE="${DOCKYARD_CACHE:-$PWD/target/example-cache}"

$dockyard mutate scratch docker-archive:hello.tar:dockyard/hello:latest \
  --add examples/hello:/ \
  --env GREETING=hello --label org.opencontainers.image.title=hello \
  --workdir /srv/www --cmd '["cat", "/srv/www/index.html"]'
$dockyard inspect docker-archive:hello.tar
rm -rf target/hello-rootfs
$dockyard export docker-archive:hello.tar target/hello-rootfs
find target/hello-rootfs | sort
