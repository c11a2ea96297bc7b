"""What the driver prints when something fails inside Tune: one line, the traceback in a file.

Tune logs an error in a callback or the searcher (a study database gone, a full disk) with its
whole traceback, and a failure that ends ``Tuner.fit`` arrives as a TuneError whose text is a
traceback too. Users get one line naming the cause; ``<experiment>/driver_error.txt`` keeps every
traceback in full.
"""

from __future__ import annotations

import contextlib
import logging
import re
import traceback
from collections.abc import Iterator

from ..storage.fs import write_text
from ..storage.layout import DRIVER_ERROR_FILE  # also read from here (launch, the tests)

_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception|Interrupt)(: |$)")


def failure_reason(e: BaseException | str) -> str:
    """One line for what went wrong, the study database's own error first (Optuna re-raises it as
    a vaguer StorageInternalError). From an exception, its chain of causes is searched; from a
    traceback's text (Tune's TuneError carries one), its error lines."""
    if isinstance(e, BaseException):
        chain, seen = [], set()
        cur: BaseException | None = e
        while cur is not None and id(cur) not in seen:
            seen.add(id(cur))
            chain.append(cur)
            cur = cur.__cause__ or cur.__context__
        for exc in chain:
            if type(exc).__name__ == "OperationalError":
                first = str(exc).strip().splitlines()
                return f"the study database stopped answering: {first[0] if first else exc!r}"
    text = str(e)
    errors = [ln.strip() for ln in text.splitlines() if _ERROR_LINE.match(ln.strip())]
    database = [ln for ln in errors if "OperationalError" in ln]
    if database:
        return f"the study database stopped answering: {database[-1]}"
    if errors:
        return errors[-1]
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if isinstance(e, str) else f"{type(e).__name__}: {first}"


class _OneLine(logging.Filter):
    """On the handlers of Ray's logger: a ``ray.tune`` record with a traceback is printed as its
    message plus the cause; the traceback is kept for the file. Tune's own advice after an
    interrupt ("Resume experiment with: Tuner.restore(...)") is dropped: the launcher prints
    the ``tune-ptycho resume`` command instead."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("ray.tune"):
            return True
        if "Tuner.restore(" in str(record.msg):
            return False
        if record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info))
            message = record.getMessage()
            self.kept.append(f"{message}\n{text}")
            record.msg = f"{message} ({failure_reason(text)}; traceback in {DRIVER_ERROR_FILE})"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


@contextlib.contextmanager
def tracebacks_to_file(experiment_uri: str) -> Iterator[list[str]]:
    """While Tune runs, keep tracebacks off the console; the yielded list takes more of them
    (the fit's own), and all are written to ``experiment_uri/driver_error.txt`` at the end."""
    one_line = _OneLine()
    handlers = logging.getLogger("ray").handlers
    for h in handlers:
        h.addFilter(one_line)
    extra: list[str] = []
    try:
        yield extra
    finally:
        for h in handlers:
            h.removeFilter(one_line)
        if one_line.kept or extra:
            try:
                write_text(f"{experiment_uri}/{DRIVER_ERROR_FILE}",
                           "\n\n".join(one_line.kept + extra))
            except OSError:  # the storage itself may be what failed
                pass
