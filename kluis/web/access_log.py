"""The resident's own audit entries, in plain language.

``AccessEntry`` is what the page needs of one audit entry; ``entries_for`` asks the audit package
for the entries about a resident (and those a resident made for others, as a representative) and
``describe`` turns one into a sentence ("Afdeling Jeugdzorg bekeek uw inkomensgegevens op 3 maart
om 14:02 voor: toewijzing jeugdhulp").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from audit import tags
from kluis.web import i18n
from kluis.web.i18n import Lang
from kluis.web.labels import N_, category_phrase

READS = {tags.RECORD_READ, tags.RECORDS_LISTED}


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One audit entry as the history page shows it (codes and opaque ids only)."""

    sequence: int
    time: datetime
    name: str
    actor_type: str
    actor_id: str
    on_behalf_of: str | None
    subject: str | None
    department: str | None
    categories: tuple[str, ...]
    purpose: str | None
    decision: str | None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Names:
    """What the page knows to name things: departments and purposes by code, and who "you" are."""

    departments: dict[str, str]
    purposes: dict[str, str]
    me: str  # the viewer's audit pseudonym
    subject: str  # whose history this is


def _what(entry: AccessEntry, lang: Lang) -> str:
    t = i18n.translations(lang).gettext
    phrases = [t(category_phrase(c)) for c in entry.categories] or [t(N_("your data"))]
    return ", ".join(phrases)


# Sentences whose words depend on who reads them, not only on the event (message ids).
OWN_ACTS = {  # the representative's own acts, read in their own history (or while acting)
    tags.REPRESENTATIVE_ACTING: N_("You started acting on behalf of someone else on %(when)s."),
    tags.REPRESENTATIVE_ACCEPTED: N_("You accepted to be someone's representative on %(when)s."),
    tags.REPRESENTATIVE_DECLINED: N_("You declined to be someone's representative on %(when)s."),
}
SENTENCES = {
    tags.REQUEST_CREATED: N_("%(who)s asked to use %(what)s on %(when)s for: %(purpose)s"),
    tags.REQUEST_APPROVED: N_("%(who)s gave permission for %(what)s on %(when)s."),
    tags.REQUEST_DENIED: N_("%(who)s refused a request for %(what)s on %(when)s."),
    tags.GRANT_REVOKED: N_("%(who)s stopped a permission for %(what)s on %(when)s."),
    tags.TOKEN_ISSUED: N_("%(who)s received access to %(what)s on %(when)s."),
    tags.TOKEN_REFUSED: N_("%(who)s was refused access to %(what)s on %(when)s."),
    tags.RECORD_WRITTEN: N_("%(who)s stored %(what)s on %(when)s."),
    tags.RECORD_IMPORTED: N_("%(who)s stored %(what)s on %(when)s."),
    tags.RESIDENT_EXPORTED: N_("%(who)s downloaded all data on %(when)s."),
    tags.RESIDENT_LOGGED_IN: N_("%(who)s logged in to this portal on %(when)s."),
    tags.REPRESENTATIVE_APPOINTED: N_("%(who)s appointed a representative on %(when)s."),
    tags.REPRESENTATIVE_ACCEPTED: N_(
        "The person you appointed accepted to be your representative on %(when)s."
    ),
    tags.REPRESENTATIVE_DECLINED: N_(
        "The person you appointed declined to be your representative on %(when)s."
    ),
    tags.REPRESENTATIVE_REVOKED: N_("%(who)s stopped a representative on %(when)s."),
    tags.REPRESENTATIVE_ACTING: N_("%(who)s started acting on your behalf on %(when)s."),
}
# A mandate that ended without the principal: (the principal's sentence, the one who ended it).
ERASED_REPRESENTATIVE = N_(
    "A representative of yours had their vault erased on %(when)s; they no longer act for you."
)
REVOCATIONS = {
    "representative_erased": (ERASED_REPRESENTATIVE, ERASED_REPRESENTATIVE),
    "representative_withdrew": (
        N_("Your representative stopped acting for you on %(when)s."),
        N_("You stopped representing someone on %(when)s."),
    ),
}


def _who(entry: AccessEntry, names: Names, lang: Lang) -> str:
    t = i18n.translations(lang).gettext
    if entry.actor_id == names.me and entry.on_behalf_of is None:
        return t(N_("You"))
    if entry.actor_type == "representative":
        return (
            t(N_("You, on behalf of someone else"))
            if entry.actor_id == names.me
            else t(N_("Your representative"))
        )
    if entry.department:
        return names.departments.get(entry.department, entry.department)
    if entry.actor_type == "operator":
        return t(N_("An administrator of the municipality"))
    return t(N_("The system"))


def _read_sentence(entry: AccessEntry, purpose: str) -> str:
    if entry.decision == "deny":
        return N_("%(who)s tried to view %(what)s on %(when)s, but was refused.")
    if purpose:
        return N_("%(who)s viewed %(what)s on %(when)s for: %(purpose)s")
    return N_("%(who)s viewed %(what)s on %(when)s.")


def _sentence(entry: AccessEntry, names: Names, purpose: str) -> str:
    """The message id that tells ``entry`` to the reader ``names`` describes."""
    if entry.name in READS:
        return _read_sentence(entry, purpose)
    mine = entry.actor_id == names.me
    if entry.name == tags.REPRESENTATIVE_REVOKED and entry.reason in REVOCATIONS:
        return REVOCATIONS[entry.reason][mine]
    if mine and entry.name in OWN_ACTS:
        return OWN_ACTS[entry.name]
    return SENTENCES.get(entry.name, N_("%(who)s did something with %(what)s on %(when)s."))


def describe(entry: AccessEntry, names: Names, lang: Lang) -> str:
    """One sentence in plain language; unknown events still say who, when and what kind."""
    t = i18n.translations(lang).gettext
    purpose = names.purposes.get(entry.purpose or "", entry.purpose or "")
    values = {
        "who": _who(entry, names, lang),
        "what": _what(entry, lang),
        "when": i18n.when(entry.time, lang),
        "purpose": purpose,
    }
    return t(_sentence(entry, names, purpose)) % values
