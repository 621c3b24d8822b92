"""Staff admins manage a tenant's webhook endpoints from the console."""

from __future__ import annotations

import re

from tests.conftest import World, sign_in


async def test_admin_adds_tests_rotates_and_disables_an_endpoint(client, world: World, settings):
    await sign_in(client, world.admin)
    base = f"/console/tenants/{world.a.id}/webhooks"
    page = await client.get(base)
    assert page.status_code == 200 and "No endpoints yet" in page.text
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)

    refused = await client.post(base, data={"_csrf": csrf, "url": "https://10.0.0.5/hook"})
    assert refused.status_code == 422 and "private address" in refused.text

    added = await client.post(
        base,
        data={
            "_csrf": csrf,
            "url": "https://93.184.216.34/acme",
            "event_types": ["order.created", "order.cancelled"],
            "ordered": "on",
        },
    )
    assert added.status_code == 200, added.text
    first_secret = re.search(r'data-testid="secret">(whsec_[^<]+)<', added.text).group(1)
    assert "order.cancelled, order.created" in added.text
    endpoint_id = re.search(rf"{base}/([0-9a-f-]+)/test", added.text).group(1)

    tested = await client.post(f"{base}/{endpoint_id}/test", data={"_csrf": csrf})
    assert "Test event queued" in tested.text
    log = await client.get(f"{base}/{endpoint_id}/log", headers={"HX-Request": "true"})
    assert "endpoint.test" in log.text and "pending" in log.text

    rotated = await client.post(f"{base}/{endpoint_id}/rotate", data={"_csrf": csrf})
    second_secret = re.search(r'data-testid="secret">(whsec_[^<]+)<', rotated.text).group(1)
    assert second_secret != first_secret

    disabled = await client.post(f"{base}/{endpoint_id}/toggle", data={"_csrf": csrf})
    assert "Endpoint disabled." in disabled.text and "pill bad" in disabled.text


async def test_agents_and_leads_cannot_manage_endpoints(client, world: World):
    await sign_in(client, world.lead_a)
    response = await client.get(f"/console/tenants/{world.a.id}/webhooks")
    assert response.status_code == 403
    assert "Only administrators can manage webhook endpoints" in response.text


async def test_form_without_csrf_token_is_refused(client, world: World):
    await sign_in(client, world.admin)
    response = await client.post(
        f"/console/tenants/{world.a.id}/webhooks", data={"url": "https://x.example.com"}
    )
    assert response.status_code == 403
