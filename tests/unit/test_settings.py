"""Settings: validated at start, one readable line per problem."""

from __future__ import annotations

import pytest

from orderdesk.settings import SettingsError, load_settings

KEY = "k" * 40


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pw@db.example.com:6543/orders",
        "postgres://app:pw@db.example.com:6543/orders",
        "postgresql+asyncpg://app:pw@db.example.com:6543/orders",
    ],
)
def test_database_url_accepts_the_forms_platforms_hand_out(url):
    settings = load_settings({"DATABASE_URL": url, "ORDERDESK_SECRET_KEY": KEY})
    assert settings.owner_url.drivername == "postgresql+asyncpg"
    assert settings.owner_url.host == "db.example.com" and settings.owner_url.port == 6543
    assert settings.owner_url.password == "pw"


def test_app_url_is_derived_from_the_owner_url():
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://owner:secret@db:5432/orders",
            "APP_DATABASE_PASSWORD": "app-pw",
            "ORDERDESK_SECRET_KEY": KEY,
        }
    )
    assert settings.app_url.username == "orderdesk_app"
    assert settings.app_url.password == "app-pw"
    assert settings.app_url.database == "orders"


def test_app_url_alone_is_enough_for_web_and_worker():
    settings = load_settings(
        {"APP_DATABASE_URL": "postgresql://orderdesk_app:x@db/orders", "ORDERDESK_SECRET_KEY": KEY}
    )
    assert settings.app_url.username == "orderdesk_app"
    with pytest.raises(SettingsError, match="DATABASE_URL is not set"):
        _ = settings.owner_url


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL must be a PostgreSQL URL"),
        ({"DATABASE_URL": "postgresql+psycopg2://x/y"}, "names driver 'postgresql+psycopg2'"),
        ({"DATABASE_URL": "postgresql://host-only"}, "must name a database"),
        ({"DATABASE_URL": "::"}, "not a valid database URL"),
        ({"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "http://x"}, "REDIS_URL must start with"),
        ({"DATABASE_URL": "postgresql://x/y", "ORDERDESK_SECRET_KEY": "short"}, "ORDERDESK_SECRET_KEY"),
        ({"DATABASE_URL": "postgresql://x/y", "ORDERDESK_DB_POOL_SIZE": "many"}, "ORDERDESK_DB_POOL_SIZE"),
        (
            {"DATABASE_URL": "postgresql://x/y", "ORDERDESK_DB_MAX_OVERFLOW": "-1"},
            "ORDERDESK_DB_MAX_OVERFLOW",
        ),
        ({}, "DATABASE_URL is not set"),
        (
            {"DATABASE_URL": "postgresql://x/y", "ORDERDESK_PUBLIC_URL": "desk.example.com"},
            "ORDERDESK_PUBLIC_URL",
        ),
        (
            {"DATABASE_URL": "postgresql://x/y", "ORDERDESK_PUBLIC_URL": "https://desk.example.com/?a=1"},
            "ORDERDESK_PUBLIC_URL must be an http(s) URL",
        ),
    ],
)
def test_bad_values_give_one_line_naming_the_variable(env, message):
    with pytest.raises(SettingsError) as error:
        load_settings({"ORDERDESK_SECRET_KEY": KEY, **env})
    assert message in str(error.value)
    assert "\n" not in str(error.value)
