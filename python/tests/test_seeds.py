"""The example programs of python-docker and docker-envs (../shared/seeds),
run verbatim except the import line (and python-docker's default Docker Hub
registry, given as the local one), against a real registry."""

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import SEEDS, busybox_rootfs, require

IMPORT = "from dockyard import Registry, Image"


def python_blocks(text: str):
    """The ```python blocks of a README (python-docker's, indented in PKG-INFO)."""
    blocks, current = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if current is None and stripped == "```python":
            current = []
        elif current is not None and stripped == "```":
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line[8:] if line.startswith(" " * 8) else line)
    return blocks


def org_python_blocks(text: str):
    return re.findall(r"#\+begin_src python[^\n]*\n(.*?)#\+end_src", text, re.S)


def adapt(program: str, registry_url: str) -> str:
    lines = []
    for line in program.splitlines():
        if re.match(r"from (python_docker|docker_envs)\.\S+ import ", line):
            line = IMPORT
        lines.append(line.replace("Registry()", 'Registry("%s")' % registry_url))
    return "\n".join(lines)


def python_docker_programs():
    text = (SEEDS / "python-docker-0.1.0-PKG-INFO.txt").read_text()
    return python_blocks(text)


def test_the_seed_files_hold_the_programs():
    programs = python_docker_programs()
    assert len(programs) == 2
    assert "pull_image('frolvlad/alpine-glibc', 'latest')" in programs[0]
    assert "image.run(['cat /this/is/a/test1'])" in programs[1]
    envs = org_python_blocks((SEEDS / "docker-envs-notes.org").read_text())
    assert any("Image.from_file" in p for p in envs)


def test_pull_seed(seeded_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(adapt(python_docker_programs()[0], seeded_registry.url), ns)
    image = ns["image"]
    assert image.name == "frolvlad/alpine-glibc" and image.tag == "latest"
    assert len(image.layers) == 2
    # Every layer was downloaded (lazy=False) and verified.
    assert seeded_registry.blob_bytes_served() >= sum(l.size for l in image.layers)


def test_modify_seed_writes_an_archive_that_runs_and_keeps_the_base(seeded_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "hello.txt").write_text("from the folder\n")
    monkeypatch.chdir(work)
    program = adapt(python_docker_programs()[1], seeded_registry.url)
    # The seed's last line runs the image; keep what it returns.
    program = program.replace("image.run(['cat /this/is/a/test1'])",
                              "output = image.run(['cat /this/is/a/test1'])")
    ns = {}
    exec(program, ns)
    image = ns["image"]
    assert ns["output"] == "this is test 1"

    # remove_layer() removed the top layer (notes), not the busybox base;
    # the folder and the in-memory files are the two new top layers.
    assert len(image.layers) == 3
    listing = image.run("ls /; cat /hello.txt /this/is/a/test2")
    assert "notes" not in listing.split()
    assert "bin" in listing.split()
    assert "from the folder" in listing and "this is test 2" in listing
    # layers[0].config edited the image's config, and no field was lost.
    env = image.config["config"]["Env"]
    assert env == ["PATH=/bin", "FOO=BAR"]
    assert image.config["config"]["Cmd"] == ["/bin/sh"]
    assert image.run("echo $FOO") == "BAR\n"

    # The archive: docker's manifest.json names the image as the seed set it.
    archive = work / "example-docker-image.tar"
    with tarfile.open(archive) as t:
        manifest = json.load(t.extractfile("manifest.json"))
        config = json.load(t.extractfile(manifest[0]["Config"]))
    assert manifest[0]["RepoTags"] == ["this-is-a-test:latest"]
    assert "FOO=BAR" in config["config"]["Env"]
    assert len(manifest[0]["Layers"]) == 3
    if shutil.which("skopeo") or os.environ.get("CI"):
        skopeo = require("skopeo")
        subprocess.run([skopeo, "copy", "docker-archive:%s" % archive,
                        "oci:%s:x" % (tmp_path / "checked")], check=True,
                       capture_output=True)

    # Registry.push_image keeps every config field.
    from dockyard import Registry

    registry = Registry(seeded_registry.url)
    digest = registry.push_image(image)
    back = registry.pull_image("this-is-a-test", "latest")
    assert back.digest == digest
    assert back.config["config"]["Env"] == ["PATH=/bin", "FOO=BAR"]
    assert back.config["config"]["Cmd"] == ["/bin/sh"]


def test_docker_envs_seed(tmp_path, monkeypatch, client):
    import dockyard

    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    base = busybox_rootfs(tmp_path / "busybox")
    saved = tmp_path / "miniconda3.tar"
    dockyard.Image.open("scratch", client=client).append_layer_path(base).with_config(
        cmd=["/bin/sh"]).write("docker-archive:%s:continuumio/miniconda3:latest" % saved)
    (tmp_path / "asdfasdf").mkdir()
    (tmp_path / "asdfasdf" / "added.txt").write_text("added by docker-envs\n")
    program = [p for p in org_python_blocks((SEEDS / "docker-envs-notes.org").read_text())
               if "Image.from_file" in p][0]
    program = adapt(program, "").replace("/tmp/miniconda3.tar", str(saved))
    ns = {}
    exec(program, ns)
    written = dockyard.Image.from_file(tmp_path / "example.tar")
    assert len(written) == 1
    assert len(written[0].layers) == 2
    assert written[0].name == "continuumio/miniconda3"
    assert written[0].run("cat /added.txt") == "added by docker-envs\n"
