"""Every text of the console (its Python modules and its templates) is in both catalogues, and the
Dutch one translates all of them; placeholders survive translation."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

KLUIS = Path(__file__).resolve().parents[2] / "kluis"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
JINJA = {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def extracted() -> set[str]:
    found: set[str] = set()
    sources = [
        (KLUIS / "console", [("**.py", "python")], {}),
        (KLUIS / "web" / "templates" / "console", [("**.html", "jinja2")], {"**.html": JINJA}),
    ]
    for directory, methods, options in sources:
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(directory), methods, options_map=options, keywords=KEYWORDS
        ):
            found.add(message[0] if isinstance(message, tuple) else message)
    return found


def test_every_console_text_is_in_both_catalogues_and_translated_into_dutch() -> None:
    messages = extracted()
    assert len(messages) > 150
    for lang in ("nl", "en"):
        with (KLUIS / "web" / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
            catalog = read_po(source, locale=lang)
        strings = {
            m.id: m.string for m in catalog if isinstance(m.id, str) and isinstance(m.string, str) and m.id
        }
        assert messages - set(strings) == set(), lang
        for message in messages:
            translated = strings[message]
            assert translated, (lang, message)
            assert set(PLACEHOLDER.findall(translated)) == set(PLACEHOLDER.findall(message)), (lang, message)
