"""The errors of input a user can fix, and the one way an unknown name is reported.

:class:`InputError` is the base of every error that a wrong value, key, file or path causes: the
command line prints its message on one line and exits 2 (``tune_ptycho.cli``). It lives in the
model core so that every package may raise it without importing the service. Its message names
the field or file, the value and what would be accepted.

:func:`lookup` is how a registry (``GENERATORS``, ``OPTIMIZERS``, ...) answers an unknown name:
with the closest names and the full list, so no module spells its own variant of that message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

__all__ = ["ConfigError", "InputError", "closest", "lookup"]

V = TypeVar("V")


class InputError(ValueError):
    """Input a user can fix (a value, key, file or path); the message says which and why."""


class ConfigError(InputError):
    """A configuration value or key that is not allowed; the message names the path."""


def closest(name: str, options: Iterable[str]) -> str:
    """``" (did you mean 'lr'?)"`` for the options nearest ``name``, or ``""``."""
    m = difflib.get_close_matches(name, list(options), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(x) for x in m)}?)" if m else ""


def lookup(registry: Mapping[str, V], name: str, path: str) -> V:
    """``registry[name]``, or a :class:`ConfigError` naming ``path``, the value and the choices."""
    if name not in registry:
        raise ConfigError(f"unknown {path}={name!r}{closest(str(name), registry)}; "
                          f"choose from {list(registry)}")
    return registry[name]
