"""An app's source tree and static files as zips: the rules and limits every side applies
(the CLI packs, the API accepts, the builder packages), pure: bytes in, bytes or errors out.

A source tree (`app deploy --source`, an export) is relative path -> UTF-8 text plus the
static files under `static/`; it is packageable when its paths are safe, every module
compiles, and `app.py` and a valid `spec.json` exist. A spec's static folder travels with
the spec in one API request body as a base64 zip holding only `static/...` files.
Zip entries are deterministic (fixed time and mode), so the same tree gives the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import stat
import zipfile
from dataclasses import dataclass
from typing import Any

from contracts.app_spec import AppSpec
from spec.load import load_app_spec

SPEC_FILE = "spec.json"
STATIC_DIR = "static/"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
MAX_SOURCE_FILES = 500
MAX_SOURCE_BYTES = 5 * 1024 * 1024
MAX_ZIP_BYTES = 20 * 1024 * 1024  # uncompressed total of a deployed source zip
MAX_UPLOAD_BYTES = 384 * 1024  # the zip, before base64 (the API body limit applies too)
# A spec's static folder travels with the spec in one request body (512 KB, the API's
# guard): 256 KB zipped is 342 KB in base64, which leaves room for a spec of ~160 KB.
MAX_STATIC_ZIP_BYTES = 256 * 1024
MAX_STATIC_FILES = 300


class SourceError(ValueError):
    """A source tree that cannot be packaged: `where` is `file:line` when known."""

    def __init__(self, message: str, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


def compile_module(path: str, text: str) -> Any:
    """`text` compiled as the module at `path`; a syntax error is a SourceError at its line."""
    try:
        return compile(text, path, "exec", dont_inherit=True, optimize=0)
    except SyntaxError as exc:
        raise SourceError(exc.msg, f"{path}:{exc.lineno}") from None
    except ValueError as exc:  # e.g. NUL bytes
        raise SourceError(str(exc), path) from None


def check_source(files: dict[str, str]) -> AppSpec:
    """An (edited) source tree is packageable: safe paths, every module compiles, `app.py`
    and a valid `spec.json` exist. Returns the spec; raises SourceError or InvalidAppSpec."""
    if len(files) > MAX_SOURCE_FILES or sum(len(t) for t in files.values()) > MAX_SOURCE_BYTES:
        raise SourceError(f"the source is larger than {MAX_SOURCE_FILES} files / {MAX_SOURCE_BYTES} bytes")
    for path in files:
        parts = path.split("/")
        if path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
            raise SourceError("is not a safe relative path", path)
    if "app.py" not in files:
        raise SourceError("the source has no app.py (the runtime imports app:app)")
    if SPEC_FILE not in files:
        raise SourceError(f"the source has no {SPEC_FILE}")
    for path, text in sorted(files.items()):
        if path.endswith(".py"):
            compile_module(path, text)
    return load_app_spec(files[SPEC_FILE])


def zip_entry(name: str) -> zipfile.ZipInfo:
    """A deterministic zip entry: fixed time, mode and compression."""
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    return info


def source_zip(files: dict[str, str], static: dict[str, bytes] | None = None) -> bytes:
    """The export format (and what `app deploy --source` uploads): a plain zip of the tree."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            zf.writestr(zip_entry(name), files[name].encode("utf-8"))
        for name in sorted(static or {}):
            zf.writestr(zip_entry(STATIC_DIR + name), (static or {})[name])
    return buf.getvalue()


def unpack_source(artifact: bytes) -> dict[str, str]:
    """The editable source inside an artifact: every file but the compiled .pyc."""
    with zipfile.ZipFile(io.BytesIO(artifact)) as zf:
        return {n: zf.read(n).decode("utf-8") for n in sorted(zf.namelist()) if not n.endswith(".pyc")}


def read_source_zip(body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """A deployed source zip -> (source files as text, static files under static/ as bytes).
    Compiled files and __pycache__ are dropped; everything else must be UTF-8 text."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(body))
    except zipfile.BadZipFile:
        raise SourceError("the upload is not a zip file") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
            raise SourceError(f"the source unpacks to more than {MAX_ZIP_BYTES} bytes")
        files: dict[str, str] = {}
        static: dict[str, bytes] = {}
        for info in infos:
            name = info.filename
            if name.endswith(".pyc") or "__pycache__/" in name:
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                raise SourceError("is a symbolic link; put the file itself in the zip", name)
            if name.startswith(STATIC_DIR):
                static[name.removeprefix(STATIC_DIR)] = zf.read(info)
                continue
            try:
                files[name] = zf.read(info).decode("utf-8")
            except UnicodeDecodeError:
                raise SourceError("is not UTF-8 text (binary files belong in static/)", name) from None
    for key in static:
        if not key or any(p in ("", ".", "..") for p in key.split("/")) or "\\" in key:
            raise SourceError("is not a safe relative path", STATIC_DIR + key)
    return files, static


@dataclass(frozen=True)
class SourceUpload:
    spec: AppSpec
    digest: str  # sha256 of the zip
    body: bytes


def _decoded(encoded: str, field: str, what: str, limit: int) -> bytes:
    try:
        body = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SourceError(f"{field} is not base64") from None
    if len(body) > limit:
        raise SourceError(f"{what} is {len(body)} bytes; the limit is {limit}")
    return body


def accept_upload(encoded: str) -> SourceUpload:
    """A base64 zip from `app deploy --source`, checked like the builder will check it
    (compiles, safe paths, valid spec.json). Raises SourceError / InvalidAppSpec."""
    body = _decoded(encoded, "source_zip", "the source zip", MAX_UPLOAD_BYTES)
    files, _static = read_source_zip(body)
    spec = check_source(files)
    return SourceUpload(spec=spec, digest=hashlib.sha256(body).hexdigest(), body=body)


def accept_static(encoded: str) -> tuple[str, bytes]:
    """(sha256, zip) of a spec's static folder sent with a create or update: a base64 zip
    holding only `static/...` files with safe relative paths. Raises SourceError."""
    body = _decoded(encoded, "static_zip", "the static files zip", MAX_STATIC_ZIP_BYTES)
    files, static = read_source_zip(body)
    if len(static) > MAX_STATIC_FILES:
        raise SourceError(f"the static folder holds {len(static)} files; the limit is {MAX_STATIC_FILES}")
    if files:
        raise SourceError(f"the static files zip may hold only static/... files, not {sorted(files)[:3]}")
    if not static:
        raise SourceError("the static files zip holds no file under static/")
    return hashlib.sha256(body).hexdigest(), body
