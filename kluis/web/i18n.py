"""Languages of the portal: Dutch by default, English on request.

Texts live only in the gettext catalogues under ``kluis/web/locale/<lang>/LC_MESSAGES/messages.po``.
They are compiled in memory when the portal starts (no build step, no committed ``.mo`` files to go
stale). Message ids are the English texts; the Dutch catalogue translates every one of them.
"""

from __future__ import annotations

import gettext
import io
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Literal
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

Lang = Literal["nl", "en"]
LANGUAGES: tuple[Lang, ...] = ("nl", "en")
DEFAULT: Lang = "nl"
# Residents read times on the wall clock of the municipality, not in UTC.
TIMEZONE = ZoneInfo("Europe/Amsterdam")


@cache
def translations(lang: Lang) -> gettext.GNUTranslations:
    """The compiled catalogue of ``lang`` (compiled once per process)."""
    po = resources.files("kluis.web").joinpath("locale", lang, "LC_MESSAGES", "messages.po")
    with po.open("rb") as source:
        catalog = read_po(source, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def parse_lang(value: str | None) -> Lang | None:
    if value in LANGUAGES:
        return value
    return None


def negotiate(accept_language: str | None) -> Lang:
    """The first supported language in an ``Accept-Language`` header, honouring q-values."""
    if not accept_language:
        return DEFAULT
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, position, tag.strip().lower()))
    for negative_quality, _, tag in sorted(ranked):
        primary = tag.split("-")[0]
        if negative_quality < 0 and (lang := parse_lang(primary)) is not None:
            return lang
    return DEFAULT


def when(value: datetime, lang: Lang) -> str:
    """A moment the way people say it: "3 maart 2026 om 14:02" / "3 March 2026 at 14:02"."""
    local = value.astimezone(TIMEZONE)
    day = format_date(local, format="long", locale=lang)
    clock = format_datetime(local, format="HH:mm", locale=lang)
    joiner = translations(lang).gettext("%(day)s at %(time)s")
    return joiner % {"day": day, "time": clock}


def day(value: datetime, lang: Lang) -> str:
    return format_date(value.astimezone(TIMEZONE), format="long", locale=lang)
