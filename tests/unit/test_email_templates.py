"""The template sandbox: plain data only, internals out of reach, mistakes named at save time."""

from __future__ import annotations

import pytest

from orderdesk.comms import templates
from orderdesk.core.errors import ValidationFailed
from orderdesk.tenants.models import Tenant


@pytest.fixture
def context() -> dict:
    return templates.sample_context(Tenant(name="Acme Outdoor"), from_name="Acme Support")


def errors_of(subject: str, body: str, context: dict) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as refused:
        templates.validate(subject, body, context)
    return {e.field: e.message for e in refused.value.errors}


def test_a_template_renders_the_documented_variables(context):
    rendered = templates.render(
        "Order {{ order.reference }}",
        "Hi {{ customer.first_name }}, {{ order.reference }} is {{ tracking.status_label }}: "
        "{{ tracking_link }}\n"
        "{% for s in shipments %}{{ s.carrier }} {{ s.tracking_number }}{% endfor %}\n{{ tenant.from_name }}",
        context,
    )
    assert rendered.subject == "Order #1042"
    assert rendered.body.splitlines() == [
        "Hi Kim, #1042 is on its way: https://tracking.example.com/00340434161094042557",
        "DHL 00340434161094042557",
        "Acme Support",
    ]


def test_a_syntax_error_names_the_field_and_line(context):
    errors = errors_of("Hi", "line one\n{% if order %}no end", context)
    assert errors["body"].startswith("syntax error on line 2:")


def test_an_unknown_variable_is_named_with_the_ones_available(context):
    errors = errors_of("{{ ordr.number }}", "fine", context)
    assert errors["subject"].startswith("undefined variable: ordr (available: order, customer,")


def test_a_missing_attribute_is_refused_at_save_time(context):
    errors = errors_of("Hi", "{{ order.secret_field }}", context)
    assert errors["body"].startswith("undefined variable:") and "secret_field" in errors["body"]


@pytest.mark.parametrize(
    "source",
    [
        "{{ order.__class__ }}",
        "{{ order.lines.__class__.__mro__ }}",
        "{{ customer.name.__class__.__subclasses__() }}",
        "{{ ''.__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_internals_are_out_of_reach(context, source):
    with pytest.raises(templates.TemplateProblem) as refused:
        templates.render_source("body", source, {**context, "cycler": None})
    assert "not allowed" in str(refused.value) or "undefined" in str(refused.value)


def test_the_data_cannot_be_changed_from_a_template(context):
    with pytest.raises(templates.TemplateProblem, match="not allowed"):
        templates.render_source("body", "{{ order.lines.append(1) }}", context)
    assert len(context["order"]["lines"]) == 1


def test_a_runaway_template_is_stopped(context):
    with pytest.raises(templates.TemplateProblem, match="not allowed"):
        templates.render_source("body", "{{ 'x' * 1000000000 }}", context)
    with pytest.raises(templates.TemplateProblem):
        templates.render_source("body", "{% for i in range(200000) %}{{ i }}{% endfor %}", context)


def test_an_empty_subject_is_refused(context):
    assert errors_of("  ", "body", context) == {"subject": "must not be empty"}
