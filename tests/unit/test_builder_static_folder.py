"""The CLI's packing of a spec's static folder (hostplane.cli_tenant._static_zip) and the
API's check of it (spec.source.accept_static): limits and unsafe files."""

from __future__ import annotations

import base64
import io
import os
import zipfile

import pytest
import typer

from hostplane.cli_tenant import _static_zip
from spec.source import MAX_STATIC_FILES, SourceError, accept_static

SPEC = "app: T\nentities: {task: {fields: {title: {type: string}}}}\nstatic: public/\n"


def folder(tmp_path, files: dict[str, bytes]):
    spec = tmp_path / "app.yaml"
    spec.write_text(SPEC)
    for name, body in files.items():
        (tmp_path / "public" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "public" / name).write_bytes(body)
    (tmp_path / "public").mkdir(exist_ok=True)
    return str(spec)


def test_the_folder_is_packed_deterministically_and_accepted(tmp_path):
    spec = folder(tmp_path, {"style.css": b"body{}", "img/logo.svg": b"<svg/>"})
    packed = _static_zip(spec, SPEC)
    assert packed == _static_zip(spec, SPEC)  # same folder, same bytes, same digest
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(packed))) as zf:
        assert zf.namelist() == ["static/img/logo.svg", "static/style.css"]
    digest, body = accept_static(packed)
    assert len(digest) == 64 and body == base64.b64decode(packed)


def test_an_empty_folder_sends_nothing(tmp_path):
    assert _static_zip(folder(tmp_path, {}), SPEC) is None


def test_a_link_out_of_the_folder_is_refused(tmp_path, capsys):
    spec = folder(tmp_path, {"a.css": b"x"})
    (tmp_path / "secret").write_text("hunter2")
    os.symlink(tmp_path / "secret", tmp_path / "public" / "leak.txt")
    with pytest.raises(typer.Exit):
        _static_zip(spec, SPEC)
    assert "outside the static folder" in capsys.readouterr().err


def test_limits_are_refused_with_the_limit_named(tmp_path, capsys):
    spec = folder(tmp_path, {f"f{i}.txt": b"x" for i in range(MAX_STATIC_FILES + 1)})
    with pytest.raises(typer.Exit):
        _static_zip(spec, SPEC)
    assert f"more than {MAX_STATIC_FILES} files" in capsys.readouterr().err
    big = tmp_path / "big"
    big.mkdir()
    spec = folder(big, {"blob.bin": os.urandom(300 * 1024)})
    with pytest.raises(typer.Exit):
        _static_zip(spec, SPEC)
    assert "the limit is 262144" in capsys.readouterr().err


def test_the_api_refuses_a_zip_with_source_files_or_unsafe_paths():
    def zipped(entries):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, body in entries.items():
                zf.writestr(zipfile.ZipInfo(name), body)  # 1980: the same bytes at every call
        return base64.b64encode(buf.getvalue()).decode()

    for entries, needle in (({"app.py": "x"}, "only static/"), ({"static/../x": "x"}, "safe relative path"),
                            ({}, "no file under static/")):
        with pytest.raises(SourceError, match=needle.replace("/", ".")):
            accept_static(zipped(entries))
