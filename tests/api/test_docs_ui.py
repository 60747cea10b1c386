"""/docs and /redoc: every file they load comes from this server, and in a real browser with no network
but loopback they show the operations.

The browser test runs the server (``par-server serve``) and headless Chromium in a network namespace of
their own that has only loopback (``unshare --net``, then ``nsenter`` into it), so nothing can leave the
machine; Chromium's network log then shows every request the pages made went to the server. It keeps
screenshots in test-results/docs-ui/ (scripts/docs-screenshot copies Swagger UI's to docs/images/). It
needs Chromium and root (for the namespace): without them it is skipped, or fails under
``PAR_TEST_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from fastapi import FastAPI

from app.api.docs_ui import ASSET_CACHE_CONTROL, ASSETS_PATH, ASSETS_ROUTE
from tests import databases
from tests.api.test_observability import metric_value
from tests.conftest import ADMIN_TOKEN, BASE_URL, PEPPER

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO_ROOT / "test-results" / "docs-ui"
PAR_SERVER = Path(sys.executable).with_name("par-server")  # the venv's console script
REQUIRE_BROWSER = os.environ.get("PAR_TEST_REQUIRE_BROWSER") == "1"
# The namespace has no other listener: any port is free there.
NAMESPACE_PORT = 8000
ORIGIN = f"http://127.0.0.1:{NAMESPACE_PORT}"
STARTUP_TIMEOUT_SECONDS = 60.0
BROWSER_TIMEOUT_SECONDS = 120.0
# Virtual time Chromium lets the page's scripts run before it dumps or shoots the page.
RENDER_BUDGET_MS = "20000"
LOCAL_URL = re.compile(r'(?:src|href)="([^"]*)"')
ABSOLUTE_URL = re.compile(r"[a-z]+://")
# The operations a browser must show, by path: the push and the authorization endpoint's resolve and consume.
HOT_OPERATIONS = (
    "/services/{service_id}/par",
    "/api/{service_id}/pushed_auth_req/resolve",
    "/api/{service_id}/pushed_auth_req/consume",
)
HOT_SUMMARIES = (
    "Push an authorization request (RFC 9126 §2)",
    "Resolve the authorization endpoint",
    "Consume a request_uri once",
)


# --- the pages over HTTP ------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_pages_load_only_files_of_this_server(client: httpx.AsyncClient, page: str) -> None:
    """Every script, style and icon the page names is a path on this server, and is served."""
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    urls = LOCAL_URL.findall(response.text)
    assert urls, response.text
    for url in urls:
        assert url.startswith(ASSETS_PATH + "/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["cache-control"] == ASSET_CACHE_CONTROL, url
        assert asset.headers["etag"], url
    assert not ABSOLUTE_URL.findall(response.text)  # no CDN, no fonts from elsewhere


async def test_assets_are_answered_not_modified_by_etag(client: httpx.AsyncClient) -> None:
    url = f"{ASSETS_PATH}/swagger-ui-bundle.js"
    first = await client.get(url)
    assert first.headers["content-type"].startswith("text/javascript")
    again = await client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.headers["cache-control"] == ASSET_CACHE_CONTROL


async def test_assets_have_their_own_latency_label(client: httpx.AsyncClient) -> None:
    await client.get(f"{ASSETS_PATH}/swagger-ui.css")
    text = (await client.get("/metrics")).text
    assert metric_value(text, "par_request_duration_seconds_count", route=ASSETS_ROUTE, status="200") == 1


async def test_an_unknown_asset_is_a_404_in_the_documented_format(client: httpx.AsyncClient) -> None:
    for path in (f"{ASSETS_PATH}/no-such-file.js", "/docs/assets/0.0.0/swagger-ui.css", f"{ASSETS_PATH}/../pyproject"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) == {"error", "error_description"}, path


async def test_swagger_ui_names_its_oauth2_redirect_page(client: httpx.AsyncClient) -> None:
    page = (await client.get("/docs")).text
    assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in page
    redirect = await client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert redirect.headers["content-type"].startswith("text/html")
    assert "swaggerUIRedirectOauth2" in redirect.text
    assert not LOCAL_URL.findall(redirect.text)  # its script is inline


async def test_pages_behind_a_path_prefix_name_their_files_under_it(app: FastAPI) -> None:
    """Behind a proxy that mounts the server at /par (ASGI root_path), the pages' URLs carry the prefix."""
    transport = httpx.ASGITransport(app=app, root_path="/par")
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        for page in ("/docs", "/redoc"):
            response = await client.get("/par" + page)
            assert response.status_code == 200
            urls = LOCAL_URL.findall(response.text)
            assert urls and all(url.startswith("/par" + ASSETS_PATH + "/") for url in urls), urls
            assert "'/par/openapi.json'" in response.text or '"/par/openapi.json"' in response.text
            for url in urls:
                assert (await client.get(url)).status_code == 200, url


# --- a real browser, with no network but loopback -----------------------------------------------------


def _unavailable(reason: str) -> NoReturn:
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} (PAR_TEST_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def _chromium() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _unavailable("Chromium is not installed (Debian: apt-get install chromium)")
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None:
        _unavailable("the browser test needs root with unshare and nsenter, to cut the network off")
    return chromium


@dataclass(frozen=True)
class IsolatedServer:
    """A ``par-server`` alone in a network namespace with only loopback."""

    process: subprocess.Popen[bytes]
    log: Path

    def run(self, *command: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
        """``command`` inside the server's network namespace."""
        return subprocess.run(
            ["nsenter", f"--net=/proc/{self.process.pid}/ns/net", "--", *command],
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def wait_ready(self) -> None:
        probe = f"import urllib.request; urllib.request.urlopen('{ORIGIN}/healthz', timeout=2)"
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"par-server exited with {self.process.returncode}:\n{self.log.read_text()}")
            if self.run(sys.executable, "-c", probe, timeout=10).returncode == 0:
                return
            time.sleep(0.2)
        pytest.fail(f"par-server did not answer within {STARTUP_TIMEOUT_SECONDS}s:\n{self.log.read_text()}")


@contextlib.contextmanager
def isolated_server(database_url: str, directory: Path) -> Iterator[IsolatedServer]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PAR_")}
    env.update(
        PAR_DATABASE_URL=database_url,
        PAR_ADMIN_TOKEN=ADMIN_TOKEN,
        PAR_PEPPER=PEPPER,
        PAR_PUBLIC_BASE_URL=ORIGIN,
        PAR_DATA_DIR=str(directory / "data"),
    )
    log = directory / "server.log"
    with open(log, "wb") as output:  # a file, never a pipe: a full pipe would block the server
        process = subprocess.Popen(
            # unshare execs the shell, and the shell par-server, in the same process: its namespace is ours.
            ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
            + [str(PAR_SERVER), "serve", "--host", "127.0.0.1", "--port", str(NAMESPACE_PORT)],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = IsolatedServer(process, log)
    try:
        server.wait_ready()
        yield server
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@dataclass(frozen=True)
class BrowserVisit:
    dom: str
    page_requests: list[str]  # every URL requested on behalf of the page, from Chromium's network log


def visit(server: IsolatedServer, chromium: str, path: str, directory: Path, *, screenshot: Path) -> BrowserVisit:
    """Headless Chromium loads ``path``: once to dump the rendered DOM, once to take a screenshot."""
    net_log = directory / f"net-log{path.replace('/', '-')}.json"
    common = [
        chromium,
        "--headless",
        "--no-sandbox",  # root in a container has no user namespace for Chromium's sandbox
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,1500",
        f"--virtual-time-budget={RENDER_BUDGET_MS}",
        f"--user-data-dir={directory / 'profile'}",
    ]
    dumped = server.run(
        *common, f"--log-net-log={net_log}", "--dump-dom", ORIGIN + path, timeout=BROWSER_TIMEOUT_SECONDS
    )
    assert dumped.returncode == 0, dumped.stderr.decode(errors="replace")[-4000:]
    shot = server.run(*common, f"--screenshot={screenshot}", ORIGIN + path, timeout=BROWSER_TIMEOUT_SECONDS)
    assert shot.returncode == 0 and screenshot.stat().st_size > 0, shot.stderr.decode(errors="replace")[-4000:]
    return BrowserVisit(dumped.stdout.decode(), page_requests(net_log, ORIGIN + path))


def page_requests(net_log: Path, page: str) -> list[str]:
    """The URLs Chromium requested for ``page``: the page itself and every request it initiated
    (Chromium's own background requests, refused by the namespace anyway, are initiated by no origin)."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    started = [event.get("params", {}) for event in log["events"] if event["type"] == start_job]
    return [params["url"] for params in started if params.get("initiator") == ORIGIN or params.get("url") == page]


def assert_only_this_server_was_asked(visit: BrowserVisit, path: str) -> None:
    assert f"{ORIGIN}{path}" in visit.page_requests, visit.page_requests
    assert f"{ORIGIN}/openapi.json" in visit.page_requests, visit.page_requests
    assert any(url.startswith(ORIGIN + ASSETS_PATH + "/") for url in visit.page_requests), visit.page_requests
    elsewhere = [url for url in visit.page_requests if not url.startswith(ORIGIN + "/")]
    assert not elsewhere, f"the page asked for files elsewhere: {elsewhere}"


def test_docs_and_redoc_render_in_chromium_without_network(sqlite_template: Path, tmp_path: Path) -> None:
    chromium = _chromium()
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with isolated_server(databases.fresh_sqlite(sqlite_template, tmp_path), tmp_path) as server:
        swagger = visit(server, chromium, "/docs", tmp_path, screenshot=SCREENSHOT_DIR / "swagger-ui.png")
        redoc = visit(server, chromium, "/redoc", tmp_path, screenshot=SCREENSHOT_DIR / "redoc.png")

    assert_only_this_server_was_asked(swagger, "/docs")
    # Swagger UI renders each operation as an .opblock, its path in the summary's data-path.
    blocks = re.findall(r'<div class="opblock opblock-(\w+)[^"]*" id="operations-', swagger.dom)
    assert len(blocks) >= len(HOT_OPERATIONS), swagger.dom[:2000]
    for path in HOT_OPERATIONS:
        assert f'class="opblock-summary-path" data-path="{path}"' in swagger.dom, path

    assert_only_this_server_was_asked(redoc, "/redoc")
    # ReDoc renders each operation under a heading with its summary, and the paths in its request samples.
    assert "redoc-wrap" in redoc.dom, redoc.dom[:2000]
    for summary in HOT_SUMMARIES:
        assert summary in redoc.dom, summary
