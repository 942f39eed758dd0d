"""The interactive API reference at /docs (Swagger UI) and /redoc (ReDoc), served from assets
installed with Cerdas: government networks are often closed, so no page may reach a CDN.

The assets come from the ``fastapi-offline`` package (MIT), which bundles Swagger UI's
``swagger-ui-bundle.js`` and ``swagger-ui.css`` (Apache-2.0) and ReDoc's
``redoc.standalone.js`` (MIT); only its files are used, the pages are FastAPI's own with every
URL pointed at them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"


def assets_path() -> Path:
    """The folder of the installed Swagger UI and ReDoc files."""
    return Path(str(resources.files("fastapi_offline") / "static"))


def install_docs(app: FastAPI, title: str) -> None:
    """Serve /docs and /redoc (not in the OpenAPI document) and their assets."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_path()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} — API reference",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            # No call to the public validator (validator.swagger.io).
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} — API reference",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
