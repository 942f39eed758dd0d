"""The engine is a pure library: importing it pulls in no database, web or queue code."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("sqlalchemy", "fastapi", "starlette", "httpx", "arq", "redis", "asyncpg")


def test_engine_imports_no_io_libraries() -> None:
    code = (
        "import sys, json; import services.scoring.engine, services.scoring.frameworks; "
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(run.stdout))
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)
