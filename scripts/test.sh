#!/usr/bin/env bash
# Every test: the Rust workspace, then the Python bindings — the wheel is
# built once with maturin (in the dev profile, so it reuses what cargo
# test built), installed into a venv, and its pytest suite run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
venv=target/py-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check 'maturin>=1.5,<2' pytest
rm -rf target/wheels
"$venv/bin/maturin" build -q -m python/Cargo.toml --out target/wheels
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/dockyard-*.whl
(cd python/tests && "../../$venv/bin/python" -m pytest -q -p no:cacheprovider .)
