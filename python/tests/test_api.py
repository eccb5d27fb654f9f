"""The modern API over the library facade: lazy registry edits, typed
errors, progress, run, build."""

import os
import shutil
from pathlib import Path

import pytest

import dockyard
from conftest import REPO, busybox_rootfs, require


def big_base(tmp_path, client, registry, size=4 << 20):
    """A registry image whose base layer is `size` random bytes."""
    rootfs = busybox_rootfs(tmp_path / "busybox")
    (rootfs / "blob.bin").write_bytes(os.urandom(size))
    img = dockyard.Image.open("scratch", client=client).append_layer_path(rootfs)
    img.with_config(cmd=["/bin/sh"])
    ref = "%s/base/big:1" % registry.host
    img.push(ref)
    return ref


def test_lazy_registry_edits_never_download_the_base(tmp_path, registry, client):
    ref = big_base(tmp_path, client, registry)
    served = registry.blob_bytes_served()

    # python-docker's lazy pull, edit, push.
    reg = dockyard.Registry(registry.url, client=client)
    image = reg.pull_image("base/big", "1", lazy=True)
    image.add_layer_contents({"/etc/motd": b"edited lazily\n"})
    image.layers[0].config["Env"].append("EDITED=1")
    image.name = "app/lazy"
    digest = reg.push_image(image)
    assert registry.blob_bytes_served() - served < 64 * 1024

    # The modern form: open docker://, edit, write docker://.
    served = registry.blob_bytes_served()
    img = dockyard.Image.open("docker://" + ref, client=client)
    img.append_layer_contents({"/srv/x": "y"}).with_config(env={"MODE": "prod"})
    img.write("docker://%s/app/modern:1" % registry.host)
    assert registry.blob_bytes_served() - served < 64 * 1024

    # What was pushed is whole: pulled back (every byte), it runs.
    fresh = dockyard.Registry(registry.url, client=dockyard.Client(store=str(tmp_path / "fresh")))
    back = fresh.pull_image("app/lazy", "1")
    assert back.digest == digest
    assert registry.blob_bytes_served() > (4 << 20)
    assert "EDITED=1" in back.config["config"]["Env"]
    if shutil.which("bwrap") or shutil.which("runc") or os.geteuid() == 0:
        assert back.run("cat /etc/motd") == "edited lazily\n"


def test_errors_are_typed_and_name_what_they_are_about(tmp_path, registry, client):
    with pytest.raises(dockyard.NotFoundError) as e:
        dockyard.Image.open("docker-archive:%s" % (tmp_path / "missing.tar"), client=client)
    assert e.value.path.endswith("missing.tar")
    assert isinstance(e.value, dockyard.DockyardError)
    with pytest.raises(dockyard.NotFoundError):
        client.open("docker://%s/no/such:1" % registry.host)
    with pytest.raises(dockyard.InvalidInputError) as e:
        client.open("docker://UPPER/Case:1")
    assert e.value.reference is not None
    with pytest.raises(dockyard.InvalidInputError):
        dockyard.Image.open("docker://", client=client)
    img = dockyard.Image.open("scratch", client=client)
    with pytest.raises(dockyard.InvalidInputError):
        img.remove_layer()
    with pytest.raises(dockyard.InvalidInputError):
        img.append_layer_contents({"/x": 3})


def test_run_returns_output_and_raises_with_the_exit_code(tmp_path, client):
    if not (shutil.which("bwrap") or shutil.which("runc") or os.geteuid() == 0):
        require("bwrap")
    rootfs = busybox_rootfs(tmp_path / "busybox")
    img = dockyard.Image.open("scratch", client=client).append_layer_path(rootfs)
    img.with_config(env={"GREETING": "hi"}, cmd=["/bin/sh", "-c", "echo $GREETING"])
    assert img.run() == "hi\n"
    assert img.run(["echo", "a b"]) == "a b\n"
    assert img.run("echo $GREETING there", env={"GREETING": "hello"}) == "hello there\n"
    with pytest.raises(dockyard.RunError) as e:
        img.run("echo oops >&2; exit 7")
    assert e.value.exit_code == 7
    assert e.value.stderr == b"oops\n"
    assert img.run("exit 2", check=False)[0] == 2
    with pytest.raises(dockyard.RunError):
        img.run("true", user="nobody-here")


def test_progress_callback_sees_every_blob(tmp_path, registry):
    events = []
    c = dockyard.Client(store=str(tmp_path / "store"),
                        progress=lambda *e: events.append(e))
    ref = big_base(tmp_path, c, registry, size=1 << 20)
    events.clear()
    dockyard.Client(store=str(tmp_path / "store2"),
                    progress=lambda *e: events.append(e)).pull(ref)
    starts = [e for e in events if e[0] == "start"]
    fetched = {e[1] for e in starts if e[2] == "fetch"}
    assert len(fetched) >= 1, starts
    assert {e[1] for e in events if e[0] == "finish"} >= {e[1] for e in starts}


def test_build_a_conda_environment(tmp_path, client):
    spec = tmp_path / "env.yml"
    shutil.copytree(REPO / "examples" / "conda" / "channel", tmp_path / "channel")
    spec.write_text((REPO / "examples" / "conda" / "env.yml").read_text())
    dockyard.configure(store=str(tmp_path / "store"))
    img = dockyard.build(spec, "oci:%s:1" % (tmp_path / "layout"))
    assert (tmp_path / "layout" / "index.json").is_file()
    assert any(h.get("created_by", "").startswith("conda: greet ")
               for h in img.config["history"])
    with pytest.raises(dockyard.BuildError) as e:
        bad = tmp_path / "bad.yml"
        bad.write_text("name: x\nchannels: [./channel]\ndependencies: [nosuchpackage]\n")
        dockyard.build(bad)
    assert "nosuchpackage" in str(e.value)


def test_build_from_packages_without_a_spec_file(tmp_path, client, monkeypatch):
    shutil.copytree(REPO / "examples" / "conda" / "channel", tmp_path / "channel")
    monkeypatch.chdir(tmp_path)
    dockyard.configure(store=str(tmp_path / "store"))
    quick = dockyard.build(packages=["hello"], channels=["./channel"], prefix="/opt/env",
                           image="quick:2", output="oci:%s:2" % (tmp_path / "quick"))
    config = quick.config
    assert "CONDA_PREFIX=/opt/env" in config["config"]["Env"]
    assert any(h.get("created_by", "").startswith("conda: hello 1.0 ")
               for h in config["history"])
    # The file saying the same builds the same image.
    (tmp_path / "same.yml").write_text(
        "channels: [./channel]\ndependencies: [hello]\n"
        "image:\n  prefix: /opt/env\n  name: quick\n  tag: '2'\n")
    from_file = dockyard.build(tmp_path / "same.yml", "oci:%s:2" % (tmp_path / "file"))
    assert from_file.digest == quick.digest
    with pytest.raises(ValueError) as e:
        dockyard.build(packages=["hello"])
    assert "channels" in str(e.value)
    with pytest.raises(ValueError):
        dockyard.build(tmp_path / "same.yml", packages=["hello"], channels=["./channel"])
