"""/schema/openapi.json documents every API operation: a summary, examples, and its errors.

What an operation must document follows from its shape:

- every operation: 401 (no, or a bad, credential);
- an id in the path, or a tenant chosen by `tenant_id` (query or body): 404;
- any parameter or body: 400 (the request could not be read);
- unsafe methods: 403 (roles, and the CSRF check of cookie requests);
- creating (POST to a collection) or changing (PUT, PATCH): 422;
- changing an order's state (lifecycle actions, holds, checks) and creating orders
  (a reused Idempotency-Key): 409.

Every documented error is an RFC 9457 problem (`ProblemDetails`, application/problem+json)
with an example, and every request body schema carries a whole-body example.
"""

from __future__ import annotations

import pytest

from orderdesk.orders.states import Action

PROBLEM = "application/problem+json"
PROBLEM_REF = "#/components/schemas/ProblemDetails"
UNSAFE = {"post", "put", "patch", "delete"}
ORDER_STATE_CHANGES = {
    "/api/v1/orders",
    "/api/v1/orders/{order_id}/holds",
    "/api/v1/orders/{order_id}/holds/release",
    "/api/v1/orders/{order_id}/checks/{check}",
    *(
        f"/api/v1/orders/{{order_id}}/{a.value.replace('_', '-')}"
        for a in Action
        if a not in (Action.PLACE_HOLD, Action.RELEASE_HOLD)
    ),
}


@pytest.fixture
async def schema(client) -> dict:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


def api_operations(schema: dict) -> list[tuple[str, str, dict]]:
    operations = [
        (method, path, operation)
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert len(operations) > 30
    return operations


def resolve(schema: dict, node: dict) -> list[dict]:
    """The component schemas a body schema names, through `$ref` and `oneOf`/`anyOf` (`X | None`)."""
    if "$ref" in node:
        return [schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]]
    return [found for option in node.get("oneOf", node.get("anyOf", [])) for found in resolve(schema, option)]


def body_schemas(schema: dict, operation: dict) -> list[dict]:
    body = operation.get("requestBody")
    if not body:
        return []
    return [found for media in body["content"].values() for found in resolve(schema, media["schema"])]


def expected_errors(schema: dict, method: str, path: str, operation: dict) -> set[int]:
    parameters = operation.get("parameters", [])
    bodies = body_schemas(schema, operation)
    expected = {401}
    if (
        "{" in path
        or any(p["name"] == "tenant_id" for p in parameters)
        or any("tenant_id" in b.get("properties", {}) for b in bodies)
    ):
        expected.add(404)
    if parameters or "requestBody" in operation:
        expected.add(400)
    if method in UNSAFE:
        expected.add(403)
    if method in {"put", "patch"} or (method == "post" and "{" not in path):
        expected.add(422)
    if method == "post" and path in ORDER_STATE_CHANGES:
        expected.add(409)
    return expected


async def test_every_operation_has_a_summary(schema):
    missing = [f"{m.upper()} {p}" for m, p, op in api_operations(schema) if not op.get("summary", "").strip()]
    assert missing == []


async def test_every_request_body_has_an_example(schema):
    missing = []
    for method, path, operation in api_operations(schema):
        if "requestBody" not in operation:
            continue
        media = next(iter(operation["requestBody"]["content"].values()))
        documented = bool(media.get("example") or media.get("examples"))
        bodies = body_schemas(schema, operation)
        documented = documented or (bodies and all(b.get("examples") or b.get("example") for b in bodies))
        if not documented:
            missing.append(f"{method.upper()} {path}")
    assert missing == []


async def test_every_operation_documents_its_errors_as_problems(schema):
    problems = []
    for method, path, operation in api_operations(schema):
        responses = operation["responses"]
        documented = {int(status) for status in responses if status[0] in "45"}
        if missing := expected_errors(schema, method, path, operation) - documented:
            problems.append(f"{method.upper()} {path}: no {sorted(missing)}")
        for status in sorted(documented):
            content = responses[str(status)].get("content") or {}
            media = content.get(PROBLEM)
            if set(content) != {PROBLEM} or media["schema"].get("$ref") != PROBLEM_REF:
                problems.append(f"{method.upper()} {path}: {status} is not a ProblemDetails")
            elif not media.get("examples"):
                problems.append(f"{method.upper()} {path}: {status} has no example")
    assert problems == []


async def test_the_problem_schema_matches_what_the_api_answers(client, schema):
    problem_schema = schema["components"]["schemas"]["ProblemDetails"]
    assert {"type", "title", "status", "detail"} <= set(problem_schema["required"])
    answer = await client.get("/api/v1/orders")  # no credentials
    assert answer.status_code == 401 and answer.headers["content-type"].startswith(PROBLEM)
    assert set(answer.json()) <= set(problem_schema["properties"])
    example = schema["paths"]["/api/v1/orders"]["post"]["responses"]["422"]["content"][PROBLEM]["examples"]
    value = next(iter(example.values()))["value"]
    assert set(value) <= set(problem_schema["properties"]) and value["status"] == 422


async def test_the_order_example_is_a_valid_order(client, world, schema):
    [order_create] = body_schemas(schema, schema["paths"]["/api/v1/orders"]["post"])
    [example] = order_create["examples"]
    response = await client.post(
        "/api/v1/orders", json=example, headers={"Authorization": f"Bearer {world.key_a}"}
    )
    assert response.status_code == 201, response.text
