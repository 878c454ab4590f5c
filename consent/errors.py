"""Errors of the consent engine and OAuth server.

    ConsentError
    ├── DepartmentNotFoundError
    ├── DuplicateDepartmentError
    └── InvalidDepartmentError

(The OAuth errors are added beside these; each maps to one RFC 6749 error code in the shell.)
"""

from __future__ import annotations


class ConsentError(Exception):
    """Base of every consent error."""


class DepartmentNotFoundError(ConsentError):
    def __init__(self) -> None:
        super().__init__("unknown department")


class DuplicateDepartmentError(ConsentError):
    def __init__(self) -> None:
        super().__init__("this department already exists in this municipality")


class InvalidDepartmentError(ConsentError):
    pass
