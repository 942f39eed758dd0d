"""Webhook signing secrets at rest: encrypted with Fernet under ``webhook_secret_key``.

A stored secret is ``v1:<Fernet token>``. A value without the prefix is a secret stored in clear
before encryption existed (legacy): it is still used, and sealed the next time a delivery reads
it. When ``webhook_secret_key`` is unset the key is made once and kept in the data folder
(``webhook-secret.key``, mode 0600); the settings refuse that when the database is on another
machine, where processes would not share the folder.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from services.kit.settings import Settings

SEALED_PREFIX = "v1:"
KEY_FILE = "webhook-secret.key"


class SecretUnreadable(Exception):
    """A stored secret that the configured key does not open (the key changed)."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, secret: str) -> str:
        return SEALED_PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret in clear; a legacy value (no prefix) is returned as it is."""
        if not is_sealed(stored):
            return stored
        try:
            return self._fernet.decrypt(stored.removeprefix(SEALED_PREFIX).encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(
                "the webhook secret was encrypted with another CERDAS_WEBHOOK_SECRET_KEY"
            ) from None


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


_boxes: dict[tuple[str, Path], SecretBox] = {}


def box(settings: Settings) -> SecretBox:
    """The process's box for ``settings`` (the key file is read or made once)."""
    configured = settings.webhook_secret_key
    source = configured.get_secret_value() if configured is not None else ""
    cache_key = (source, settings.data_dir.resolve())
    found = _boxes.get(cache_key)
    if found is None:
        key = source.encode() if source else _key_file(settings.data_dir)
        found = _boxes[cache_key] = SecretBox(key)
    return found


def _key_file(data_dir: Path) -> bytes:
    """The key kept in ``data_dir``, made (mode 0600) by whichever process asks first."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".{KEY_FILE}.{os.getpid()}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, Fernet.generate_key())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(draft, path)  # atomic and never overwrites: another process may have won
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                draft.unlink()
    key = path.read_bytes().strip()
    Fernet(key)  # a damaged file fails here, loudly, rather than at the first delivery
    return key
