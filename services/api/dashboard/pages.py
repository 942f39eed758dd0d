"""Mounting the dashboard's static files on the gateway."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
PATH = "/dashboard"

# Only this origin: the pages call /v1 on the host that served them and load nothing else, so a
# change that would reach out to a CDN or a font service fails in the browser, loudly. Inline
# styles are allowed because the chart library writes a <style> element into each chart.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class DashboardFiles(StaticFiles):
    """Static files with the policy above on every answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_policy(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_policy)  # type: ignore[arg-type]


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at ``/dashboard/`` (``/dashboard`` redirects there)."""

    @app.get(PATH, include_in_schema=False)
    async def dashboard_root() -> RedirectResponse:
        return RedirectResponse(f"{PATH}/", status_code=308)

    # Compressed for clients that ask: the chart library and the map's boundaries are most of
    # the first load (about 800 KB as files, a third of that gzipped).
    files = GZipMiddleware(DashboardFiles(directory=STATIC, html=True), minimum_size=1024)
    app.mount(PATH, files, name="dashboard")
