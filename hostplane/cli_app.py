"""`hostplane app export NAME DIR` and `hostplane app deploy NAME --source DIR`: take over
the generated code, edit it, release it through the builder like any spec change."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import typer

from hostplane.cli_http import HttpError
from hostplane.cli_tenant import AS_JSON, REFUSED, TIMEOUT, UNREACHABLE, WAIT, _fail, _follow, api_client

app_app = typer.Typer(help="an app's source: export, edit, deploy", no_args_is_help=True)
SKIPPED = ("__pycache__", ".git", ".venv")


@app_app.command("export")
def export(name: str = typer.Argument(...), directory: Path = typer.Argument(..., help="where to write the source"),
           force: bool = typer.Option(False, "--force", help="write into a folder that is not empty")) -> None:
    """Write the live version's source (app.py, appkit/, spec.json) into DIR."""
    if directory.exists() and any(directory.iterdir()) and not force:
        _fail(f"{directory} is not empty; choose another folder or pass --force")
    api = api_client()
    try:
        resp = api.http.get(f"/v1/tenants/{name}/source")
    except HttpError as exc:
        _fail(f"cannot reach the API at {api.base_url} ({type(exc).__name__})", UNREACHABLE)
    if resp.status_code != 200:
        try:
            detail = resp.json().get("detail", resp.reason_phrase)
        except ValueError:
            detail = resp.reason_phrase
        _fail(f"{detail} (HTTP {resp.status_code})", REFUSED)
    directory.mkdir(parents=True, exist_ok=True)
    root = directory.resolve()
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        for info in zf.infolist():
            target = (root / info.filename).resolve()
            if not target.is_relative_to(root):
                _fail(f"refusing unsafe path {info.filename!r} in the export")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))
    typer.echo(f"exported {name} version {resp.headers.get('x-hostplane-version', '?')} to {directory}")


def zip_tree(directory: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(directory.rglob("*")):
            rel = path.relative_to(directory)
            if path.is_file() and not path.name.endswith(".pyc") and not set(rel.parts) & set(SKIPPED):
                zf.write(path, rel.as_posix())
    return buf.getvalue()


@app_app.command("deploy")
def deploy(
    name: str = typer.Argument(...),
    source: Path = typer.Option(..., "--source", help="the edited source folder (from `app export`)"),
    allow_destructive: bool = typer.Option(False, "--allow-destructive", help="accept migrations that drop data"),
    wait: bool = WAIT,
    timeout: float = TIMEOUT,
    as_json: bool = AS_JSON,
) -> None:
    """Build and release an edited source folder (checked first: compiles, valid spec.json)."""
    if not (source / "app.py").is_file():
        _fail(f"{source} has no app.py; export the app first with `hostplane app export {name} DIR`")
    api = api_client()
    body = {"source_zip": base64.b64encode(zip_tree(source)).decode(), "allow_destructive": allow_destructive}
    _follow(api, api.call("POST", f"/v1/tenants/{name}/source", body), wait, timeout, as_json)
