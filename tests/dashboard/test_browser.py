"""The dashboard in a real browser (the system's Chromium, driven by Playwright) against a
running `cerdas serve` with the demo data loaded by `cerdas demo --yes`."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from services.kit.runtime import Runtime
from tests.test_cli import CERDAS, _free_port, clean_env, run_cli

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def cerdas(live: Runtime, tmp_path: Path) -> Iterator[str]:
    """`cerdas serve` on a free port with the demo data; its base URL."""
    settings = live.settings
    port = _free_port()
    env = clean_env(
        DATABASE_URL=str(settings.database_url),
        REDIS_URL=str(settings.redis_url),
        PORT=str(port),
        CERDAS_DATA_DIR=str(tmp_path),
    )
    demo = run_cli("demo", "--yes", env=env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    server = subprocess.Popen(
        [*CERDAS, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "cerdas serve exited early"
            assert time.monotonic() < deadline, "cerdas serve did not come up"
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.communicate(timeout=30)


@pytest.fixture
def chromium() -> Path:
    """The system's Chromium; Playwright downloads no browser of its own here."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"The dashboard's browser test needs Chromium at {CHROMIUM}: "
            "install it with `apt-get install -y chromium` (Debian)."
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium)
        try:
            yield launched
        finally:
            await launched.close()


async def open_page(browser: Browser, requested: list[str]) -> Page:
    page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.on("request", lambda request: requested.append(request.url))
    return page


async def test_the_dashboard_shows_rankings_a_region_and_speaks_english(
    cerdas: str, browser: Browser
) -> None:
    requested: list[str] = []
    page = await open_page(browser, requested)

    await page.goto(f"{cerdas}/dashboard/#/national?framework=spbe-2020&period=2024&province=32")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    rows = page.locator("#ranking tbody tr")
    await expect(rows.first).to_contain_text("Kota Bekasi")
    await expect(rows.nth(0).locator("td").nth(0)).to_have_text("1")
    await expect(rows.nth(1)).to_contain_text("Kota Bogor")
    await expect(rows.nth(1).locator("td").nth(0)).to_have_text("2")
    await expect(page.locator("#national-heading")).to_have_text("Peringkat provinsi")
    await expect(page.locator("#counts tbody tr").first).to_be_visible()
    # The filters are a form a keyboard can reach and send.
    await expect(page.locator("#f-province")).to_have_value("32")

    await rows.nth(1).get_by_role("link").click()
    await expect(page.locator("#region-heading")).to_contain_text("Kota Bogor")
    await expect(page.locator("#figure-index")).to_have_text("3.72")
    await expect(page.locator("#trend tbody tr").filter(has_text="2024")).to_contain_text("3.72")
    await expect(page.locator("#tree tbody tr").first).to_be_visible()
    await expect(page.locator("#trend-chart svg")).to_have_count(1)

    # The demo publishes no region on two versions of an instrument, so the trend of one that
    # changed (SPBE 2020 to IPD 2026) is given to the page as the API would answer it.
    changed = {
        "family": "e-government",
        "framework": None,
        "region": "32.71",
        "instruments": ["spbe-2020", "ipd-2026"],
        "items": [
            {"period": 2024, "framework": "spbe-2020", "index": "3.72",
             "predicate": "Sangat Baik", "improvement": None, "instrument_changed": False},
            {"period": 2026, "framework": "ipd-2026", "index": "3.10",
             "predicate": None, "improvement": None, "instrument_changed": True},
        ],
    }  # fmt: skip
    await page.route("**/v1/trends?*", lambda route: route.fulfill(json=changed))

    await page.get_by_role("button", name="English").click()
    await expect(page.locator("#trend-heading")).to_have_text("The index over the years")
    assert await page.evaluate("document.documentElement.lang") == "en"
    await expect(page.locator("#trend tbody tr").nth(1)).to_contain_text("instrument changed")
    await expect(page.locator("#trend-chart svg [stroke-dasharray]")).to_have_count(1)

    hosts = {urlsplit(url).hostname for url in requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, requested
    assert any("/v1/rankings" in url for url in requested)
