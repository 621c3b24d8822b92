"""Outbound SMTP settings: validated at start, one line naming the variable."""

from __future__ import annotations

import pytest

from orderdesk.comms.sending import MailPolicy
from orderdesk.settings import SettingsError, load_settings

BASE = {"DATABASE_URL": "postgresql://x/y", "ORDERDESK_SECRET_KEY": "k" * 40}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORDERDESK_OUTBOUND_SMTP_PORT": "70000"}, "ORDERDESK_OUTBOUND_SMTP_PORT"),
        ({"ORDERDESK_OUTBOUND_SMTP_PORT": "smtp"}, "ORDERDESK_OUTBOUND_SMTP_PORT"),
        ({"ORDERDESK_OUTBOUND_SMTP_TLS": "ssl"}, "ORDERDESK_OUTBOUND_SMTP_TLS"),
        (
            {"ORDERDESK_OUTBOUND_SMTP_HOST": "smtp://mail.example.com"},
            "ORDERDESK_OUTBOUND_SMTP_HOST must be a host",
        ),
        ({"ORDERDESK_OUTBOUND_SMTP_HOST": "mail.example.com:587"}, "port in ORDERDESK_OUTBOUND_SMTP_PORT"),
        ({"ORDERDESK_OUTBOUND_SMTP_USER": "desk"}, "must be set together"),
        ({"ORDERDESK_OUTBOUND_SMTP_PASSWORD": "pw"}, "must be set together"),
        ({"ORDERDESK_OUTBOUND_SMTP_RETRY_SCHEDULE": "1,soon"}, "comma-separated seconds"),
        ({"ORDERDESK_OUTBOUND_SMTP_RETRY_SCHEDULE": "-5"}, "must not be negative"),
        ({"ORDERDESK_OUTBOUND_SMTP_TIMEOUT": "0"}, "ORDERDESK_OUTBOUND_SMTP_TIMEOUT"),
    ],
)
def test_bad_outbound_mail_settings_give_one_line(env, message):
    with pytest.raises(SettingsError) as error:
        load_settings({**BASE, **env})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_full_configuration_becomes_the_workers_policy():
    settings = load_settings(
        {
            **BASE,
            "ORDERDESK_OUTBOUND_SMTP_HOST": "smtp.relay.example",
            "ORDERDESK_OUTBOUND_SMTP_PORT": "465",
            "ORDERDESK_OUTBOUND_SMTP_TLS": "tls",
            "ORDERDESK_OUTBOUND_SMTP_USER": "desk",
            "ORDERDESK_OUTBOUND_SMTP_PASSWORD": "secret",
            "ORDERDESK_OUTBOUND_SMTP_RETRY_SCHEDULE": "10,60",
            "ORDERDESK_INBOUND_DOMAINS": "inbound.desk.example,other.example",
        }
    )
    policy = MailPolicy.from_settings(settings)
    assert (policy.host, policy.port, policy.tls, policy.user) == ("smtp.relay.example", 465, "tls", "desk")
    assert policy.retry_schedule == (10.0, 60.0) and policy.max_attempts == 3
    assert policy.inbound_domain == "inbound.desk.example"


def test_no_relay_means_email_waits():
    assert MailPolicy.from_settings(load_settings(BASE)).host is None
