"""Errors of the privacy officer's console. Pages answer them as HTML, the JSON API as problem+json.

::

    ConsoleError
    ├── OfficerLoginRequiredError   no live privacy-officer session: go to the console's login page
    ├── OfficerLoginFailedError     the provider refused, or the account lacks the role or a tenant
    ├── OfficerTooManyLoginsError   too many login attempts from this address (429, Retry-After)
    ├── NotFoundError               unknown, or of another municipality: the same answer either way
    └── InvalidSearchError          a filter, cursor or note that cannot be used (``field`` names it)

``OfficerLoginFailedError`` is also a ``kluis.web.errors.LoginRefusedError`` (its reason code is
logged) and ``OfficerTooManyLoginsError`` a ``LoginsLimitedError``, as the portal's are.
"""

from __future__ import annotations

from kluis.console.anomalies import N_
from kluis.web.errors import LoginRefusedError, LoginsLimitedError


class ConsoleError(Exception):
    status = 400
    # A message id of the catalogues; never a value from the request.
    message = N_("Something went wrong. Please try again.")


class OfficerLoginRequiredError(ConsoleError):
    status = 401
    message = N_("Please log in as privacy officer first.")


class NotFoundError(ConsoleError):
    status = 404
    message = N_("This page does not exist.")


class InvalidSearchError(ConsoleError):
    status = 400
    message = N_("This search cannot be done. Check the fields and try again.")

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class OfficerLoginFailedError(LoginRefusedError, ConsoleError):
    status = 400
    message = N_("Logging in as privacy officer did not work.")


class OfficerTooManyLoginsError(LoginsLimitedError, ConsoleError):
    pass
