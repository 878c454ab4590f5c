"""Errors of the audit package. Messages are fixed and hold no personal data.

::

    AuditError
    ├── UnknownLogError            no log for this tenant (``ensure_log`` was never called)
    ├── LogOriginError             a log exists for the tenant under another origin
    ├── InvalidEventError          the event cannot be recorded as given (bad tag, trace id, time...)
    ├── LeafFormatError            stored or exported leaf bytes that are not a valid entry
    ├── LogStateError              the stored log state does not match its entries: appending or
    │                              signing refuses to continue (fail closed)
    ├── CheckpointRefusedError     signing would contradict the previous checkpoint
    ├── CheckpointSignatureError   a checkpoint JWS is malformed, has an unknown key or a bad
    │                              signature (one error for every reason: a forger learns nothing)
    ├── ProofRequestError          a proof or entry outside the log (index or size too large)
    ├── ProofError                 a proof that does not verify against the given roots
    ├── InvalidCursorError         a search cursor that this package did not hand out
    └── ExportFormatError          an exported log file that cannot be read

Verification does not raise on damage: it returns a ``VerifyResult`` naming the first damage.
"""

from __future__ import annotations


class AuditError(Exception):
    """Base of every error raised by ``audit``."""

    default_message = "audit log error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)


class UnknownLogError(AuditError):
    default_message = "there is no audit log for this tenant"


class LogOriginError(AuditError):
    default_message = "the tenant already has an audit log with another origin"


class InvalidEventError(AuditError):
    default_message = "the audit event is not valid"


class LeafFormatError(AuditError):
    default_message = "the leaf bytes are not a valid audit entry"


class LogStateError(AuditError):
    default_message = "the audit log state does not match its entries"


class CheckpointRefusedError(AuditError):
    default_message = "refused to sign a checkpoint inconsistent with the previous one"


class CheckpointSignatureError(AuditError):
    default_message = "the checkpoint signature is not valid"


class ProofRequestError(AuditError):
    default_message = "the requested entry or tree size is outside the log"


class ProofError(AuditError):
    default_message = "the proof does not verify"


class InvalidCursorError(AuditError):
    default_message = "the search cursor is not valid"


class ExportFormatError(AuditError):
    default_message = "the exported audit log cannot be read"
