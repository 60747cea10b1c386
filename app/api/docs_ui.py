"""The API documentation pages, /docs (Swagger UI) and /redoc (ReDoc), with every file they load served
here: FastAPI's own pages load them from a public CDN and their favicon from FastAPI's website, and show
a blank page where the server has no internet access.

The scripts, styles and favicon are the ones the installed fastapi-offline package ships (its own
``FastAPIOffline`` app is not used: only its files). They are served under a path naming the package's
version, so a browser may keep them for a year: another version is another URL.
"""

from __future__ import annotations

import os
from importlib.metadata import version

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import Scope

SWAGGER_UI_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
REDOC_PATH = "/redoc"
ASSETS_PATH = f"/docs/assets/{version('fastapi-offline')}"
# RFC 9111 §5.2.2.1 and RFC 8246: a versioned URL's content never changes.
ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
# The pages name the versioned assets: a browser asks again each time, so an upgrade is seen at once.
# Their policy lets them load nothing from elsewhere: ReDoc's "API docs by Redocly" footer asks a CDN for
# its logo (which it leaves out when it cannot have it). FastAPI's pages start the UIs with an inline
# script; both UIs style with inline styles, and ReDoc searches in a worker started from a blob: URL.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; worker-src 'self' blob:; base-uri 'none'; frame-ancestors 'none'"
    ),
}

router = APIRouter(include_in_schema=False)


class VersionedAssets(StaticFiles):
    """A package's static files, each answered with ``ASSET_CACHE_CONTROL`` (and Starlette's ETag and
    Last-Modified), served by a route (``assets``) rather than a mount: a mount leaves the scope
    matching no route once it has taken the request, and the metrics would label it "unmatched"."""

    def get_path(self, scope: Scope) -> str:
        """The file's name from the route's path parameter; ``StaticFiles`` refuses any outside its
        directory."""
        name: str = scope["path_params"]["name"]
        return os.path.normpath(os.path.join(*name.split("/")))

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = ASSET_CACHE_CONTROL
        return response


ASSETS_ROUTE = ASSETS_PATH + "/{name:path}"
# Added to the app's routes by app.main (Starlette's Route takes an ASGI app as endpoint; add_route is
# typed for request handlers only).
assets = Route(
    ASSETS_ROUTE,
    VersionedAssets(packages=[("fastapi_offline", "static")]),
    methods=["GET", "HEAD"],
    name="docs-assets",
    include_in_schema=False,
)


def _root_path(request: Request) -> str:
    """The path the app is mounted at behind a proxy, as FastAPI's own documentation pages read it."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


@router.get(SWAGGER_UI_PATH)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root_path(request)
    page = get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=root + OAUTH2_REDIRECT_PATH,
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
    )
    page.headers.update(PAGE_HEADERS)
    return page


@router.get(OAUTH2_REDIRECT_PATH)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    """Where an OAuth 2.0 authorization server sends Swagger UI's "Authorize" back (inline script only)."""
    page = get_swagger_ui_oauth2_redirect_html()
    page.headers.update(PAGE_HEADERS)
    return page


@router.get(REDOC_PATH)
async def redoc(request: Request) -> HTMLResponse:
    root = _root_path(request)
    page = get_redoc_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        with_google_fonts=False,  # fonts from Google's servers: the page falls back to the browser's own
    )
    page.headers.update(PAGE_HEADERS)
    return page
