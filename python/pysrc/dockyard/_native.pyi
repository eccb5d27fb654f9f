"""Type stubs of dockyard's native module (the Rust library facade)."""

from os import PathLike
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__version__: str

ProgressCallback = Callable[[str, str, Optional[str], int], None]

class DockyardError(Exception):
    path: Optional[str]
    reference: Optional[str]
    digest: Optional[str]

class InvalidInputError(DockyardError): ...
class NotFoundError(DockyardError): ...
class IntegrityError(DockyardError): ...
class RegistryError(DockyardError): ...
class AuthenticationError(RegistryError): ...
class FileError(DockyardError): ...
class BuildError(DockyardError): ...

class RunError(DockyardError):
    exit_code: int
    stdout: bytes
    stderr: bytes

class Image:
    @property
    def digest(self) -> str: ...
    @property
    def config(self) -> Dict[str, Any]: ...
    @property
    def manifest(self) -> Dict[str, Any]: ...
    @property
    def platform(self) -> str: ...
    @property
    def layers(self) -> List[Dict[str, Any]]: ...
    def append_layer_path(self, path: Union[str, PathLike[str]], dest: str = "/") -> Image: ...
    def append_layer_contents(self, files: Mapping[str, Union[bytes, str]]) -> Image: ...
    def remove_layer(self, index: int = -1) -> Image: ...
    def with_config(
        self,
        env: Optional[Mapping[str, str]] = None,
        entrypoint: Optional[Sequence[str]] = None,
        cmd: Optional[Sequence[str]] = None,
        workdir: Optional[str] = None,
        user: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
        exposed_ports: Optional[Sequence[str]] = None,
    ) -> Image: ...
    def set_config(self, config: Mapping[str, Any]) -> Image: ...
    def write(self, dest: str, format: Optional[str] = None, compression: str = "gzip") -> str: ...
    def run(
        self,
        command: Sequence[str] = ...,
        entrypoint: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        workdir: Optional[str] = None,
        user: Optional[str] = None,
        mounts: Sequence[str] = ...,
        network: str = "none",
        runtime: str = "auto",
        capture: bool = True,
    ) -> Tuple[int, bytes, bytes]: ...

class Client:
    def __new__(
        cls,
        store: Optional[Union[str, PathLike[str]]] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        plain_http: bool = False,
        insecure: bool = False,
        ca_certs: Sequence[Union[str, PathLike[str]]] = ...,
        progress: Optional[ProgressCallback] = None,
    ) -> Client: ...
    @property
    def store(self) -> str: ...
    def open(self, source: str, platform: Optional[str] = None) -> Image: ...
    def pull(self, reference: str, platform: Optional[str] = None) -> Image: ...
    def archive_images(self, path: Union[str, PathLike[str]]) -> List[Tuple[Image, Optional[str]]]: ...
    def build(
        self,
        spec: Optional[Union[str, PathLike[str]]] = None,
        output: Optional[str] = None,
        locked: bool = False,
        offline: bool = False,
        sbom: Optional[Union[str, PathLike[str]]] = None,
        platform: Optional[str] = None,
        *,
        packages: Optional[List[str]] = None,
        channels: Optional[List[str]] = None,
        base: Optional[str] = None,
        prefix: Optional[str] = None,
        image: Optional[str] = None,
    ) -> Image: ...
