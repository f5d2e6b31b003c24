"""Argument checks shared by the media catalog and the legacy importer.

This module owns the checks of values a caller hands to the media domain
(titles, descriptions, reasons, actors): each returns the value or raises
`ValidationError` (a ``ValueError``) before anything is written. It sits
below `catalog` and `legacy` so neither needs the other for them. It does
no I/O and knows nothing about the store.
"""
from __future__ import annotations

from eventstore.errors import ValidationError

__all__ = ["check_text", "check_actor"]


def check_text(what: str, value: object) -> str:
    """``value`` if it is a ``str`` the log can store (valid Unicode), else ValidationError."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"{what} is not valid Unicode (lone surrogate?)") from exc
    return value


def check_actor(actor: object) -> str:
    """A non-empty actor name (it names who made each change)."""
    actor = check_text("actor", actor)
    if not actor:
        raise ValidationError("actor must not be empty (it names who made each change)")
    return actor
