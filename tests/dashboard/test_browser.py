"""The dashboard in a real browser (the system's Chromium, driven by Playwright) against a
running `cerdas serve` with the demo data loaded by `cerdas demo --yes`."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from services.domain.access.service import create_key
from services.kit.runtime import Runtime
from tests.test_cli import CERDAS, _free_port, clean_env, run_cli

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# axe-core, installed by `make venv` (npm ci in tests/dashboard, from its lock file).
AXE_CORE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
# Screenshots for a person to look at (build/ is not committed).
SCREENSHOTS = Path(__file__).parents[2] / "build" / "dashboard"


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


async def open_page(
    browser: Browser, requested: list[str], errors: list[str] | None = None, width: int = 390
) -> Page:
    page = await browser.new_page(viewport={"width": width, "height": 844})  # 390: a phone
    page.on("request", lambda request: requested.append(request.url))
    if errors is not None:
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
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

    await page.get_by_role("button", name="English").click()
    await expect(page.locator("#trend-heading")).to_have_text("The index over the years")
    assert await page.evaluate("document.documentElement.lang") == "en"

    hosts = {urlsplit(url).hostname for url in requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, requested
    assert any("/v1/rankings" in url for url in requested)


@pytest.fixture
async def api(cerdas: str) -> AsyncIterator[httpx.AsyncClient]:
    """The running Cerdas's API, to compare the page's figures with."""
    async with httpx.AsyncClient(base_url=cerdas) as client:
        yield client


async def test_the_region_view_explains_kota_bekasi_across_the_change_of_instrument(
    cerdas: str, browser: Browser, api: httpx.AsyncClient
) -> None:
    requested: list[str] = []
    errors: list[str] = []
    page = await open_page(browser, requested, errors, width=1280)
    await page.goto(f"{cerdas}/dashboard/#/national?framework=spbe-2020&period=2024")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)

    # The header's picker: typed and sent from the keyboard.
    await page.get_by_label("Cari daerah (nama atau kode)").fill("Kota Bekasi")
    await page.keyboard.press("Enter")
    await expect(page.locator("#region-heading")).to_have_text("Kota Bekasi — Indeks SPBE 2024")
    await expect(page.locator("#figure-index")).to_have_text("3.83")
    await expect(page.locator("#figure-previous")).to_have_text("3.01")
    await expect(page.locator("#figure-improvement")).to_have_text("+0.82")
    # SPBE 2023 and 2024, then the IPD in 2026: the change of instrument, dashed in the chart.
    trend = page.locator("#trend tbody tr")
    await expect(trend).to_have_count(3)
    await expect(trend.nth(2)).to_contain_text("Indeks Pemerintah Digital (instrumen berganti)")
    await expect(trend.nth(2)).to_contain_text("3.20")
    await expect(page.locator("#trend-chart svg [stroke-dasharray]")).to_have_count(1)
    # SPBE 2024 was published from its results letter's index alone: nothing to plan on.
    await expect(page.locator("#plan-status")).to_contain_text("Rencana tidak tersedia")
    await expect(page.locator("#plan-form")).to_be_hidden()

    # The trend's period opens that period's assessment.
    await trend.nth(2).get_by_role("link", name="2026").click()
    await expect(page.locator("#region-heading")).to_have_text(
        "Kota Bekasi — Indeks Pemerintah Digital 2026"
    )
    await expect(page.locator("#figure-index")).to_have_text("3.20")
    await expect(page.locator("#figure-self")).to_have_text("3.27 Baik")
    await expect(page.locator("#figure-verified")).to_have_text("3.20 Baik")
    # Value, weight, contribution to its aspect (A7, weight 25: 3.62 × 15 ÷ 25), evidence count.
    tree = page.locator("#tree tbody tr")
    await expect(tree.filter(has_text="I20 Kepuasan Pengguna").locator("td")).to_have_text(
        ["3.62", "15", "2.1720", "0"]
    )

    # The plan to the next predicate up is the API's, step by step.
    found = await api.get("/v1/assessments", params={"framework": "ipd-2026", "region": "32.75"})
    [ipd] = found.json()["items"]
    plan = (
        await api.get(f"/v1/assessments/{ipd['id']}/plan", params={"target": "Sangat Baik"})
    ).json()
    assert (plan["current"]["index"], plan["index"], plan["predicate"]) == (
        "3.20",
        "3.50",
        "Sangat Baik",
    )
    await expect(page.locator("#plan-target")).to_have_value("Sangat Baik")
    await expect(page.locator("#plan-summary")).to_have_text(
        f"Dari 3.20 (Baik) menjadi 3.50 (Sangat Baik): {len(plan['steps'])} indikator, "
        f"{plan['cost']} langkah kenaikan."
    )
    steps = page.locator("#plan tbody tr")
    await expect(steps).to_have_count(len(plan["steps"]))
    for number, step in enumerate(plan["steps"]):
        await expect(steps.nth(number).locator("th, td")).to_have_text(
            [
                f"{step['node']} {step['name']}",
                step["from"],
                step["to"],
                str(step["steps"]),
                step["contribution"],
            ]
        )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / "region-32.75-ipd-2026.png", full_page=True)
    # A target the reader types: the API's answer again.
    await page.locator("#plan-target").fill("3.30")
    await page.get_by_role("button", name="Hitung").click()
    lower = await api.get(f"/v1/assessments/{ipd['id']}/plan", params={"target": "3.30"})
    await expect(page.locator("#plan-summary")).to_contain_text(
        f"menjadi {lower.json()['index']} (Baik)"
    )
    # The CSV links answer CSV.
    for link in ("#plan-export", "#tree-export"):
        href = await page.locator(link).get_attribute("href")
        assert href is not None
        answer = await api.get(urljoin(page.url, href))
        assert answer.status_code == 200, href
        assert answer.headers["content-type"].startswith("text/csv")

    await page.get_by_role("button", name="English").click()
    await expect(page.locator("#plan-heading")).to_have_text("Plan to a target")
    await expect(page.locator("#plan-summary")).to_contain_text("From 3.20 (Baik) to 3.50")

    # Kota Bogor: Bogor Single Window's integrated apps against their target, as the published
    # composite index read them, whatever the period shown.
    await page.get_by_label("Find a region (name or code)").fill("kota bogor")
    await page.keyboard.press("Enter")
    await expect(page.locator("#region-heading")).to_contain_text("Kota Bogor")
    await expect(page.locator("#metric-latest")).to_have_text(
        "Integrasi aplikasi pemerintah (terintegrasi ÷ target): 148 of 327 (45.26% of target) "
        "in 2024"
    )
    await expect(page.locator("#metrics-latest meter")).to_have_attribute("value", "45.26")
    await expect(page.locator("#metrics tbody tr")).to_contain_text(
        ["Indeks Smart City Terpadu SPBE (Cerdas)"]
    )

    # The national ranking's CSV, as filtered.
    await page.goto(f"{cerdas}/dashboard/#/national?framework=spbe-2020&period=2024&province=32")
    await expect(page.locator("#ranking tbody tr").first).to_contain_text("Kota Bekasi")
    href = await page.locator("#ranking-export").get_attribute("href")
    assert href is not None
    ranking = await api.get(urljoin(page.url, href))
    assert ranking.status_code == 200
    assert ranking.text.splitlines()[1].startswith("1,32.75,Kota Bekasi,32,3.83,Sangat Baik")

    hosts = {urlsplit(url).hostname for url in requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, requested
    assert errors == []


@pytest.fixture
def axe_core() -> Path:
    if not AXE_CORE.exists():
        pytest.fail(
            f"The dashboard's accessibility test needs axe-core at {AXE_CORE}: run `make venv` "
            "(or `npm ci` in tests/dashboard) with npm installed."
        )
    return AXE_CORE


async def test_axe_finds_no_accessibility_violations(
    cerdas: str, browser: Browser, axe_core: Path
) -> None:
    # axe is injected as an inline script, which the pages' policy refuses: this context alone
    # ignores the policy (the tests above run under it).
    context = await browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    try:
        views = {
            "ranking": "#/national?framework=spbe-2020&period=2024&province=32",
            "plan and change of instrument": "#/region/32.75?framework=ipd-2026&period=2026",
            "metrics, no plan": "#/region/32.71?framework=spbe-2020&period=2024",
            "no assessment": "#/region/32.71?framework=ipd-2026&period=2026",
        }
        found = {}
        for view, fragment in views.items():
            page = await context.new_page()  # data-ready: every part of the view is drawn
            await page.goto(f"{cerdas}/dashboard/{fragment}")
            await expect(page.locator("body[data-ready=true]")).to_have_count(1)
            await page.add_script_tag(path=axe_core)
            answer = await page.evaluate(AXE_RUN)
            found[view] = [
                (v["id"], v["impact"], [node["target"] for node in v["nodes"]])
                for v in answer["violations"]
            ]
            await page.close()
        assert found == {view: [] for view in views}
    finally:
        await context.close()


# WCAG 2.1 A and AA, and axe's best practices (landmarks, one h1, heading order, …).
AXE_RUN = """() => axe.run(document, {runOnly: {type: "tag",
    values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}})"""


async def download(page: Page, selector: str) -> tuple[str, str]:
    """Click a download link: the file's suggested name and its text."""
    async with page.expect_download() as started:
        await page.locator(selector).click()
    file = await started.value
    path = await file.path()
    return file.suggested_filename, await asyncio.to_thread(path.read_text, encoding="utf-8-sig")


async def test_a_ministry_admin_signs_in_and_sees_what_is_not_published_yet(
    cerdas: str, browser: Browser, api: httpx.AsyncClient, live: Runtime
) -> None:
    """Kota Bogor's IPD 2026 is in review (2.77 in the demo): anonymous pages leave it out, a
    ministry-admin's key shows it, for this tab only, until signing out."""
    async with live.sessionmaker() as session, session.begin():
        _, secret = await create_key(session, name="Kemendagri", role="ministry-admin", regions=[])
    params = {"framework": "ipd-2026", "period": "2026"}
    signed = await api.get(
        "/v1/rankings", params=params, headers={"Authorization": f"Bearer {secret}"}
    )
    bogor = next(item for item in signed.json()["items"] if item["region"] == "32.71")

    requested: list[str] = []
    errors: list[str] = []
    page = await open_page(browser, requested, errors, width=1280)
    await page.goto(f"{cerdas}/dashboard/#/national?framework=ipd-2026&period=2026")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    rows = page.locator("#ranking tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("Kota Bekasi")

    signin = page.locator("#signin")
    await signin.locator("summary").click()
    await page.get_by_label("Kunci API atau token SSO").fill("cerdas_not-a-key")
    await page.get_by_role("button", name="Masuk", exact=True).click()
    await expect(page.locator("#signin-status")).to_contain_text("Kunci atau token ditolak")
    await expect(rows).to_have_count(1)

    await page.get_by_label("Kunci API atau token SSO").fill(secret)
    await page.get_by_role("button", name="Masuk", exact=True).click()
    await expect(page.locator("#signed-in-as")).to_contain_text("Kemendagri (ministry-admin)")
    await expect(rows).to_have_count(2)
    await expect(rows.filter(has_text="Kota Bogor")).to_contain_text(str(bogor["index"]))
    await expect(page.locator("#footer")).to_contain_text("belum dipublikasikan")

    # The ranking's CSV holds what the page shows: fetched with the bearer while signed in.
    name, signed_csv = await download(page, "#ranking-export")
    assert name.endswith(".csv")
    assert "Kota Bogor" in signed_csv
    assert "Kota Bekasi" in signed_csv

    await page.reload()  # the tab keeps it (sessionStorage), nothing else does
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    await expect(rows).to_have_count(2)
    assert await page.evaluate("localStorage.getItem('cerdas-token')") is None

    await signin.locator("summary").click()
    await page.get_by_role("button", name="Keluar").click()
    await expect(rows).to_have_count(1)
    await expect(page.locator("#footer")).to_contain_text("Hanya hasil yang telah dipublikasikan")
    _, anonymous_csv = await download(page, "#ranking-export")
    assert "Kota Bekasi" in anonymous_csv
    assert "Kota Bogor" not in anonymous_csv

    hosts = {urlsplit(url).hostname for url in requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, requested
    # The refused key's 401 is the only console error: the browser reports the failed request.
    assert all("401" in error for error in errors), errors
