"""Names that become parts of paths (datasets, strategies, modes, inits) must be plain identifiers."""

from __future__ import annotations

import re

from medseg.errors import MedsegError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")


def check_name(value: object, what: str) -> str:
    """``value`` when it is a plain identifier (letters, digits, ``_`` and ``-``, at most 64, no
    path separators, dots or spaces); a one-line error naming ``what`` otherwise."""
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise MedsegError(f"{what} {value!r} is not a valid name: use letters, digits, '_' and '-' "
                          "(at most 64, starting with a letter or digit)")
    return value
