"""Schemathesis against the running control-plane API (uvicorn, PostgreSQL, moto): every
operation of the document the server publishes at /openapi.json, with and without the
token, a fixed seed and a bounded number of examples. Checks: no server error, the
response body matches its documented schema, the status code and the content type are
documented.

What the fuzzer may touch on the shared platform (other tests use its tenants):
- The generated inputs come from the server's own document, with one narrowing: every
  tenant name (the `{name}` path parameter and the create body's `name`) is either the
  fuzz test's own tenant (FUZZ), a valid name no test creates (ABSENT), or a string holding
  at least one character no tenant id can hold (NUL, capitals, punctuation...). So the
  fuzzer can never create another tenant nor change or delete one another test owns.
- Replay gets no valid existing name: re-publishing FUZZ's history is not this test's
  subject (docs/replay.md) and would start builds; replay's 404/422 answers are fuzzed.
- DELETE runs last, so the other operations see FUZZ alive (and GET …/source its zip).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import Counter

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]

SEED = 20261204
EXAMPLES_WITH_TOKEN = 40  # per operation
EXAMPLES_WITHOUT_TOKEN = 5  # per operation: the guard answers 401 before anything else
EXAMPLES_ON_OWN_TENANT = 15  # per operation of FUZZ that leaves it alive, before the broad pass
FUZZ = "fuzz-contract"
ABSENT = "fuzz-absent"
INVALID = {"type": "string", "pattern": "[^a-z0-9-]"}  # contains a character no tenant id has
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
SPEC = "app: Fuzzed\nentities:\n  note:\n    fields:\n      text: {type: string}\n"


def narrowed(doc: dict, *, own_tenant_only: bool = False) -> dict:
    """The server's document with tenant names narrowed (module docstring). `own_tenant_only`:
    only FUZZ's operations that leave it alive (no DELETE, no replay), always on FUZZ, so the
    bodies are fuzzed against an existing tenant (200, 202, 409 rather than 404)."""
    doc = copy.deepcopy(doc)
    for path, ops in list(doc["paths"].items()):
        for method, op in list(ops.items()):
            if own_tenant_only and ("{name}" not in path or method == "delete" or path.endswith("/replay")):
                del ops[method]
                continue
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] == "name":
                    names = [ABSENT] if path.endswith("/replay") else [FUZZ, ABSENT]
                    param["schema"] = {"enum": [FUZZ]} if own_tenant_only else {"anyOf": [{"enum": names}, INVALID]}
        if not ops:
            del doc["paths"][path]
    doc["components"]["schemas"]["CreateTenant"]["properties"]["name"] = {"anyOf": [{"enum": [FUZZ]}, INVALID]}
    return doc


def _order(label: str) -> tuple[int, str]:
    return (1 if label.startswith("DELETE") else 0, label)


async def _fuzz_tenant(api: httpx.AsyncClient) -> str:
    resp = await api.post("/v1/tenants", json={"name": FUZZ, "app": SPEC})
    assert resp.status_code in (202, 409), resp.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = (await api.get(f"/v1/tenants/{FUZZ}")).json()["state"]
        if state in ("ready", "failed"):
            return state
        await asyncio.sleep(0.5)
    return "timeout"


def _run(schema, base_url: str, headers: dict, examples: int, counts: Counter, statuses: Counter) -> list[str]:
    """Each operation in turn; returns what failed (every operation runs, whatever an earlier one found)."""
    operations = sorted((r.ok() for r in schema.get_all_operations()), key=lambda op: _order(op.label))
    session = requests.Session()
    failures = []
    for operation in operations:
        @seed(SEED)
        @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=15)
            counts[operation.label] += 1
            statuses[(operation.label, response.status_code)] += 1
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis: the failed checks, a curl line
            failures.append(f"{operation.label} ({'with' if headers else 'without'} the token): {exc}")
    return failures


async def test_the_api_matches_its_document_under_schemathesis(running_platform):
    settings_ = running_platform.settings
    token = json.loads((settings_.home_dir / "credentials.json").read_text())["api_token"]
    base_url = f"http://127.0.0.1:{settings_.api_port}"
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=10, headers=auth) as api:
        state = await _fuzz_tenant(api)
        doc = (await api.get("/openapi.json")).json()
    assert state == "ready", f"the fuzz tenant did not become ready ({state})"
    schema = schemathesis.openapi.from_dict(narrowed(doc))
    counts: Counter = Counter()
    statuses: Counter = Counter()
    started = time.monotonic()
    own = schemathesis.openapi.from_dict(narrowed(doc, own_tenant_only=True))
    failures = await asyncio.to_thread(_run, own, base_url, auth, EXAMPLES_ON_OWN_TENANT, counts, statuses)
    failures += await asyncio.to_thread(_run, schema, base_url, auth, EXAMPLES_WITH_TOKEN, counts, statuses)
    with_token = sum(counts.values())
    failures += await asyncio.to_thread(_run, schema, base_url, {}, EXAMPLES_WITHOUT_TOKEN, counts, statuses)
    took = time.monotonic() - started
    print(f"\nschemathesis seed {SEED}: {with_token} cases with the token, {sum(counts.values()) - with_token} "
          f"without, {len(counts)} operations, {took:.1f} s")
    for (label, status), n in sorted(statuses.items()):
        print(f"  {label}: {status} x{n}")
    assert not failures, "\n\n".join(failures)
    assert len(counts) == len([p for ops in doc["paths"].values() for p in ops]), "every operation was fuzzed"
    unauthorized = sum(n for (label, status), n in statuses.items() if status == 401)
    assert unauthorized >= EXAMPLES_WITHOUT_TOKEN * len([label for label in counts if " /v1/" in label]) // 2
    # The fuzzer saw more than refusals: the fuzz tenant's reads answered 200
    assert statuses[("GET /v1/tenants/{name}", 200)] > 0 and statuses[("GET /v1/tenants/{name}/source", 200)] > 0
