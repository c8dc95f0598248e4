"""The CLI's stdlib HTTP client (hostplane.cli_http) against a real server on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.ports import free_port
from hostplane.cli_http import Http, HttpError


class Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = json.dumps({"method": self.command, "path": self.path, "body": body.decode(),
                          "type": self.headers.get("Content-Type"), "auth": self.headers.get("Authorization")})
        self.send_response(418 if self.path.endswith("/teapot") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Hostplane-Version", "7")
        self.end_headers()
        self.wfile.write(out.encode())

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_a_json_request_reaches_the_server_with_its_headers_and_prefix(server):
    http = Http(server + "/api/", timeout=5, headers={"Authorization": "Bearer tok"})
    resp = http.request("PUT", "/v1/tenants/acme/app", json={"app": "x"})
    seen = resp.json()
    assert resp.status_code == 200 and resp.reason_phrase == "OK" and resp.headers["x-hostplane-version"] == "7"
    assert seen == {"method": "PUT", "path": "/api/v1/tenants/acme/app", "body": '{"app": "x"}',
                    "type": "application/json", "auth": "Bearer tok"}
    got = http.get("/v1/tenants").json()
    assert (got["method"], got["body"], got["type"]) == ("GET", "", None)  # no body, no content type


def test_an_error_status_is_an_answer_not_an_exception(server):
    resp = Http(server, timeout=5, headers={}).get("/teapot")
    assert resp.status_code == 418 and "teapot" in resp.text


def test_an_unreachable_api_is_one_of_the_errors_the_cli_reports():
    with pytest.raises(HttpError):
        Http(f"http://127.0.0.1:{free_port()}", timeout=2, headers={}).get("/v1/tenants")


@pytest.mark.parametrize("url", ["ftp://example.com", "http://", "api.example.com"])
def test_a_url_that_is_not_http_is_refused(url):
    with pytest.raises(ValueError, match="not an http"):
        Http(url, timeout=1, headers={})
