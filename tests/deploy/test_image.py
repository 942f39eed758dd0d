"""The image: its Dockerfile's entrypoint is `cerdas`, and every command the compose file and
the Kubernetes manifests give it exists in the installed `cerdas`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import CONTRACT, DEPLOY

CERDAS = Path(sys.executable).parent / "cerdas"  # the console script, as in the image


def instruction(name: str) -> list[str]:
    """The exec (JSON) form of the Dockerfile's last ``name`` instruction."""
    lines = [
        line.removeprefix(f"{name} ")
        for line in (DEPLOY / "Dockerfile").read_text().splitlines()
        if line.startswith(f"{name} ")
    ]
    value: list[str] = json.loads(lines[-1])
    return value


def test_the_image_runs_cerdas_as_a_numeric_non_root_user() -> None:
    assert instruction("ENTRYPOINT") == ["cerdas"]
    assert instruction("CMD") == CONTRACT["gateway"]
    users = [
        line.split()[1]
        for line in (DEPLOY / "Dockerfile").read_text().splitlines()
        if line.startswith("USER ")
    ]
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
    assert uid.isdigit(), uid
    assert gid.isdigit(), gid
    assert int(uid) > 0


@pytest.mark.parametrize("process", sorted(CONTRACT))
def test_every_process_of_the_image_is_a_cerdas_command(process: str) -> None:
    result = subprocess.run(
        [str(CERDAS), *CONTRACT[process], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"Usage: cerdas {' '.join(CONTRACT[process])} " in result.stdout
