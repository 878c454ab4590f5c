"""The console in a real browser (Debian chromium through Playwright) against the live server: the
privacy officer's journey from login to PDF, accessibility (axe-core, WCAG 2.1 AA) of every page in
Dutch and English, a 320 px wide screen, and the keyboard's first stop."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import CHILD_A, ConsoleServer, Municipality
from tests.portal.test_browser import serious_violations

pytestmark = pytest.mark.browser

PAGES = ["/fg/overzicht", "/fg/zoeken", "/fg/bevindingen", "/fg/controle", "/fg/rapportage", "/fg/regels"]


@pytest.fixture
def console_page(browser: Any, console_server: ConsoleServer) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def make(*, locale: str = "nl-NL", width: int = 1024) -> Any:
        context = browser.new_context(
            locale=locale,
            viewport={"width": width, "height": 900},
            base_url=console_server.base_url,
            accept_downloads=True,
        )
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def log_in(page: Any, town: Municipality, name: str = "browser-fg") -> None:
    page.goto("/fg/inloggen")
    page.get_by_role("link", name="test").first.click()
    page.locator("#tenant").select_option(town.tenant.slug)
    page.locator("#name").fill(name)
    page.locator("form:has(#tenant) button[type=submit]").click()
    page.wait_for_url("**/fg/overzicht")


def test_the_privacy_officers_journey(
    console_page: Any, console_server: ConsoleServer, tmp_path: Path
) -> None:
    page = console_page()
    log_in(page, console_server.a)
    # The overview: three charts, drawn on the server, each with its accessible name.
    assert page.get_by_role("heading", level=1).inner_text() == "Overzicht"
    charts = page.locator("svg.kluis-chart[role=img]")
    assert charts.count() == 3 and charts.first.is_visible()
    assert page.get_by_role("img", name="Lezen per dag per afdeling").is_visible()
    page.get_by_text("Toon als tabel").first.click()
    assert page.get_by_role("table", name="Lezen per dag per afdeling").is_visible()
    # Search by BSN: the BSN does not come back, not in the address bar either.
    page.get_by_role("link", name="Zoeken", exact=True).click()
    page.get_by_label("Betrokkene (BSN)").fill(CHILD_A)
    page.get_by_role("button", name="Zoeken", exact=True).click()
    page.wait_for_url("**/fg/zoeken?zoekopdracht=*")
    assert CHILD_A not in page.url and CHILD_A not in page.content()
    assert page.get_by_label("Betrokkene (BSN)").input_value() == ""
    results = page.get_by_role("table", name="Gevonden logregels, nieuwste eerst")
    assert results.is_visible() and "jeugdzorg.dossier" in results.inner_text()
    # Open an entry and its trace.
    results.get_by_role("link").first.click()
    page.wait_for_url("**/fg/logregels/*")
    assert page.get_by_role("heading", name="Alles in dezelfde trace").is_visible()
    assert page.get_by_role("heading", name="Bewijs van opname").is_visible()
    # Findings: look for anomalies, open one, mark it reviewed.
    page.get_by_role("link", name="Bevindingen").click()
    page.get_by_role("button", name="Zoek naar afwijkingen in de laatste zeven dagen").click()
    page.wait_for_url("**/fg/bevindingen?nieuw=*")
    page.locator(".kluis-card a").first.click()
    page.get_by_label("Notitie (wat u hebt nagegaan en wat u concludeert)").fill("Besproken met de afdeling.")
    page.get_by_role("button", name="Markeer als beoordeeld").click()
    assert page.get_by_text("Besproken met de afdeling.").is_visible()
    assert page.locator("dd", has_text="beoordeeld").first.is_visible()
    # Reports: the entries as CSV, and the PDF.
    page.get_by_role("link", name="Rapportage").click()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Logregels (CSV)").click()
    target = tmp_path / "entries.csv"
    download_info.value.save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert rows and {r["client_id"] for r in rows if r["client_id"]} <= set(console_server.a.clients.values())
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Overzicht verwerkingen (pdf)").click()
    pdf = tmp_path / "report.pdf"
    download_info.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF") and download_info.value.suggested_filename.endswith(".pdf")
    # Verification.
    page.get_by_role("link", name="Controle").click()
    page.get_by_role("button", name="Controleer nu het hele logboek").click()
    assert page.get_by_role("status").filter(has_text="intact").is_visible()


@pytest.mark.parametrize("locale", ["nl-NL", "en-GB"])
def test_axe_finds_no_serious_or_critical_violation_on_any_page(
    console_page: Any, console_server: ConsoleServer, locale: str
) -> None:
    page = console_page(locale=locale)
    found: dict[str, list[str]] = {}
    for path in ("/fg/inloggen", "/fg/inloggen/test"):
        page.goto(path)
        found[path] = serious_violations(page)
    log_in(page, console_server.a, name="axe")
    page.goto("/fg/bevindingen")
    page.locator("form[action='/fg/bevindingen/analyseren'] button").click()
    page.wait_for_url("**/fg/bevindingen?nieuw=*")
    finding = page.locator(".kluis-card a").first.get_attribute("href")
    page.goto("/fg/zoeken")
    page.locator("#bsn").fill(CHILD_A)
    page.locator("form.kluis-search button[type=submit]").click()
    page.wait_for_url("**/fg/zoeken?zoekopdracht=*")
    results = page.url.removeprefix(console_server.base_url)
    entry = page.locator("table a").first.get_attribute("href")
    for path in [*PAGES, results, entry, finding]:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert page.locator("html").get_attribute("lang") == locale[:2]
        page.locator("details").evaluate_all("(all) => all.forEach((d) => d.open = true)")
        found[path] = serious_violations(page)
    assert {path: v for path, v in found.items() if v} == {}


def test_works_on_a_320_px_wide_screen_without_sideways_scrolling(
    console_page: Any, console_server: ConsoleServer
) -> None:
    page = console_page(width=320)
    log_in(page, console_server.b, name="narrow")
    for path in PAGES:
        page.goto(path)
        page.locator("details").evaluate_all("(all) => all.forEach((d) => d.open = true)")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, path


def test_skip_link_is_the_first_thing_the_keyboard_reaches(
    console_page: Any, console_server: ConsoleServer
) -> None:
    page = console_page()
    log_in(page, console_server.a, name="keyboard")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "#inhoud"
