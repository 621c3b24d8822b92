"""docker-compose.yml is valid Compose and wires the services in a safe order.

No Docker engine is needed: the file is checked against the Compose specification's
JSON schema shipped inside check-jsonschema, and its wiring is read as YAML.
"""

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "web", "worker")


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def test_compose_file_follows_the_compose_specification():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE_FILE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_service_runs_what_it_is_named_for(services: dict):
    assert set(services) == {"postgres", "redis", *APP_SERVICES}
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    assert services["migrate"]["command"] == ["orderdesk", "migrate"]
    assert " ".join(services["web"]["command"]) == "orderdesk serve --host 0.0.0.0 --port 8000"
    assert services["worker"]["command"] == ["orderdesk", "worker"]
    for name in APP_SERVICES:
        assert services[name]["build"] == ".", name


def test_web_and_worker_start_only_after_migrations_succeeded(services: dict):
    for name in ("web", "worker"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"


def test_every_long_running_service_has_a_healthcheck(services: dict):
    for name in ("postgres", "redis", "web", "worker"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name


def test_only_migrations_get_the_owner_role(services: dict):
    owner_url = services["migrate"]["environment"]["DATABASE_URL"]
    assert urlsplit(owner_url).username == services["postgres"]["environment"]["POSTGRES_USER"]
    assert "APP_DATABASE_PASSWORD" in services["migrate"]["environment"]
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert urlsplit(environment["APP_DATABASE_URL"]).username == "orderdesk_app", name
        assert urlsplit(environment["REDIS_URL"]).hostname == "redis", name
    for name in ("web", "worker"):
        assert "DATABASE_URL" not in services[name]["environment"], name


def test_secret_key_has_no_default(services: dict):
    for name in APP_SERVICES:
        secret = services[name]["environment"]["ORDERDESK_SECRET_KEY"]
        assert secret.startswith("${ORDERDESK_SECRET_KEY:?"), name


def test_only_the_web_port_is_published(services: dict):
    published = {name for name, service in services.items() if "ports" in service}
    assert published == {"web"}


def test_image_runs_as_an_unprivileged_user():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text().splitlines()
    final_stage = dockerfile[max(i for i, line in enumerate(dockerfile) if line.startswith("FROM")) :]
    assert final_stage[0].startswith("FROM python:3.11-slim")
    users = [line.split()[1] for line in final_stage if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
