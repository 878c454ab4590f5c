"""The server-drawn charts (accessible, escaped SVG) and the PDF report (in both languages)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

import pytest
from pypdf import PdfReader

from kluis.console import charts
from kluis.console.anomalies import Period
from kluis.console.report import render_pdf
from kluis.console.schemas import PurposeCounts, PurposeFacts, Report, VerificationView
from kluis.web.i18n import TIMEZONE, translations

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def test_stacked_bars_are_well_formed_named_and_escape_their_labels() -> None:
    series = [
        charts.Series("<script>alert(1)</script>", [1, 0, 3], charts.PALETTE[0]),
        charts.Series("Werk & inkomen", [2, 2, 0], charts.PALETTE[1]),
    ]
    markup = charts.stacked_bars("c1", "Reads <per> day", "Desc & more", ["01-03", "02-03", "03-03"], series)
    assert "<script>" not in markup
    root = parse(markup)
    assert root.get("role") == "img" and root.get("aria-labelledby") == "c1-title c1-desc"
    assert root.find(f"{SVG}title").text == "Reads <per> day"  # type: ignore[union-attr]
    assert root.find(f"{SVG}desc").text == "Desc & more"  # type: ignore[union-attr]
    bars = root.findall(f"{SVG}rect")
    assert len(bars) == 4  # zero values draw nothing
    heights = sorted(float(b.get("height", 0)) for b in bars)
    assert heights[-1] == pytest.approx(3 * heights[0], abs=0.2)  # 3 against 1, on one scale


def test_horizontal_bars_scale_to_the_largest_value_and_handle_no_data() -> None:
    root = parse(charts.horizontal_bars("c2", "Per category", "d", [("inkomen", 10), ("schulden", 5)]))
    widths = [float(r.get("width", 0)) for r in root.findall(f"{SVG}rect")]
    assert widths[0] == 2 * widths[1]
    assert parse(charts.horizontal_bars("c3", "t", "d", [])).findall(f"{SVG}rect") == []
    assert parse(charts.stacked_bars("c4", "t", "d", [], [])).findall(f"{SVG}rect") == []


def test_the_palette_has_enough_contrast_on_white() -> None:
    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    for colour in charts.PALETTE:
        assert 1.05 / (luminance(colour) + 0.05) >= 3.0, colour


def _report(**changes: object) -> Report:
    values: dict[str, object] = {
        "tenant_name": "Gemeente Demodam \u2013 Noord",
        "period": Period(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)),
        "generated_at": datetime(2026, 4, 1, 9, tzinfo=UTC),
        "purposes": [
            (
                PurposeCounts(
                    "bijstand", reads_allowed=12, reads_denied=2, residents=5, requests=6, approvals=5
                ),
                PurposeFacts(
                    "bijstand", "Aanvraag bijstand “snel”", "Social assistance", "consent", None, ("inkomen",)
                ),
            ),
            (PurposeCounts("onbekend", reads_allowed=1), None),
        ],
        "findings": {"off_hours": (2, 1)},
        "log_size": 345,
        "verification": VerificationView(
            "v",
            "button",
            "fg",
            datetime(2026, 4, 1, tzinfo=UTC),
            datetime(2026, 4, 1, tzinfo=UTC),
            False,
            340,
            3,
            17,
            "x",
        ),
    }
    values.update(changes)
    return Report(**values)  # type: ignore[arg-type]


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_the_pdf_report_in_dutch_and_english() -> None:
    dutch = _text(render_pdf(_report(), translations("nl").gettext, "nl", TIMEZONE))
    assert "Overzicht verwerkingen (AVG art. 30)" in dutch and "Gemeente Demodam - Noord" in dutch
    assert "Aanvraag bijstand" in dutch and "onbekend" in dutch and "2026-03-01 - 2026-03-30" in dutch
    assert "Lezen buiten kantooruren" in dutch and "BESCHADIGD" in dutch and "17" in dutch
    english = _text(render_pdf(_report(), translations("en").gettext, "en", TIMEZONE))
    assert "Processing overview (GDPR art. 30)" in english and "Social assistance" in english
    assert "Reads outside office hours" in english and "DAMAGED" in english


def test_an_empty_period_still_makes_a_report() -> None:
    pdf = render_pdf(
        _report(purposes=[], findings={}, verification=None), translations("en").gettext, "en", TIMEZONE
    )
    text = _text(pdf)
    assert (
        "Nothing was recorded" in text
        and "No findings in this period." in text
        and "not yet verified" in text
    )
    assert date(2026, 4, 1).isoformat() in text
