"""Templates: one Jinja2 environment per language, every text through gettext."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from kluis.web import csrf, i18n
from kluis.web.i18n import Lang
from kluis.web.sessions import SessionState


def _environment(lang: Lang) -> Environment:
    env = Environment(
        loader=PackageLoader("kluis.web", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = partial(i18n.when, lang=lang)
    env.filters["day"] = partial(i18n.day, lang=lang)
    return env


class Templates:
    def __init__(self) -> None:
        self.envs = {lang: _environment(lang) for lang in i18n.LANGUAGES}

    def gettext(self, lang: Lang, message: str) -> str:
        return i18n.translations(lang).gettext(message)

    def render(self, request: Request, name: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        state: SessionState = request.scope["kluis.portal"]
        lang = language(request)
        context.setdefault("viewer", None)
        context.setdefault("title", "")
        html = (
            self.envs[lang]
            .get_template(name)
            .render(
                lang=lang,
                other_lang="en" if lang == "nl" else "nl",
                csrf_token=csrf.token(state),
                csrf_field=csrf.FIELD,
                path=request.url.path,
                **context,
            )
        )
        return HTMLResponse(html, status_code=status)


def language(request: Request) -> Lang:
    """The session's chosen language, else the browser's ``Accept-Language``, else Dutch."""
    state: SessionState | None = request.scope.get("kluis.portal")
    chosen = i18n.parse_lang(state.data.get("lang")) if state is not None else None
    return chosen or i18n.negotiate(request.headers.get("accept-language"))
