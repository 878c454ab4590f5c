"""Every text of the portal is in both catalogues, and the Dutch one translates all of them."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

WEB = Path(__file__).resolve().parents[2] / "kluis" / "web"
METHODS = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
OPTIONS = {
    "**/templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}
}


def extracted() -> set[str]:
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(WEB), METHODS, options_map=OPTIONS, keywords=keywords
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def test_every_text_is_translated_into_dutch_and_present_in_english() -> None:
    messages = extracted()
    assert len(messages) > 100
    for lang in ("nl", "en"):
        with (WEB / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
            catalog = read_po(source, locale=lang)
        ids = {m.id[0] if isinstance(m.id, tuple) else m.id for m in catalog if m.id}
        assert messages - ids == set(), lang
        if lang == "nl":
            untranslated = [
                m.id
                for m in catalog
                if m.id and not (m.string[0] if isinstance(m.string, tuple) else m.string)
            ]
            assert untranslated == []
