"""What /schema/openapi.json says about errors and examples, shared by every API controller.

Every error of the API is an RFC 9457 problem (see `web/errors.py`); handlers list
the statuses they can answer with `responses=problem_responses(401, 404, …)`, so
the schema shows the real body instead of Litestar's default error shape.

Input schemas give whole-body examples the pydantic way
(`model_config["json_schema_extra"]["examples"]`). Litestar only reads a model's
`model_config["example"]`, so `ModelExamplesPlugin` copies the first example over
when the app starts.
"""

from __future__ import annotations

from collections.abc import Iterator

from litestar.config.app import AppConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.plugins import InitPluginProtocol
from pydantic import BaseModel, Field

from orderdesk.core.schemas import InputSchema, OutputSchema
from orderdesk.web.errors import PROBLEM_JSON


class FieldProblem(OutputSchema):
    field: str = Field(description="The input field, as a path (`lines[0].sku`) or a header name")
    message: str


class ProblemDetails(OutputSchema):
    """An RFC 9457 problem: the body of every error the API answers."""

    type: str = Field(
        description="`about:blank` when the status says it all, else a problem kind such as "
        "`/problems/validation` or `/problems/invalid-transition`"
    )
    title: str = Field(description="The HTTP status phrase")
    status: int
    detail: str = Field(description="What went wrong, for a person")
    errors: list[FieldProblem] | None = Field(
        default=None, description="400 and 422: every field that broke a rule, not just the first"
    )
    state: str | None = Field(default=None, description="409 invalid transition: the order's status")
    action: str | None = Field(default=None, description="409 invalid transition: the action refused")
    allowed_actions: list[str] | None = Field(
        default=None, description="409 invalid transition: what the order allows now"
    )

    model_config = {
        **OutputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "type": "/problems/validation",
                    "title": "Unprocessable Content",
                    "status": 422,
                    "detail": "The input is not valid",
                    "errors": [
                        {
                            "field": "shipping_address.country",
                            "message": "'XX' is not an ISO 3166-1 alpha-2 country code",
                        }
                    ],
                }
            ]
        },
    }


def _problem(status: int, title: str, detail: str, **extra: object) -> dict[str, object]:
    return {
        "type": extra.pop("type", "about:blank"),
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }


# Status -> (when it is answered, an example body).
PROBLEMS: dict[int, tuple[str, dict[str, object]]] = {
    400: (
        "The request could not be read: malformed JSON, a value of the wrong type, an unknown field",
        _problem(
            400,
            "Bad Request",
            "The request could not be read: see errors",
            type="/problems/validation",
            errors=[{"field": "lines.0.quantity", "message": "Input should be greater than 0"}],
        ),
    ),
    401: (
        "No credentials, or an API key or session that is wrong, expired or revoked",
        _problem(401, "Unauthorized", "The API key has been revoked"),
    ),
    403: (
        "The caller's role does not allow this (or a cookie request lacks its CSRF token)",
        _problem(403, "Forbidden", "Only administrators can manage API keys"),
    ),
    404: (
        "Not found, or not the caller's: the two answers are the same",
        _problem(404, "Not Found", "Order not found"),
    ),
    409: (
        "Valid, but not now: the order's state does not allow the action, or the request clashes "
        "with an earlier one (a reused Idempotency-Key, a hold of the same reason)",
        _problem(
            409,
            "Conflict",
            "Action 'ship' is not allowed while the order is 'awaiting_verification'",
            type="/problems/invalid-transition",
            state="awaiting_verification",
            action="ship",
            allowed_actions=["verify", "cancel", "place_hold"],
        ),
    ),
    413: (
        "The request body is larger than the endpoint accepts (an inbound email over the size limit)",
        _problem(413, "Request Entity Too Large", "message of 20971600 bytes is larger than the limit"),
    ),
    422: (
        "The input was read but broke a rule; every broken field is listed",
        _problem(
            422,
            "Unprocessable Content",
            "The input is not valid",
            type="/problems/validation",
            errors=[
                {
                    "field": "total_minor",
                    "message": "is 1 but the lines, tax, shipping and discount add up to 50357",
                }
            ],
        ),
    ),
}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """`responses=` for a handler: each status documented as a problem+json with an example."""
    return {
        status: ResponseSpec(
            data_container=ProblemDetails,
            description=PROBLEMS[status][0],
            media_type=PROBLEM_JSON,
            generate_examples=False,
            examples=[Example(summary=PROBLEMS[status][0], value=PROBLEMS[status][1])],
        )
        for status in statuses
    }


def _models(base: type[BaseModel]) -> Iterator[type[BaseModel]]:
    for model in base.__subclasses__():
        yield model
        yield from _models(model)


def publish_model_examples() -> None:
    """Give every API schema with pydantic examples the `example` key Litestar reads."""
    for model in (*_models(InputSchema), *_models(OutputSchema)):
        extra = model.model_config.get("json_schema_extra")
        examples = extra.get("examples") if isinstance(extra, dict) else None
        if examples and "example" not in model.model_config:
            model.model_config["example"] = examples[0]  # type: ignore[typeddict-unknown-key]


class ModelExamplesPlugin(InitPluginProtocol):
    """Runs `publish_model_examples` once every controller (and so every schema) is imported."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        publish_model_examples()
        return app_config
