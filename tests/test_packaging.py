"""The wheel is the product: built from the source tree and installed (not editable) into a
fresh virtualenv, its `cerdas` brings an empty database to the newest migration, as the image
(deploy/Dockerfile) and the Kubernetes migrate Job run it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.kit.migrate import head_revision
from services.kit.settings import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # checked below, with the output in the message
        **kwargs,  # type: ignore[call-overload]
    )
    assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the tree (setuptools writes build/ beside the sources),
    without build isolation, so no package index is needed."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "services", source / "services", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = tmp_path_factory.mktemp("dist")
    run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "--quiet", "--wheel-dir", dist, source,
    )  # fmt: skip
    (built,) = dist.glob("cerdas-*.whl")
    return built


def test_the_wheel_holds_every_file_of_the_services_package(wheel: Path) -> None:
    # Code, migrations (env.py, script.py.mako, versions/), framework files, the demo's seed
    # cases and the metric catalogue: whatever the source tree has under services/.
    expected = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "services").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("services/")}
    assert expected - shipped == set()
    assert {
        "services/migrations/env.py",
        "services/migrations/script.py.mako",
        "services/scoring/frameworks/spbe-2020.yaml",
        "services/demo/demo.yaml",
    } <= shipped


async def test_cerdas_from_the_installed_wheel_migrates_an_empty_database(
    wheel: Path, scratch: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    # A virtualenv with the wheel alone; its dependencies are borrowed from this environment's
    # site-packages through a .pth line (which does not run this environment's editable-install
    # hook, so `services` can only come from the wheel).
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "--quiet", wheel,
    )  # fmt: skip
    site_packages = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
    )
    (site_packages / "borrowed-dependencies.pth").write_text(
        "\n".join(dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]))
        + "\n"
    )
    work = tmp_path / "elsewhere"  # not the source tree
    work.mkdir()
    located = run(python, "-c", "import services; print(services.__file__)", cwd=work)
    assert Path(located.stdout.strip()).is_relative_to(site_packages)

    url = scratch.url.render_as_string(hide_password=False)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CERDAS_", "DATABASE_URL", "REDIS_URL", "PORT"))
    }
    env.update(
        DATABASE_URL=url,
        REDIS_URL=str(settings.redis_url),
        CERDAS_DATA_DIR=str(tmp_path / "data"),
    )
    migrated = run(env_dir / "bin" / "cerdas", "migrate", cwd=work, env=env)
    assert "newest migration" in migrated.stdout

    async with scratch.connect() as connection:
        version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).all()
        regions = (await connection.execute(text("SELECT count(*) FROM region"))).scalar_one()
    assert version == [(head_revision(),)]
    assert regions > 500  # 38 provinces and 514 kabupaten/kota
