"""Errors of the portal pages, answered as HTML pages (the API answers problem+json instead).

PortalError
├── LoginRequiredError     no (live) session: go to the login page
├── CsrfError              a form without the session's CSRF token (403)
├── PageNotFoundError      unknown, or not yours: the same answer either way (404)
├── NotAllowedError        a representative acting outside their mandate's scope (403)
├── LoginFailedError       the identity provider or the test login refused (400)
└── TooManyLoginsError     too many login attempts from this address (429, Retry-After)

Shared with the console, mixed into each hierarchy: ``LoginRefusedError`` (a refused login; its
``reason`` code goes to the log line) under the two login failures, ``LoginsLimitedError`` under
the two too-many-logins errors.
"""

from __future__ import annotations

from kluis.web.labels import N_


class PortalError(Exception):
    status = 400
    # A message id of the catalogues; never a value from the request.
    message = N_("Something went wrong. Please try again.")


class LoginRequiredError(PortalError):
    status = 401
    message = N_("Please log in first.")


class CsrfError(PortalError):
    status = 403
    message = N_("This form has expired. Go back, reload the page and try again.")


class PageNotFoundError(PortalError):
    status = 404
    message = N_("This page does not exist, or it is not yours.")


class NotAllowedError(PortalError):
    status = 403
    message = N_("You may not do this on behalf of this person.")


class LoginRefusedError(Exception):
    """A refused login, of the portal or the console (each mixes it into its own hierarchy). The
    page says only that it did not work; ``reason``, a code, goes to the log line (failed logins
    are security events, ASVS 16.3.1), never a value from the request or the provider."""

    def __init__(self, reason: str = "refused") -> None:
        super().__init__(reason)
        self.reason = reason


class LoginFailedError(LoginRefusedError, PortalError):
    status = 400
    message = N_("Logging in did not work. Please try again.")


class LoginsLimitedError(Exception):
    """Too many login attempts from one address: the portal's and the console's error (each mixes
    it into its own hierarchy); pages answer it with ``Retry-After``."""

    status = 429
    message = N_("Too many login attempts from your connection. Please wait a minute and try again.")

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class TooManyLoginsError(LoginsLimitedError, PortalError):
    pass
