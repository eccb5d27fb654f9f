"""dockyard: build, edit, pull, push and run container images without a
Docker daemon.

The modern API::

    import dockyard
    img = dockyard.Image.open("docker://localhost:5000/base:1")   # lazy
    img.append_layer_path("site/", dest="/srv/www")
    img.append_layer_contents({"/etc/motd": b"hi\\n"})
    img.with_config(env={"MODE": "prod"})
    img.write("docker://localhost:5000/app:1")   # base layers are mounted, never downloaded

The names python-docker and docker-envs programs use work too
(``Registry(...).pull_image``, ``add_layer_path``, ``layers[0].config``,
``write_filename``, ``Image.from_file``, ``run``); where those libraries had a
bug, dockyard does the right thing:

* layers are listed top first (``layers[0]`` is the top layer) and
  ``remove_layer()`` removes the top layer, not the base;
* ``layers[i].config`` is the image's config: editing it edits the image,
  and every field (not only the ones python-docker knew) is kept on push;
* layers are never held in memory: they stream between files, the local
  store and registries;
* archives are written in the format docker, podman and skopeo all load.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _native
from ._native import (
    AuthenticationError,
    BuildError,
    DockyardError,
    FileError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    RegistryError,
    RunError,
)

__version__ = _native.__version__

__all__ = [
    "Client",
    "Image",
    "Layer",
    "Registry",
    "configure",
    "open",
    "pull",
    "build",
    "DockyardError",
    "InvalidInputError",
    "NotFoundError",
    "IntegrityError",
    "RegistryError",
    "AuthenticationError",
    "FileError",
    "BuildError",
    "RunError",
]

ProgressCallback = Callable[[str, str, Optional[str], int], None]

_TRANSPORTS = ("docker://", "docker-archive:", "oci:", "oci-archive:", "store:")


class _TerminalBar:
    """A one-line progress display on stderr (used when it is a terminal)."""

    def __init__(self) -> None:
        self.totals: Dict[str, int] = {}
        self.done: Dict[str, int] = {}
        self.phase: Dict[str, str] = {}

    def __call__(self, event: str, blob: str, phase: Optional[str], n: int) -> None:
        if event == "start":
            self.totals[blob] = n
            self.done[blob] = 0
            self.phase[blob] = phase or ""
        elif event == "bytes":
            self.done[blob] = n
        elif event == "finish":
            self.done[blob] = self.totals.get(blob, self.done.get(blob, 0))
        total = sum(self.totals.values())
        done = sum(self.done.values())
        active = [b for b in self.totals if self.done.get(b, 0) < self.totals[b]]
        label = self.phase.get(active[0], "") if active else "done"
        if total:
            width = 30
            filled = int(width * min(done, total) / total)
            line = "[%s%s] %5.1f%% %s %d/%d MB" % (
                "#" * filled,
                "." * (width - filled),
                100.0 * done / total,
                label,
                done >> 20,
                total >> 20,
            )
        else:
            line = "%s %d MB" % (label, done >> 20)
        sys.stderr.write("\r" + line[:79].ljust(79))
        if not active:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _default_progress() -> Optional[ProgressCallback]:
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return _TerminalBar()
    except (AttributeError, ValueError):
        pass
    return None


class Client(_native.Client):
    """The library handle: store directory, registry settings, progress.

    ``Client(store=None, username=None, password=None, plain_http=False,
    insecure=False, ca_certs=[], progress=None)``; ``progress`` is called as
    ``progress(event, blob, phase, bytes)``; by default a bar is drawn when
    stderr is a terminal.
    """

    def __new__(cls, store=None, username=None, password=None, plain_http=False,
                insecure=False, ca_certs=(), progress=None):
        if progress is None:
            progress = _default_progress()
        if store is None:
            store = os.environ.get("DOCKYARD_CACHE")
        return super().__new__(cls, store, username, password, plain_http, insecure,
                               list(ca_certs), progress)


_default_client: Optional[Client] = None


def configure(**options: Any) -> Client:
    """Set up the client the module-level functions use (see `Client`)."""
    global _default_client
    _default_client = Client(**options)
    return _default_client


def _client() -> Client:
    global _default_client
    if _default_client is None:
        _default_client = Client()
    return _default_client


class Layer:
    """One layer of an `Image`. ``config`` is the image's config section
    (``Env``, ``Cmd``, ...): editing it edits the image, as python-docker
    programs expect of ``image.layers[0].config``."""

    def __init__(self, image: "Image", info: Mapping[str, Any]) -> None:
        self._image = image
        self.digest: str = info["digest"]
        self.diff_id: str = info["diff_id"]
        self.size: int = info["size"]
        self.media_type: str = info["media_type"]

    @property
    def id(self) -> str:
        return self.diff_id.split(":", 1)[-1]

    @property
    def config(self) -> Dict[str, Any]:
        return self._image._editable_config()

    def __repr__(self) -> str:
        return "<dockyard Layer %s %d bytes>" % (self.digest[:19], self.size)


class Image:
    """A container image. Edits change this object (and return it, so they
    chain); nothing is read or written until `write`, `push` or `run`."""

    def __init__(self, native: _native.Image, name: Optional[str] = None,
                 tag: Optional[str] = None) -> None:
        self._native = native
        self.name = name
        self.tag = tag or "latest"
        self._config_edit: Optional[Dict[str, Any]] = None
        self._config_seen: Optional[Dict[str, Any]] = None

    # -- opening ---------------------------------------------------------

    @classmethod
    def open(cls, source: str, platform: Optional[str] = None,
             client: Optional[Client] = None) -> "Image":
        """Open any transport string: ``docker://REF`` (lazily: layers are
        only fetched when needed, and mounted when pushed to the same
        registry), ``docker-archive:PATH[:REF]``, ``oci:DIR[:REF]``,
        ``oci-archive:PATH[:REF]``, ``store:REF`` or ``scratch``."""
        name, tag = _name_and_tag(source)
        return cls((client or _client()).open(source, platform), name, tag)

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike], client: Optional[Client] = None) -> List["Image"]:
        """Every image of a docker archive (docker-envs' ``Image.from_file``)."""
        images = []
        path = os.fspath(path)
        natives = (client or _client()).archive_images(path)
        names = _archive_names(path) if len(natives) == 1 else []
        for i, (native, ref) in enumerate(natives):
            ref = ref or (names[i] if i < len(names) else None)
            name, tag = _split_tag(ref) if ref else (None, None)
            images.append(cls(native, name, tag))
        return images

    # -- what it is ------------------------------------------------------

    @property
    def native(self) -> _native.Image:
        self._sync()
        return self._native

    @property
    def digest(self) -> str:
        return self.native.digest

    @property
    def config(self) -> Dict[str, Any]:
        """The whole config document (a copy; edit with `with_config`,
        `set_config` or ``layers[0].config``)."""
        return self.native.config

    @property
    def manifest(self) -> Dict[str, Any]:
        return self.native.manifest

    @property
    def platform(self) -> str:
        return self._native.platform

    @property
    def layers(self) -> List[Layer]:
        """The layers, top first (``layers[0]`` is the top layer)."""
        return [Layer(self, info) for info in reversed(self._native.layers)]

    def _editable_config(self) -> Dict[str, Any]:
        if self._config_edit is None:
            section = dict(self._native.config.get("config") or {})
            # python-docker programs append to Env and Cmd directly.
            if section.get("Env") is None:
                section["Env"] = []
            seen = {k: (list(v) if isinstance(v, list) else v) for k, v in section.items()}
            self._config_edit, self._config_seen = section, seen
        return self._config_edit

    def _sync(self) -> None:
        """Apply edits made to ``layers[i].config`` to the image."""
        edit, seen = self._config_edit, self._config_seen
        self._config_edit = self._config_seen = None
        if edit is None or edit == seen:
            return
        whole = self._native.config
        section = dict(edit)
        if section.get("Env") == [] and "Env" not in (whole.get("config") or {}):
            del section["Env"]
        whole["config"] = section
        self._native = self._native.set_config(whole)

    # -- edits -----------------------------------------------------------

    def append_layer_path(self, path: Union[str, os.PathLike], dest: str = "/") -> "Image":
        """A new top layer of host files: a directory's contents go into
        ``dest``; a file goes to ``dest`` (inside it when it ends in ``/``
        or is a directory of the image)."""
        self._native = self.native.append_layer_path(os.fspath(path), dest)
        return self

    def append_layer_contents(self, files: Mapping[str, Union[bytes, str]]) -> "Image":
        """A new top layer of files given by their bytes (mode 0644)."""
        self._native = self.native.append_layer_contents(dict(files))
        return self

    def remove_layer(self, i: int = -1) -> "Image":
        """Remove a layer: ``-1`` (the default) is the top layer, ``0`` the
        base (indexes count from the base, as in the manifest)."""
        self._native = self.native.remove_layer(i)
        return self

    def with_config(self, env: Optional[Mapping[str, str]] = None,
                    entrypoint: Optional[Sequence[str]] = None,
                    cmd: Optional[Sequence[str]] = None,
                    workdir: Optional[str] = None, user: Optional[str] = None,
                    labels: Optional[Mapping[str, str]] = None,
                    exposed_ports: Optional[Iterable[str]] = None) -> "Image":
        """Change config fields; the others are kept as they are."""
        self._native = self.native.with_config(
            dict(env) if env is not None else None,
            list(entrypoint) if entrypoint is not None else None,
            list(cmd) if cmd is not None else None,
            workdir, user,
            dict(labels) if labels is not None else None,
            list(exposed_ports) if exposed_ports is not None else None,
        )
        return self

    def set_config(self, config: Mapping[str, Any]) -> "Image":
        """Replace the whole config document (diff_ids must match the layers)."""
        self._sync()
        self._native = self._native.set_config(dict(config))
        return self

    # python-docker / docker-envs names
    def add_layer_path(self, path: Union[str, os.PathLike], arcpath: Optional[str] = None) -> "Image":
        return self.append_layer_path(path, arcpath or "/")

    def add_layer_contents(self, files: Mapping[str, Union[bytes, str]]) -> "Image":
        return self.append_layer_contents(files)

    def add_layer(self, path: Union[str, os.PathLike], arcpath: Optional[str] = None) -> "Image":
        return self.append_layer_path(path, arcpath or "/")

    # -- output ----------------------------------------------------------

    def _archive_ref(self) -> str:
        return "%s:%s" % (self.name or "dockyard-image", self.tag or "latest")

    def write(self, dest: Union[str, os.PathLike], format: Optional[str] = None,
              compression: str = "gzip") -> str:
        """Write to a transport string, or (a plain path) a docker archive
        tagged ``name:tag``; returns the digest written."""
        dest = os.fspath(dest)
        if not dest.startswith(_TRANSPORTS):
            dest = "docker-archive:%s:%s" % (os.path.abspath(dest), self._archive_ref())
        return self.native.write(dest, format, compression)

    def write_filename(self, filename: Union[str, os.PathLike]) -> str:
        """A docker archive (docker, podman and skopeo load it)."""
        return self.write(
            "docker-archive:%s:%s" % (os.path.abspath(os.fspath(filename)), self._archive_ref()))

    def push(self, reference: str, format: Optional[str] = None, compression: str = "gzip") -> str:
        """Push to ``[docker://]HOST/REPO:TAG``; returns the manifest digest."""
        if not reference.startswith("docker://"):
            reference = "docker://" + reference
        return self.write(reference, format, compression)

    def run(self, command: Union[str, Sequence[str], None] = None, *,
            entrypoint: Optional[Sequence[str]] = None,
            env: Optional[Mapping[str, str]] = None,
            workdir: Optional[str] = None, user: Optional[str] = None,
            mounts: Sequence[str] = (), network: str = "none",
            runtime: str = "auto", capture: bool = True, check: bool = True,
            text: bool = True) -> Union[str, bytes, Tuple[int, bytes, bytes]]:
        """Run a command in the image without a daemon (bubblewrap, runc
        or chroot; ``runtime="docker"`` hands it to Docker) and return its
        output. A string, or a list of one string with spaces (as
        python-docker programs wrote it), runs through ``/bin/sh -c``; a
        longer list is run as it is; None runs the image's Entrypoint/Cmd.
        A non-zero exit raises `RunError` with ``exit_code``, ``stdout`` and
        ``stderr``, unless ``check=False`` (then (code, stdout, stderr))."""
        if command is None:
            argv: List[str] = []
        elif isinstance(command, str):
            argv = ["/bin/sh", "-c", command]
        else:
            argv = list(command)
            if len(argv) == 1 and any(c.isspace() for c in argv[0]):
                argv = ["/bin/sh", "-c", argv[0]]
        code, out, err = self.native.run(
            argv, list(entrypoint) if entrypoint is not None else None,
            dict(env) if env is not None else None, workdir, user, list(mounts),
            network, runtime, capture)
        if not check:
            return code, out, err
        if code != 0:
            e = RunError("command %s exited with %d: %s" % (
                shlex.join(argv) if argv else "(image default)", code,
                err.decode("utf-8", "replace").strip()))
            e.exit_code, e.stdout, e.stderr = code, out, err
            raise e
        return out.decode("utf-8", "replace") if text else out

    def __repr__(self) -> str:
        return "<dockyard Image %s %s:%s>" % (self._native.digest[:19], self.name, self.tag)


def _split_tag(ref: str) -> Tuple[str, Optional[str]]:
    last = ref.rsplit("/", 1)[-1]
    if "@" in ref:
        return ref.split("@", 1)[0], None
    if ":" in last:
        name, tag = ref.rsplit(":", 1)
        return name, tag
    return ref, None


def _archive_names(path: str) -> List[Optional[str]]:
    """The first RepoTag of each image of a docker archive's manifest.json."""
    import json
    import tarfile

    try:
        with tarfile.open(path) as t:
            member = t.extractfile("manifest.json")
            entries = json.load(member) if member is not None else []
        return [(e.get("RepoTags") or [None])[0] for e in entries]
    except (OSError, KeyError, ValueError, tarfile.TarError):
        return []


def _name_and_tag(source: str) -> Tuple[Optional[str], Optional[str]]:
    if source.startswith("docker://"):
        name, tag = _split_tag(source[len("docker://"):])
        return name, tag
    return None, None


def open(source: str, platform: Optional[str] = None) -> Image:  # noqa: A001 (mirrors Image.open)
    """`Image.open` with the module's client."""
    return Image.open(source, platform)


def pull(reference: str, platform: Optional[str] = None) -> Image:
    """Pull into the local store (every layer downloaded and verified)."""
    name, tag = _split_tag(reference[len("docker://"):] if reference.startswith("docker://") else reference)
    return Image(_client().pull(reference, platform), name, tag)


def build(spec: Optional[Union[str, os.PathLike]] = None, output: Optional[str] = None, *,
          locked: bool = False, offline: bool = False,
          sbom: Optional[Union[str, os.PathLike]] = None, platform: Optional[str] = None,
          packages: Optional[List[str]] = None, channels: Optional[List[str]] = None,
          base: Optional[str] = None, prefix: Optional[str] = None,
          image: Optional[str] = None) -> Image:
    """Build a conda environment spec (environment.yml + ``image:``) into
    an image, written to ``output`` (any destination) or to the store.
    Without a spec file, ``packages`` (conda match specs) from ``channels``
    make one, as conda-docker's ``build -b BASE -i IMAGE PACKAGE...`` did;
    ``base``, ``prefix`` and ``image`` (``NAME[:TAG]``) go over the spec's."""
    native = _client().build(os.fspath(spec) if spec is not None else None, output, locked,
                             offline, os.fspath(sbom) if sbom is not None else None, platform,
                             packages=packages, channels=channels, base=base, prefix=prefix,
                             image=image)
    return Image(native)


class Registry:
    """python-docker's registry handle: ``Registry(hostname, username,
    password)``; ``hostname`` is a URL (``http://127.0.0.1:5000``,
    ``https://ghcr.io``) or a bare host."""

    def __init__(self, hostname: str = "https://registry-1.docker.io",
                 username: Optional[str] = None, password: Optional[str] = None,
                 client: Optional[Client] = None, **client_options: Any) -> None:
        plain_http = hostname.startswith("http://")
        host = hostname.split("://", 1)[-1].rstrip("/")
        if host in ("registry-1.docker.io", "index.docker.io"):
            host = "docker.io"
        self.hostname = host
        self.username = username
        self.password = password
        self.client = client or Client(username=username, password=password,
                                       plain_http=plain_http, **client_options)

    def _reference(self, name: str, tag: str) -> str:
        return "%s/%s:%s" % (self.hostname, name, tag)

    def pull_image(self, name: str, tag: str = "latest", lazy: bool = False) -> Image:
        """The image ``name:tag``. ``lazy=True`` fetches only its manifest
        and config: layers are read when written and mounted when pushed
        back to this registry, so base layers are never downloaded."""
        ref = self._reference(name, tag)
        if lazy:
            native = self.client.open("docker://" + ref)
        else:
            native = self.client.pull(ref)
        return Image(native, name, tag)

    def push_image(self, image: Image) -> str:
        """Push to ``HOST/image.name:image.tag``; returns the digest."""
        if not image.name:
            raise InvalidInputError("push_image: the image has no name (set image.name)")
        return image.push(self._reference(image.name, image.tag or "latest"))
