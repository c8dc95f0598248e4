"""Audit rules: which requests are audited, what of them is kept (never a secret or a spec body)."""

import json

from services.api import audit


def test_every_write_under_v1_and_credential_reveals_are_audited():
    assert audit.classify("POST", "/v1/tenants") == ("tenant.create", None)
    assert audit.classify("PUT", "/v1/tenants/acme/app") == ("tenant.update", "acme")
    assert audit.classify("DELETE", "/v1/tenants/acme") == ("tenant.delete", "acme")
    assert audit.classify("POST", "/v1/tenants/acme/replay") == ("tenant.replay", "acme")
    assert audit.classify("GET", "/v1/tenants/acme/env") == ("tenant.reveal_credentials", "acme")
    assert audit.classify("POST", "/v1/tenants/acme/nonsense") == ("post /v1/tenants/{name}/nonsense", "acme")
    assert audit.classify("PATCH", "/v1/tenants/acme/domain") == ("patch /v1/tenants/{name}/domain", "acme")
    assert audit.classify("POST", "/v1/other") == ("post /v1/other", None)
    for method, path in (("GET", "/v1/tenants"), ("GET", "/v1/tenants/acme"), ("GET", "/v1/audit"),
                         ("GET", "/healthz"), ("GET", "/v1/tenants/acme/events")):
        assert audit.classify(method, path) is None


def test_the_summary_keeps_the_spec_digest_not_its_body():
    spec = "app: Secret shop\nentities: {}\n"
    out = audit.summarize(json.dumps({"name": "acme", "app": spec, "domain": "shop.example.com",
                                      "allow_destructive": True, "token": "hunter2"}).encode())
    assert out["name"] == "acme" and out["domain"] == "shop.example.com" and out["allow_destructive"] is True
    assert out["app"]["bytes"] == len(spec) and len(out["app"]["sha256"]) == 64
    assert "Secret shop" not in json.dumps(out) and "hunter2" not in json.dumps(out)


def test_the_summary_copes_with_anything():
    assert audit.summarize(b"") == {}
    assert audit.summarize(b"not json") == {"body": "not JSON (8 bytes)"}
    assert audit.summarize(b"[1, 2]") == {"body": "list"}
    assert len(audit.summarize({"name": "x" * 5000})["name"]) == 200
    assert audit.summarize({"app": {"entities": []}})["app"]["bytes"] > 0


def test_outcomes_and_identity():
    assert audit.outcome_of(202) == "accepted" and audit.outcome_of(200, changed=False) == "unchanged"
    assert audit.outcome_of(409) == "refused" and audit.outcome_of(500) == "failed"
    ident = audit.token_identity("s3cr3t-token-value-long-enough")
    assert ident.startswith("token:") and len(ident) == 18 and "s3cr3t" not in ident
    assert ident == audit.token_identity("s3cr3t-token-value-long-enough")


def test_the_table_refuses_rewrites():
    sql = audit.SCHEMA_SQL
    assert "BEFORE UPDATE OR DELETE ON audit_log" in sql and "BEFORE TRUNCATE ON audit_log" in sql


def test_domain_rollback_and_source_deploys_have_their_own_audit_names():
    from services.api.audit import classify

    assert classify("PUT", "/v1/tenants/shop/domain") == ("tenant.domain", "shop")
    assert classify("POST", "/v1/tenants/shop/rollback") == ("tenant.rollback", "shop")
    assert classify("POST", "/v1/tenants/shop/source") == ("tenant.deploy_source", "shop")
    assert classify("GET", "/v1/tenants/shop/source") is None
