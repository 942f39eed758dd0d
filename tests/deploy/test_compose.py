"""deploy/compose.yaml: every service of a single-host install, the Cerdas ones all from the
one image with a command of the contract, started in order behind health checks."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CONTRACT, DEPLOY


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_names_every_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "postgres",
        "redis",
        "objectstore",
        "migrate",
        "gateway",
        "ingest",
        "worker",
    }


def test_each_cerdas_service_runs_the_one_image_with_a_contract_command(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    images = {services[name]["image"] for name in CONTRACT}
    assert len(images) == 1
    for name, args in CONTRACT.items():
        assert services[name]["command"] == args, name
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert services[name]["read_only"] is True
        assert services[name]["user"] == "10001:10001"


def test_services_start_after_the_migration_behind_health_checks(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in ("postgres", "redis", "objectstore", "gateway", "ingest", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert services["migrate"]["restart"] == "no"
    for name in ("gateway", "ingest", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"] == {"condition": "service_healthy"}, name


def test_no_secret_value_is_written_in_the_compose_file(compose: dict[str, Any]) -> None:
    environment = compose["services"]["gateway"]["environment"]
    # Interpolated from the environment and required (`:?`): never a default value.
    assert "${POSTGRES_PASSWORD:?" in environment["DATABASE_URL"]
    assert environment["CERDAS_WEBHOOK_SECRET_KEY"].startswith("${CERDAS_WEBHOOK_SECRET_KEY:?")
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )
