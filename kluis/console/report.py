"""The processing report as a PDF (fpdf2), drawn on the server: a GDPR art. 30-style overview of
what the trail records per processing activity in a period, with counts only, plus the findings
and the state of the log's integrity. No personal data: codes, counts, dates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from kluis.console.anomalies import N_, RULE_TITLES, RULES
from kluis.console.schemas import Report

Translate = Callable[[str], str]
# The PDF core fonts cover Latin-1; other characters are replaced, never dropped silently.
REPLACEMENTS = str.maketrans(
    {
        "\u2013": "-",
        "\u2014": "-",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2026": "...",
        "\u20ac": "EUR",
    }
)


def _latin1(text: str) -> str:
    return text.translate(REPLACEMENTS).encode("latin-1", "replace").decode("latin-1")


class _Document(FPDF):
    def __init__(self, footer: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self._footer_text = footer
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(18, 18, 18)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", "", 8)
        self.cell(0, 6, _latin1(f"{self._footer_text} - {self.page_no()}"), align="C")


class _Writer:
    """Writes the sections of one report."""

    def __init__(self, report: Report, t: Translate, lang: str, zone: ZoneInfo) -> None:
        self.report, self.t, self.lang, self.zone = report, t, lang, zone
        self.title = t(N_("Processing overview (GDPR art. 30)"))
        self.pdf = _Document(f"{report.tenant_name} - {self.title}")
        self.pdf.set_title(_latin1(self.title))
        self.pdf.set_author("Kluis")
        self.pdf.set_creation_date(report.generated_at)
        self.pdf.add_page()

    def when(self, moment: datetime) -> str:
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")

    def heading(self, text: str, size: int = 13) -> None:
        self.pdf.set_font("Helvetica", "B", size)
        self.pdf.multi_cell(0, 7, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.ln(1)

    def paragraph(self, text: str) -> None:
        self.pdf.set_font("Helvetica", "", 10)
        self.pdf.multi_cell(0, 5, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.ln(2)

    def table(self, widths: tuple[int, ...], header: list[str] | None, rows: list[list[str]]) -> None:
        self.pdf.set_font("Helvetica", "", 9 if len(widths) > 2 else 10)
        with self.pdf.table(
            col_widths=widths, text_align="LEFT", first_row_as_headings=header is not None
        ) as table:
            for cells in ([header] if header is not None else []) + rows:
                row = table.row()
                for cell in cells:
                    row.cell(_latin1(cell))
        self.pdf.ln(3)

    def facts(self, rows: list[tuple[str, str]]) -> None:
        self.table((60, 114), None, [[label, value] for label, value in rows])

    def front(self) -> None:
        t, period = self.t, self.report.period
        since = period.since.astimezone(self.zone).date()
        until = (period.until.astimezone(self.zone) - timedelta(days=1)).date()
        self.heading(self.title, 16)
        self.paragraph(self.report.tenant_name)
        self.facts(
            [
                (t(N_("Period")), f"{since.isoformat()} - {until.isoformat()}"),
                (t(N_("Made on")), self.when(self.report.generated_at)),
            ]
        )
        self.paragraph(
            t(
                N_(
                    "Per processing activity of the purpose register, what the audit log records in "
                    "this period: reads of residents' data, consent requests and the residents' "
                    "decisions. Counts and codes only; no personal data."
                )
            )
        )

    def summary(self) -> None:
        t = self.t
        self.heading(t(N_("Summary")))
        if not self.report.purposes:
            self.paragraph(t(N_("Nothing was recorded under a processing activity in this period.")))
            return
        header = [
            t(label)
            for label in (
                N_("Processing activity"),
                N_("Reads"),
                N_("Refused"),
                N_("Residents"),
                N_("Requests"),
                N_("Revoked"),
            )
        ]
        rows = [
            [
                c.purpose,
                str(c.reads_allowed),
                str(c.reads_denied),
                str(c.residents),
                str(c.requests),
                str(c.revocations),
            ]
            for c, _purpose in self.report.purposes
        ]
        self.table((52, 24, 24, 26, 24, 24), header, rows)

    def purposes(self) -> None:
        t = self.t
        for counts, purpose in self.report.purposes:
            described = f": {purpose.description(self.lang)}" if purpose else ""
            self.heading(counts.purpose + described, 12)
            basis = purpose.legal_basis if purpose else ", ".join(counts.legal_bases)
            if purpose and purpose.statute:
                basis = f"{basis} ({purpose.statute})"
            self.facts(
                [
                    (t(N_("Legal basis")), basis or "-"),
                    (t(N_("Registered categories")), ", ".join(purpose.categories) if purpose else "-"),
                    (t(N_("Categories read")), ", ".join(counts.categories) or "-"),
                    (t(N_("Departments")), ", ".join(counts.departments) or "-"),
                    (t(N_("Reads allowed")), str(counts.reads_allowed)),
                    (t(N_("Reads refused")), str(counts.reads_denied)),
                    (t(N_("Residents whose data was read")), str(counts.residents)),
                    (t(N_("Consent requests")), str(counts.requests)),
                    (t(N_("Approved")), str(counts.approvals)),
                    (t(N_("Refused by the resident")), str(counts.refusals)),
                    (t(N_("Revoked")), str(counts.revocations)),
                ]
            )

    def findings(self) -> None:
        t, found = self.t, self.report.findings
        self.heading(t(N_("Findings")))
        if not found:
            self.paragraph(t(N_("No findings in this period.")))
            return
        header = [t(N_("Rule")), t(N_("Open")), t(N_("Reviewed"))]
        rows = [
            [t(RULE_TITLES[rule]), str(found[rule][0]), str(found[rule][1])]
            for rule in RULES
            if rule in found
        ]
        self.table((110, 32, 32), header, rows)

    def integrity(self) -> None:
        t, report = self.t, self.report
        self.heading(t(N_("Integrity of the audit log")))
        rows = [(t(N_("Entries in the log")), str(report.log_size))]
        latest = t(N_("none yet"))
        if report.checkpoint is not None:
            cp = report.checkpoint
            signed = t(N_("signature valid")) if cp.signature_valid else t(N_("signature NOT valid"))
            latest = f"{cp.checkpoint.tree_size} ({self.when(cp.checkpoint.timestamp)}, {signed})"
        rows.append((t(N_("Latest signed checkpoint")), latest))
        verified = t(N_("not yet verified"))
        if report.verification is not None:
            v = report.verification
            verified = f"{self.when(v.finished_at)}: {t(N_('intact')) if v.ok else t(N_('DAMAGED'))}"
            if v.first_bad_seq is not None:
                verified += f" ({t(N_('first bad entry'))} {v.first_bad_seq})"
            if not v.full:  # an incremental run re-read only what came after its checkpoint
                verified += " (" + t(N_("from entry %(since)s")) % {"since": v.since} + ")"
        rows.append((t(N_("Latest verification")), verified))
        self.facts(rows)


def render_pdf(report: Report, t: Translate, lang: str, zone: ZoneInfo) -> bytes:
    """The report as PDF bytes, in the officer's language (``t`` translates message ids)."""
    writer = _Writer(report, t, lang, zone)
    writer.front()
    writer.summary()
    writer.purposes()
    writer.findings()
    writer.integrity()
    return bytes(writer.pdf.output())
