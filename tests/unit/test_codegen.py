"""Code generation and packaging: reproducible bytes, compiled modules, source checks."""

import hashlib
import subprocess
import sys
import zipfile
import io

import pytest

from spec.load import load_app_spec
from spec.problems import InvalidAppSpec
from services.builder.codegen import generate, package
from spec.source import SourceError, check_source, unpack_source

SPEC = open("examples/tasks.yaml").read()
DIGEST_SCRIPT = ("import hashlib,sys; from spec.load import load_app_spec; "
                 "from services.builder.codegen import generate, package; "
                 "print(hashlib.sha256(package(generate(load_app_spec(sys.stdin.read())))).hexdigest())")


def _digest_in_new_process(spec: str) -> str:
    out = subprocess.run([sys.executable, "-c", DIGEST_SCRIPT], input=spec, capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.strip()


@pytest.mark.timeout(120)
def test_same_spec_same_bytes_across_processes():
    first, second = _digest_in_new_process(SPEC), _digest_in_new_process(SPEC)
    here = hashlib.sha256(package(generate(load_app_spec(SPEC)))).hexdigest()
    assert first == second == here
    changed = _digest_in_new_process(SPEC.replace("My tasks", "Our tasks"))
    assert changed != first


def test_a_reindented_spec_builds_the_same_artifact():
    as_json = load_app_spec(SPEC).canonical_json()
    assert package(generate(load_app_spec(as_json))) == package(generate(load_app_spec(SPEC)))


def test_artifact_holds_sources_compiled_modules_and_spec():
    artifact = package(generate(load_app_spec(SPEC)))
    assert artifact.startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(io.BytesIO(artifact)) as zf:
        names = zf.namelist()
        assert names == sorted(names)
        assert {"app.py", "app.pyc", "__main__.py", "spec.json", "appkit/web.pyc"} <= set(names)
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
        pyc = zf.read("app.pyc")
        assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, unchecked: no mtime inside
    assert load_app_spec(unpack_source(artifact)["spec.json"]) == load_app_spec(SPEC)
    assert not any(n.endswith(".pyc") for n in unpack_source(artifact))


def test_generated_app_names_the_data_model():
    source = generate(load_app_spec(SPEC))["app.py"]
    assert "Field('title', 'string', required=True, max_length=200)" in source
    assert "'task_owner_fkey': 'owner'" in source
    assert "APP_VERSION" not in source  # the version comes from the environment, never the code


def test_edited_source_with_a_syntax_error_names_file_and_line():
    files = generate(load_app_spec(SPEC))
    files["app.py"] += "\ndef broken(:\n"
    with pytest.raises(SourceError) as err:
        package(files)
    assert err.value.where == f"app.py:{files['app.py'].count(chr(10))}"


@pytest.mark.parametrize("path", ["../evil.py", "/abs.py", "a//b.py", "a\\b.py"])
def test_unsafe_paths_are_refused(path):
    files = generate(load_app_spec(SPEC)) | {path: "x = 1\n"}
    with pytest.raises(SourceError, match="safe relative path"):
        check_source(files)


def test_missing_app_or_bad_spec_json_is_refused():
    files = generate(load_app_spec(SPEC))
    with pytest.raises(SourceError, match="no app.py"):
        check_source({k: v for k, v in files.items() if k != "app.py"})
    with pytest.raises(InvalidAppSpec, match="unknown entity"):
        check_source(files | {"spec.json": SPEC.replace("to: person", "to: persn")})


def test_pages_link_the_stylesheet_only_when_the_spec_has_static_files():
    from services.builder.codegen.appkit.pages import render_page
    from services.builder.codegen.appkit.schema import Entity, Field, Page

    with_static = load_app_spec(open("examples/tasks.yaml").read())
    assert with_static.static
    assert "stylesheets=['/static/style.css']" in generate(with_static).get("app.py")
    plain = with_static.model_copy(update={"static": None})
    assert "stylesheets" not in generate(plain)["app.py"]
    entity = Entity("task", fields=(Field("title", "string"),))
    page = Page("/", "Tasks", "task")
    assert '<link rel="stylesheet" href="/static/style.css">' in render_page("T", page, entity, [], [page],
                                                                           ("/static/style.css",))
    assert "<link" not in render_page("T", page, entity, [], [page])
