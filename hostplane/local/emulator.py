"""Our moto server: moto's WSGI app behind a guard, with IAM enforced from its first request.

`python -m moto.server` accepts any credentials, serves /moto-api/ (reset, data dump) to
anyone and answers CORS preflights from every origin. This launcher runs the same moto
app in its own process (`hostplane up` starts it) but:

- before it listens, it creates the platform's IAM user in moto with the access key
  `up` generated into `<home>/credentials.json` (the same key after a restart, so running
  services keep working), then turns on moto's IAM-like access control for every request
  (signature checked against the user's secret, actions against its policy);
- the guard (`EmulatorGuard`) refuses, before moto sees them: /moto-api/* and moto's
  fake instance metadata, every OPTIONS request (no browser origin needs the emulator),
  and any request with no Authorization header; it drops `x-moto-account-id` (a header
  that would pick another account) and strips Access-Control-* headers from answers;
- the edge's read of a static asset (Caddy's GET/HEAD `/<bucket>/<key>`, no query string,
  carrying `EDGE_AUTH`, see services/router_config/routes.py) is re-signed inside this
  process as the `edge` user, which may only `s3:GetObject` in `*-static` buckets. That is
  exactly what the edge already serves to anyone at `/static/<key>`; the edge user's key
  never leaves this process.

`GET /_hostplane/health` answers 200 once the bootstrap is done (the health probe). With
`--state` the launcher also keeps moto's state across a stop and a start
(hostplane.local.emulator_state), and it serializes SQS deletes (`serialize_sqs_deletes`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from core.state import new_access_key_id, new_secret_access_key
from hostplane.local import emulator_state

HEALTH_PATH = "/_hostplane/health"
PLATFORM_USER = "hostplane-platform"
EDGE_USER = "hostplane-edge"
REGION = "us-east-1"
# What Caddy presents when it reads a tenant's static asset (router_config.lookup.EMULATOR_AUTH).
EDGE_AUTH = ("AWS4-HMAC-SHA256 Credential=test/20000101/us-east-1/s3/aws4_request, "
             "SignedHeaders=host, Signature=unsigned")
REFUSED_PREFIXES = ("/moto-api", "/favicon.ico", "/latest/meta-data", "/latest/api")
_EDGE_PATH = re.compile(r"^/[a-z0-9][a-z0-9.-]*-static/[^?]+$")

PLATFORM_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "PlatformOperator", "Effect": "Allow", "Action": "*", "Resource": "*"}]}
EDGE_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "ReadStaticAssets", "Effect": "Allow", "Action": ["s3:GetObject"],
     "Resource": "arn:aws:s3:::*-static/*"}]}

StartResponse = Callable[..., Any]


def _deny(start_response: StartResponse, code: str, message: str, *, as_json: bool = False) -> list[bytes]:
    if as_json:  # the JSON protocols (Secrets Manager, EventBridge, SQS) read the code from __type
        body = json.dumps({"__type": code, "message": message}).encode()
        content_type = "application/x-amz-json-1.1"
    else:
        body = (f'<?xml version="1.0" encoding="UTF-8"?><ErrorResponse><Error><Type>Sender</Type>'
                f"<Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>").encode()
        content_type = "text/xml"
    start_response("403 Forbidden", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _without_cors(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]


class EmulatorGuard:
    """WSGI middleware in front of moto's app (see the module docstring)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], edge_signer: Callable[[dict[str, Any]], None]):
        self.app = app
        self.edge_signer = edge_signer

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        as_json = environ.get("CONTENT_TYPE", "").startswith("application/x-amz-json")
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
            return [b"ok\n"]
        if path.startswith(REFUSED_PREFIXES):
            return _deny(start_response, "AccessDenied", "not served by this emulator")
        if method == "OPTIONS":
            return _deny(start_response, "AccessDenied", "CORS is not served by this emulator")
        environ.pop("HTTP_X_MOTO_ACCOUNT_ID", None)
        auth = environ.get("HTTP_AUTHORIZATION")
        if not auth:
            return _deny(start_response, "MissingAuthenticationTokenException" if as_json
                         else "MissingAuthenticationToken", "Request is missing Authentication Token",
                         as_json=as_json)
        if auth == EDGE_AUTH:
            if not (method in ("GET", "HEAD") and not environ.get("QUERY_STRING")
                    and _EDGE_PATH.match(path)):
                return _deny(start_response, "AccessDenied", "the edge only reads static assets", as_json=as_json)
            self.edge_signer(environ)
        if as_json:
            return self._json_call(environ, start_response)

        def without_cors(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, _without_cors(headers), *exc)

        return self.app(environ, without_cors)

    def _json_call(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """moto answers a refused JSON-protocol request with IAM's XML error, which a JSON
        client cannot read (it sees a bare 403): translate that one answer to JSON."""
        answer: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], *exc: Any) -> Callable[[bytes], None]:
            answer.update(status=status, headers=headers)
            return lambda _: None

        result = self.app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        if answer["status"].startswith("403") and body.lstrip().startswith(b"<"):
            code = re.search(rb"<Code>([^<]*)</Code>", body)
            message = re.search(rb"<Message>([^<]*)</Message>", body)
            return _deny(start_response, code.group(1).decode() if code else "AccessDenied",
                         message.group(1).decode() if message else "", as_json=True)
        start_response(answer["status"], _without_cors(answer["headers"]))
        return [body]


def _install_user(backend: Any, name: str, policy: dict[str, Any], key_id: str, secret: str) -> None:
    """Create `name` with `policy` and exactly the access key (`key_id`, `secret`)."""
    backend.create_user(REGION, name)
    backend.put_user_policy(name, f"{name}-policy", json.dumps(policy))
    key = backend.create_access_key(name)
    backend.access_keys.pop(key.physical_resource_id, None)
    key.access_key_id, key.secret_access_key = key_id, secret
    backend.access_keys[key.physical_resource_id] = key


def bootstrap(key_id: str, secret: str) -> Callable[[dict[str, Any]], None]:
    """Create the IAM users in moto's memory, enforce IAM; returns the edge re-signer."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from moto import settings as moto_settings
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    backend = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    _install_user(backend, PLATFORM_USER, PLATFORM_POLICY, key_id, secret)
    edge_key, edge_secret = new_access_key_id(), new_secret_access_key()
    _install_user(backend, EDGE_USER, EDGE_POLICY, edge_key, edge_secret)
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # every request from now on is checked

    auth = S3SigV4Auth(Credentials(edge_key, edge_secret), "s3", REGION)

    def sign_as_edge(environ: dict[str, Any]) -> None:
        for name in [k for k in environ if k.startswith("HTTP_X_AMZ_")]:
            del environ[name]
        host = environ.get("HTTP_HOST", "")
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        request = AWSRequest(method=environ["REQUEST_METHOD"], url=f"http://{host}{raw}", headers={"Host": host})
        auth.add_auth(request)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256"):
            environ["HTTP_" + name.upper().replace("-", "_")] = request.headers[name]

    return sign_as_edge


def serialize_sqs_deletes() -> None:
    """moto's SQS (5.2.5, and 5.2.6 alike) appends a new message under the queue's lock, but
    DeleteMessage rebuilds the queue's list without it: a message EventBridge delivers while a
    consumer deletes another one can be dropped from the new list, lost without a trace. The
    server answers requests on threads, so a burst does it: 1 of 100 tenants never saw its
    ReleaseActivated reach the API (bench/burst.py, 2026-12-07). A delete now holds the lock
    too. Real SQS loses nothing; nor may the emulator."""
    from moto.sqs.models import Queue

    if getattr(Queue.delete_message, "serialized", False):
        return
    unlocked = Queue.delete_message

    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            unlocked(self, receipt_handle)

    delete_message.serialized = True  # type: ignore[attr-defined]
    Queue.delete_message = delete_message  # type: ignore[method-assign]


def build_app(key_id: str, secret: str) -> EmulatorGuard:
    os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"  # read when moto's server module is imported
    os.environ.pop("MOTO_ACCOUNT_ID", None)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    serialize_sqs_deletes()
    signer = bootstrap(key_id, secret)
    return EmulatorGuard(DomainDispatcherApplication(create_backend_app), signer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--credentials", type=Path, required=True,
                        help="credentials.json holding emulator_key_id / emulator_secret")
    parser.add_argument("--state", type=Path, help="where the state is kept across restarts "
                        "(hostplane.local.emulator_state); none: in memory only")
    args = parser.parse_args(argv)
    creds = json.loads(args.credentials.read_text())
    key_id, secret = creds.get("emulator_key_id"), creds.get("emulator_secret")
    if not key_id or not secret:
        sys.exit(f"{args.credentials} holds no emulator key; run `hostplane up`")
    app = build_app(key_id, secret)
    del creds, secret
    if args.state is not None:
        try:
            restored = emulator_state.load(args.state)
        except emulator_state.StateUnreadable as exc:
            sys.exit(f"emulator: {exc}")
        print(f"emulator: state restored from {args.state}: {', '.join(restored) or 'none saved'}", file=sys.stderr)

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import run_simple

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    finally:
        if args.state is not None:
            size = emulator_state.save(args.state)
            print(f"emulator: state saved to {args.state} ({size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
