"""The portal in a real browser (Debian chromium through Playwright) against the live server:
the resident's main journeys, accessibility (axe-core, WCAG 2.1 AA) in Dutch and English, and a
320 px wide screen. One browser for the whole session keeps the run short."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.portal.conftest import ADULT, GRANTOR, OTHER, LiveServer, dev_login

pytestmark = pytest.mark.browser

PAGES = [
    "/portaal/gegevens",
    "/portaal/gegevens/inkomen",
    "/portaal/inzage",
    "/portaal/gemachtigden",
    "/portaal/downloaden",
    "/portaal/wissen",
]
CONSENT_PAGES = ["/portaal/verzoeken", "/portaal/toestemmingen"]


def serious_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(
        page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def test_log_in_see_data_download_and_erase(page_for: Any, server: LiveServer, tmp_path: Path) -> None:
    page = page_for()
    dev_login(page, GRANTOR)
    assert page.get_by_role("heading", level=1).inner_text() == "Mijn gegevens"
    page.get_by_role("link", name="Inkomen").click()
    assert page.get_by_text("Bakkerij De Korrel").is_visible()
    # Download my data: a JSON file with the records.
    page.goto("/portaal/downloaden")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Mijn gegevens downloaden").click()
    target = tmp_path / "export.json"
    download_info.value.save_as(target)
    document = json.loads(target.read_text())
    assert document["resident"]["bsn"] == GRANTOR
    assert document["records"][0]["category"] == "inkomen"
    # Erase, with two confirmations.
    page.goto("/portaal/wissen")
    page.get_by_role("button", name="Verder").click()
    assert page.get_by_role("alert").is_visible()  # the box was not ticked
    page.get_by_label("Ik begrijp dat al mijn gegevens voorgoed worden vernietigd.").check()
    page.get_by_role("button", name="Verder").click()
    page.get_by_role("button", name="Ja, wis mijn kluis nu").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Uw kluis is gewist"
    page.goto("/portaal/gegevens")
    page.wait_for_url("**/portaal/inloggen")


@pytest.mark.parametrize("locale", ["nl-NL", "en-GB"])
def test_axe_finds_no_serious_or_critical_violation_on_any_page(
    page_for: Any, server: LiveServer, locale: str
) -> None:
    page = page_for(locale=locale)
    found: dict[str, list[str]] = {}
    for path in ("/portaal/inloggen", "/portaal/inloggen/test"):
        page.goto(path)
        found[path] = serious_violations(page)
    dev_login(page, OTHER)
    _representation_for(server, OTHER)  # the representatives page with every section it can show
    pages = PAGES + (CONSENT_PAGES if hasattr(server.services, "consent") else [])
    for path in pages:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert page.locator("html").get_attribute("lang") == locale[:2]
        if path == "/portaal/gemachtigden":  # with invitations, people represented, own mandates
            assert page.locator("#uitnodigingen").count() == page.locator("#namens-wie").count() == 1
            assert page.get_by_role("button").count() >= 5
        found[path] = serious_violations(page)
    assert {path: v for path, v in found.items() if v} == {}


def _representation_for(server: LiveServer, bsn: str) -> None:
    """``bsn`` invited by one resident, representing another, and inviting a third (once)."""
    from datetime import timedelta

    from kluis.web.mandates import MandateService
    from kluis.wiring import utcnow
    from tests.portal.conftest import operator
    from vault.errors import NotFoundError

    vault, mandates = server.services.vault, MandateService(server.services.vault)
    until = utcnow() + timedelta(days=30)
    with server.services.db.session() as session:
        try:
            vault.resident_by_bsn(session, server.tenant.id, "999990299")
            return  # done by an earlier run of this test
        except NotFoundError:
            pass
        inviter = vault.add_resident(session, operator(), server.tenant, "999990299")
        principal = vault.add_resident(session, operator(), server.tenant, "999990305")
        me = vault.resident_by_bsn(session, server.tenant.id, bsn)
        mandates.appoint(session, operator(), inviter, bsn, may_decide=True, valid_until=until)
        mandates.appoint(session, operator(), principal, bsn, may_decide=False, valid_until=until)
        accepted = [m for m in mandates.invitations(session, me, utcnow()) if m.principal_id == principal.id]
        mandates.answer_invitation(session, operator(), me, accepted[0].id, accept=True)
        mandates.appoint(session, operator(), me, "999990299", may_decide=False, valid_until=until)


def test_works_on_a_320_px_wide_screen_without_sideways_scrolling(page_for: Any) -> None:
    page = page_for(width=320)
    dev_login(page, ADULT)
    for path in PAGES:
        page.goto(path)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, path


def test_skip_link_is_the_first_thing_the_keyboard_reaches(page_for: Any) -> None:
    page = page_for()
    dev_login(page, ADULT)
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.getAttribute('href')")
    assert focused == "#inhoud"
