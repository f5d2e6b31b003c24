"""Store URLs: ``postgresql://user[:password]@host:port/db?schema=NAME``.

Splits the URL into what libpq is given (everything but ``schema``) and the
schema the store lives in, and gives the URL without its password for every
message and for `Store.location`. Pure string work: no driver, no I/O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ValidationError

__all__ = ["StoreURL", "parse_url", "DEFAULT_SCHEMA"]

DEFAULT_SCHEMA = "metalog"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
"""Lower case, so it needs no quoting anywhere; 48 characters leave room for the
notification channel name (``metalog_`` + schema, at most 63 bytes)."""


@dataclass(frozen=True)
class StoreURL:
    conninfo: str  # for libpq: the URL without ``schema``, password included
    schema: str
    redacted: str  # the URL without its password, ``schema`` included: for messages

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this store's commits."""
        return f"metalog_{self.schema}"


def _netloc_without_password(netloc: str) -> str:
    if "@" not in netloc:
        return netloc
    user, host = netloc.rsplit("@", 1)
    return f"{user.split(':', 1)[0]}@{host}"


def parse_url(url: str) -> StoreURL:
    """Check and split a store URL; ValidationError names it (without its password)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    rest = [(k, v) for k, v in query if k != "schema"]
    redacted = urlunsplit(parts._replace(netloc=_netloc_without_password(parts.netloc)))
    if len(schemas) > 1:
        raise ValidationError(f"store URL {redacted} names schema more than once")
    schema = schemas[0] if schemas else DEFAULT_SCHEMA
    if not _SCHEMA_NAME.match(schema):
        raise ValidationError(f"store URL {redacted}: schema {schema!r} must be lower-case letters, "
                              "digits and _ (at most 48, not starting with a digit)")
    conninfo = urlunsplit(parts._replace(query=urlencode(rest)))
    return StoreURL(conninfo, schema, redacted)
