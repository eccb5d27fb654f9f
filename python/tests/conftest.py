"""Fixtures: a real registry (Debian's docker-registry) on a free loopback
port, and a busybox image in it under the names the seed programs use."""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO.parent / "shared" / "seeds"


def require(tool):
    """The tool's path; under CI a missing tool fails, elsewhere it skips."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") in ("true", "1"):
            pytest.fail("required tool %s is not installed; .ci/run must install it" % tool)
        pytest.skip("%s is not installed" % tool)
    return path


class RealRegistry:
    def __init__(self, root: Path):
        self.root = root
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n"
            "    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n"
            "  addr: 127.0.0.1:0\n  secret: dockyard-test\n" % (root / "data")
        )
        self.access_log = root / "access.log"
        self.errors = root / "errors.log"
        self.proc = subprocess.Popen(
            [require("docker-registry"), "serve", str(config)],
            stdout=self.access_log.open("wb"),
            stderr=self.errors.open("wb"),
        )
        deadline = time.time() + 20
        self.port = None
        while self.port is None:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.errors.read_text())
            if m:
                self.port = int(m.group(1))
            elif time.time() > deadline or self.proc.poll() is not None:
                self.proc.kill()
                raise RuntimeError("docker-registry did not start: " + self.errors.read_text())
            else:
                time.sleep(0.05)
        self.host = "127.0.0.1:%d" % self.port
        self.url = "http://" + self.host

    def blob_bytes_served(self) -> int:
        """Bytes of blob bodies the registry sent (its access log)."""
        total = 0
        for line in self.access_log.read_text().splitlines():
            m = re.search(r'"GET /v2/\S+/blobs/sha256:[0-9a-f]+ HTTP/[\d.]+" (\d+) (\d+)', line)
            if m and m.group(1) in ("200", "206"):
                total += int(m.group(2))
        return total

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def registry(tmp_path):
    root = Path(tmp_path) / "registry"
    root.mkdir()
    reg = RealRegistry(root)
    yield reg
    reg.stop()


def busybox_rootfs(dest: Path) -> Path:
    busybox = shutil.which("busybox") or require("busybox")
    (dest / "bin").mkdir(parents=True)
    (dest / "etc").mkdir()
    shutil.copy(busybox, dest / "bin" / "busybox")
    for applet in ["sh", "cat", "echo", "ls", "env", "id", "true"]:
        os.symlink("busybox", dest / "bin" / applet)
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return dest


@pytest.fixture
def client(tmp_path):
    import dockyard

    return dockyard.Client(store=str(Path(tmp_path) / "store"))


@pytest.fixture
def seeded_registry(tmp_path, registry, client):
    """The registry with a two-layer busybox image (busybox, then a layer
    of notes) under the names the seed programs pull."""
    import dockyard

    rootfs = busybox_rootfs(Path(tmp_path) / "busybox")
    notes = Path(tmp_path) / "notes"
    notes.mkdir()
    (notes / "README").write_text("the top layer\n")
    img = dockyard.Image.open("scratch", client=client)
    img.append_layer_path(rootfs, "/")
    img.append_layer_path(notes, "/notes")
    img.with_config(env={"PATH": "/bin"}, cmd=["/bin/sh"])
    for name in ["frolvlad/alpine-glibc", "continuumio/miniconda3"]:
        img.push("%s/%s:latest" % (registry.host, name))
    return registry
