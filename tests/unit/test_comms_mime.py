"""Reading raw mail: pure functions over bytes, checked on fixtures shaped like real mail programs."""

from __future__ import annotations

import pytest

from orderdesk.comms.inbound import find_order_numbers, split_address
from orderdesk.comms.mime import clean_line, new_text, parse_email, sanitize_html
from orderdesk.comms.services import new_reply_token, reply_address
from tests.support.email_fixtures import FIXTURES, load


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.eml")))
def test_every_fixture_parses_without_raising_and_keeps_a_body(name):
    parsed = parse_email(load(name))
    assert parsed.text_body is not None and parsed.summary is not None


def test_gmail_reply_summary_is_the_new_text_only():
    parsed = parse_email(load("gmail_reply_quoted.eml", in_reply_to="<a@b>", references="<z@y> <a@b>"))
    assert (
        parsed.summary
        == "Hi, thanks! But where is my parcel? The tracking page hasn't changed for three days.\n\nKim"
    )
    assert parsed.in_reply_to == "<a@b>" and parsed.references == ["<z@y>", "<a@b>"]
    assert "gmail_quote" not in (parsed.html_body or "")  # classes are not kept


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Yes please.\n\nOn Mon, 2 Mar 2026, Shop <s@x> wrote:\n> old", "Yes please."),
        ("Ja bitte.\n\nAm 02.03.2026 um 10:00 schrieb Shop <s@x>:\n> alt", "Ja bitte."),
        ("Sí.\n\nEl lun, 2 mar 2026 a las 10:00, Shop (<s@x>) escribió:\n> viejo", "Sí."),
        ("Fine.\n\n-----Original Message-----\nFrom: Shop\nSent: Monday", "Fine."),
        ("Fine.\n________________________________\nFrom: Shop\nSent: Monday", "Fine."),
        ("Okay.\n\nFrom: Shop <s@x>\nSent: Monday, 2 March 2026\nTo: me", "Okay."),
        ("Thanks\n-- \nKim Weber\nACME Corp", "Thanks"),
        ("Thanks\n\nSent from my iPhone", "Thanks"),
        ("---------- Forwarded message ---------\nFrom: Shop\nYour order", "From: Shop\nYour order"),
        ("From: my neighbour told me to write", "From: my neighbour told me to write"),
    ],
)
def test_quotes_and_signatures_are_stripped(body, expected):
    assert new_text(body) == expected


def test_sanitizer_removes_active_content_and_remote_images():
    html = (
        '<p onclick="x()">Hi</p><script>alert(1)</script><img src="https://t.example/p.gif">'
        '<img src="cid:a@b"><a href="javascript:alert(1)">x</a><style>p{}</style>'
        '<svg onload="x()"></svg><a href="https://ok.example">ok</a>'
    )
    clean = sanitize_html(html)
    assert "onclick" not in clean and "<script" not in clean and "t.example" not in clean
    assert "javascript" not in clean and "<style" not in clean and "<svg" not in clean
    assert 'src="cid:a@b"' in clean and 'href="https://ok.example"' in clean


def test_clean_line_reports_invisible_characters_and_reads_cp1252_dashes():
    assert clean_line("Re\u200b: \u202eorder") == ("Re: order", True)
    assert clean_line("Bestellung \x96 bitte") == ("Bestellung – bitte", False)
    assert clean_line("two\r\nlines") == ("two lines", False)


def test_automated_mail_is_recognised_by_each_sign():
    base = b"From: a@example.com\r\nTo: b@x.test\r\nSubject: s\r\nMessage-ID: <1@x>\r\n"
    signs = {
        b"Auto-Submitted: auto-generated\r\n": "Auto-Submitted",
        b"Precedence: bulk\r\n": "Precedence",
        b"List-Id: <news.example.com>\r\n": "mailing list",
        b"X-Autoreply: yes\r\n": "X-Autoreply",
    }
    for header, reason in signs.items():
        parsed = parse_email(base + header + b"\r\nhello\r\n")
        assert parsed.is_automated and reason in parsed.automated_reason
    assert not parse_email(base + b"Auto-Submitted: no\r\n\r\nhello\r\n").is_automated
    assert parse_email(base + b"\r\nhello\r\n", envelope_sender="").is_automated  # null sender: a bounce


def test_addresses_and_tokens():
    token = new_reply_token()
    assert split_address(reply_address("acme", token, "in.test"), ("in.test",)) == ("acme", token)
    assert split_address("Acme+c_abcdefghijklmnop@In.Test", ("in.test",)) == ("acme", "abcdefghijklmnop")
    assert split_address("acme+other@in.test", ("in.test",)) == ("acme", None)
    assert split_address("acme@elsewhere.test", ("in.test",)) is None
    assert split_address("not-an-address", ()) is None


def test_order_numbers_default_and_per_tenant_patterns():
    texts = ["Re: Order #1042", "my order number: 1043, also Bestellung Nr. 1044 and pedido nº 1045"]
    assert find_order_numbers(texts, None) == [1042, 1043, 1044, 1045]
    assert find_order_numbers(["see ACME-2001 and #99"], r"ACME-(\d+)") == [2001]
    assert find_order_numbers(["call me at 0170 1234567"], None) == []


def test_a_mail_forwarded_as_attachment_stays_one_eml_and_its_text_is_not_the_body():
    parsed = parse_email(load("outlook_forward_as_attachment.eml"))
    assert parsed.summary == "Hello, the tracking link in the attached mail does not work. Where is my order?"
    [attached] = parsed.attachments
    assert attached.content_type == "message/rfc822" and attached.filename == "Your order has shipped.eml"
    assert b"Subject: Your order #1042 has shipped" in attached.data
    assert b"<original-shipping-notice@acme.example>" not in parsed.summary.encode()
