"""A spec's `static:` folder, packed as the API takes it with the spec (a base64 zip of
`static/...` files): what `tenant create/update --app FILE` and `hostplane demo` send."""

from __future__ import annotations

import base64
from pathlib import Path


class StaticFolderError(ValueError):
    """The folder cannot be sent: missing, a link out of it, too many files, too large."""


def static_folder_name(spec_text: str) -> str | None:
    """The folder the spec's `static:` names, if any (a bad spec names none: the API reports it)."""
    from spec.load import parse_text

    try:
        name = (parse_text(spec_text) or {}).get("static")
    except Exception:  # noqa: BLE001 (the API reports a bad spec with its path; nothing to pack here)
        return None
    return name if name and isinstance(name, str) else None


def pack_static(spec_path: Path, spec_text: str) -> str | None:
    """The spec's `static:` folder (relative to the spec file) as the base64 zip the API
    takes, or None when the spec names none (or it holds no file). Symlinks are followed
    only inside the folder."""
    from spec.source import MAX_STATIC_FILES, MAX_STATIC_ZIP_BYTES, source_zip

    if (folder_name := static_folder_name(spec_text)) is None:
        return None
    folder = (spec_path.parent / folder_name).resolve()
    if not folder.is_dir():
        raise StaticFolderError(f"the spec's static folder {folder_name!r} does not exist next to {spec_path}")
    files: dict[str, bytes] = {}
    for item in sorted(folder.rglob("*")):
        if item.is_file():
            if not item.resolve().is_relative_to(folder):
                raise StaticFolderError(f"static file {item} is a link pointing outside the static folder; "
                                        "copy the file in")
            files[item.relative_to(folder).as_posix()] = item.read_bytes()
            if len(files) > MAX_STATIC_FILES:
                raise StaticFolderError(f"the static folder holds more than {MAX_STATIC_FILES} files (the limit)")
    if not files:
        return None
    body = source_zip({}, files)
    if len(body) > MAX_STATIC_ZIP_BYTES:
        raise StaticFolderError(
            f"the static folder {folder_name!r} zips to {len(body)} bytes; the limit is {MAX_STATIC_ZIP_BYTES} "
            "(it travels in the API request with the spec); serve large files from elsewhere")
    return base64.b64encode(body).decode()
