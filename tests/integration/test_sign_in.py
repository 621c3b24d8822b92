"""Sign-in, sessions, CSRF and role guards, through the real HTTP stack."""

from __future__ import annotations

import pytest

from orderdesk.web.auth import SESSION_COOKIE
from tests.conftest import Person, World, session_csrf, sign_in


async def test_staff_sign_in_lands_on_console_with_safe_cookie(client, world: World):
    response = await sign_in(client, world.agent_a)
    assert response.status_code in (301, 302, 303)
    assert response.headers["location"] == "/console"
    set_cookie = next(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v
    )
    assert "HttpOnly" in set_cookie
    assert "SameSite=lax" in set_cookie or "samesite=lax" in set_cookie.lower()
    page = await client.get("/console")
    assert page.status_code == 200
    assert world.a.name in page.text
    assert world.b.name not in page.text


async def test_wrong_password_is_refused_without_revealing_the_account(client, world: World):
    wrong = await sign_in(client, world.agent_a, password="not the password at all")
    unknown = await sign_in(
        client, Person("nobody@nowhere.example.com", "whatever-password", world.agent_a.id)
    )
    assert wrong.status_code == unknown.status_code == 401
    assert "Email or password is incorrect" in wrong.text
    assert "Email or password is incorrect" in unknown.text
    assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")


async def test_each_sign_in_gets_a_new_session_id(app_client_factory, world: World):
    async with app_client_factory() as first, app_client_factory() as second:
        one = await sign_in(first, world.agent_a)
        two = await sign_in(second, world.agent_a)
        assert one.cookies[SESSION_COOKIE] != two.cookies[SESSION_COOKIE]


async def test_repeated_failures_are_throttled_per_account(client, world: World):
    for _ in range(10):
        assert (await sign_in(client, world.agent_b, password="wrong-password-x")).status_code == 401
    throttled = await sign_in(client, world.agent_b)  # even the right password waits
    assert throttled.status_code == 429
    assert "Too many failed sign-in attempts" in throttled.text
    assert int(throttled.headers["retry-after"]) > 0


async def test_sign_in_without_the_form_token_is_refused(client, world: World):
    response = await client.post(
        "/sign-in",
        data={"email": world.agent_a.email, "password": world.agent_a.password},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "CSRF token" in response.text


async def test_unsafe_request_without_csrf_token_is_refused(client, world: World):
    await sign_in(client, world.client_admin_a)
    missing = await client.post("/api/v1/api-keys", json={"name": "no token"})
    assert missing.status_code == 403
    assert missing.json()["detail"].startswith("The form has expired or the CSRF token is missing")
    page = await client.get("/portal")
    ok = await client.post(
        "/api/v1/api-keys",
        json={"name": "with token"},
        headers={"X-CSRF-Token": session_csrf(page.text)},
    )
    assert ok.status_code == 201, ok.text


async def test_idle_session_expires_and_says_so(client, world: World, owner_connection):
    await sign_in(client, world.agent_a)
    assert (await client.get("/console")).status_code == 200
    await owner_connection.execute(
        "UPDATE web_sessions SET last_seen_at = now() - interval '31 minutes' WHERE user_id = $1",
        world.agent_a.id,
    )
    page = await client.get("/console", follow_redirects=False)
    assert page.status_code in (302, 303)
    assert page.headers["location"].startswith("/sign-in?reason=expired")
    api = await client.get("/api/v1/me")
    assert api.status_code == 401


async def test_absolute_session_limit_ends_even_an_active_session(client, world: World, owner_connection):
    await sign_in(client, world.agent_a)
    await owner_connection.execute(
        "UPDATE web_sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1",
        world.agent_a.id,
    )
    api = await client.get("/api/v1/me")
    assert api.status_code == 401
    assert "expired" in api.json()["detail"]


async def test_sign_out_ends_the_session(client, world: World):
    await sign_in(client, world.agent_a)
    page = await client.get("/console")
    token = client.cookies[SESSION_COOKIE]
    out = await client.post("/sign-out", data={"_csrf": session_csrf(page.text)}, follow_redirects=False)
    assert out.status_code in (302, 303)
    client.cookies.set(SESSION_COOKIE, token)  # replaying the old cookie must not work
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_client_user_cannot_open_the_console(client, world: World):
    await sign_in(client, world.client_viewer_a)
    response = await client.get("/console")
    assert response.status_code == 403
    assert "client users sign in to the portal" in response.text


async def test_staff_cannot_open_the_portal(client, world: World):
    await sign_in(client, world.agent_a)
    assert (await client.get("/portal")).status_code == 403


async def test_anonymous_console_visit_redirects_to_sign_in(client):
    response = await client.get("/console/", follow_redirects=False)
    assert response.status_code in (302, 303)
    assert response.headers["location"].startswith("/sign-in")


async def test_open_redirect_is_not_followed_after_sign_in(client, world: World):
    page = await client.get("/sign-in")
    token = page.text.split('name="_csrf" value="')[1].split('"')[0]
    response = await client.post(
        "/sign-in",
        data={
            "email": world.agent_a.email,
            "password": world.agent_a.password,
            "_csrf": token,
            "next": "//evil.example.com/",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/console"


@pytest.mark.parametrize("header", ["Bearer ", "Basic abc", "Bearer odk_short"])
async def test_malformed_authorization_is_401(client, header):
    response = await client.get("/api/v1/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_failures_from_one_address_are_throttled_across_accounts(db):
    import uuid

    from orderdesk.accounts import services as accounts
    from orderdesk.core.errors import AuthenticationFailed, Throttled

    address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    for i in range(50):
        with pytest.raises(AuthenticationFailed):
            await accounts.sign_in(
                db, f"guess{i}-{uuid.uuid4().hex[:6]}@example.com", "wrong", address=address
            )
    with pytest.raises(Throttled, match="for this address"):
        await accounts.sign_in(db, "another@example.com", "wrong", address=address)
    # Another address is not affected.
    with pytest.raises(AuthenticationFailed):
        await accounts.sign_in(db, "another@example.com", "wrong", address="198.51.100.7")


async def test_request_log_lines_carry_request_id_actor_and_tenant(settings, world: World, capfd):
    import json

    from litestar.testing import AsyncTestClient

    from orderdesk.app import create_app
    from orderdesk.web.logging import configure_logging

    try:
        async with AsyncTestClient(
            app=create_app(settings.model_copy(update={"log_level": "INFO"}))
        ) as client:
            await client.get(
                "/api/v1/me", headers={"Authorization": f"Bearer {world.key_a}", "X-Request-ID": "trace-42"}
            )
    finally:
        configure_logging(settings.log_level)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    entry = next(e for e in lines if e.get("event") == "request" and e.get("request_id") == "trace-42")
    assert entry["status"] == 200 and entry["path"] == "/api/v1/me"
    assert entry["actor"] == f"api_key:{world.key_a_id}"
    assert entry["tenants"] == str(world.a.id)
