"""Settings.public_domain (AWS: the platform's base domain): tenant URLs are
https://<tenant>.<domain>/, and no tenant may claim a custom domain under it (api.,
edge., another tenant's host). Through the whole API stack over the stand-in database of
tests/support/api_fakes.py."""

from __future__ import annotations

import httpx
import pytest

from core.settings import Settings
from services.api.app import create_app
from services.api.http import ApiContext
from services.api.views import tenant_url
from tests.support.api_fakes import SPEC, TOKEN

ZONE = "apps.example.com"


@pytest.fixture
def client(db):
    ctx = ApiContext(pool=db, edge_port=8480, name_prefix="hostplane", secrets=None, public_domain=ZONE)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx, TOKEN)), base_url="http://api",
                             headers={"Authorization": f"Bearer {TOKEN}"})


def test_tenant_urls_are_local_until_a_public_domain_is_set(monkeypatch):
    assert tenant_url("acme", 8480) == "http://acme.localhost:8480/"
    assert tenant_url("acme", 8480, ZONE) == f"https://acme.{ZONE}/"
    assert Settings().public_domain is None
    monkeypatch.setenv("HOSTPLANE_PUBLIC_DOMAIN", ZONE)
    assert Settings().public_domain == ZONE


async def test_the_status_shows_the_public_url(client, db, published):
    resp = await client.post("/v1/tenants", json={"name": "acme", "app": SPEC, "domain": "shop.example.org"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["tenant"]["url"] == f"https://acme.{ZONE}/"


@pytest.mark.parametrize("domain", [ZONE, f"api.{ZONE}", f"edge.{ZONE}", f"beta.{ZONE}", f"A.B.{ZONE.upper()}"])
async def test_a_custom_domain_under_the_platforms_is_refused_and_nothing_written(client, db, published, domain):
    resp = await client.post("/v1/tenants", json={"name": "acme", "app": SPEC, "domain": domain})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"].startswith("domain: ") and ZONE in resp.json()["detail"]
    assert db.data_writes() == [] and published == []
    changed = await client.put("/v1/tenants/acme/domain", json={"domain": domain})
    assert changed.status_code == 422 and db.data_writes() == []


async def test_the_status_and_dashboard_show_a_pending_domains_dns_records(client, db, published):
    from services.api.dashboard.routes import _env

    await client.post("/v1/tenants", json={"name": "acme", "app": SPEC})
    tenant = (await client.get("/v1/tenants/acme")).json()
    assert (tenant["domain_pending"], tenant["dns_records"]) == (None, [])
    page = _env.get_template("_tenant_live.html")
    assert "tenant-dns" not in page.render(tenant=tenant, events=[])
    shown = tenant | {"domain_pending": "shop.example.org",
                      "dns_records": [{"name": "_a1.shop.example.org.", "type": "CNAME", "value": "_b2.acm.aws."}]}
    html = page.render(tenant=shown, events=[])
    assert "<code>_a1.shop.example.org. CNAME _b2.acm.aws.</code>" in html and "Domain pending" in html
