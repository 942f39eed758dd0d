"""CI helper for the machine's own PostgreSQL and Redis on 127.0.0.1.

python .ci/local_services.py check          exit 0 when both answer
python .ci/local_services.py create NAME    a fresh, empty database NAME
python .ci/local_services.py drop NAME      drop it again
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import redis

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def main(action: str, name: str | None) -> None:
    connection = await asyncpg.connect(ADMIN_DSN, timeout=3)
    try:
        if action == "check":
            redis.Redis(host="127.0.0.1", port=6379, socket_timeout=3).ping()
        elif action == "create":
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await connection.execute(f'CREATE DATABASE "{name}"')
        elif action == "drop":
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
    except Exception as exc:
        print(f"local services: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
