"""The evidence stores the suite runs against: a local folder, and a bucket on a real
S3-compatible server (moto's server mode, in a thread on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import boto3
import pytest
from moto.server import ThreadedMotoServer

BUCKET = "cerdas-evidence"
REGION = "us-east-1"


class EvidenceStore(Protocol):
    overrides: dict[str, object]

    def contents(self) -> list[str]:
        """Everything in the store, temporary files and pending multipart uploads included."""
        ...

    def objects(self) -> list[str]:
        """The objects stored under their keys (``ab/abcdef…``)."""
        ...


@dataclass
class LocalStore:
    root: Path
    overrides: dict[str, object] = field(default_factory=dict)

    def contents(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())

    def objects(self) -> list[str]:
        return [name for name in self.contents() if not name.startswith(".incoming/")]


@dataclass
class S3Server:
    endpoint_url: str

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION)


class S3Store:
    """A key prefix of its own in the session's bucket."""

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.prefix = f"test-{uuid.uuid4().hex[:12]}/"
        self.client = server.client()
        self.overrides: dict[str, object] = {
            "evidence_backend": "s3",
            "evidence_s3_bucket": BUCKET,
            "evidence_s3_prefix": self.prefix,
            "evidence_s3_endpoint_url": server.endpoint_url,
            "evidence_s3_region": REGION,
        }

    def contents(self) -> list[str]:
        return sorted(self.objects(include_staging=True) + self.pending_uploads())

    def objects(self, *, include_staging: bool = False) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=BUCKET, Prefix=self.prefix)
        names = [entry["Key"].removeprefix(self.prefix) for entry in listed.get("Contents", [])]
        return [n for n in names if include_staging or not n.startswith(".incoming/")]

    def pending_uploads(self) -> list[str]:
        listed = self.client.list_multipart_uploads(Bucket=BUCKET, Prefix=self.prefix)
        return [f"(pending) {u['Key']}" for u in listed.get("Uploads", [])]

    def get(self, name: str) -> bytes:
        answer = self.client.get_object(Bucket=BUCKET, Key=f"{self.prefix}{name}")
        return bytes(answer["Body"].read())


@contextlib.contextmanager
def start_s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a free port of 127.0.0.1, with the bucket; credentials for it in
    the environment, where the app's client (the standard AWS chain) finds them."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "cerdas-test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "cerdas-test-secret")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            s3 = S3Server(f"http://{host}:{port}")
            s3.client().create_bucket(Bucket=BUCKET)
            yield s3
        finally:
            server.stop()
