"""Rewrite docs/design.md's table of config paths from ``tune-ptycho paths --markdown``.

    python docs/gen_paths.py          # rewrite the table in place
    python docs/gen_paths.py --check  # exit 1 if the table is out of date

The table sits between :data:`BEGIN` and :data:`END`; tests/test_docs_paths.py fails while the two
differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

DESIGN = Path(__file__).resolve().parent / "design.md"
BEGIN = "<!-- paths:begin (generated: python docs/gen_paths.py) -->"
END = "<!-- paths:end -->"


def render(doc: str) -> str:
    """``doc`` with the text between the markers replaced by the current listing."""
    from tune_ptycho.cli import paths_markdown

    head, begin, rest = doc.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{DESIGN} lacks the markers {BEGIN!r} ... {END!r}")
    return f"{head}{BEGIN}\n{paths_markdown()}{END}{tail}"


def main(argv: list[str]) -> int:
    doc = DESIGN.read_text()
    new = render(doc)
    if "--check" in argv:
        if new != doc:
            print(f"{DESIGN}: the config-path table is out of date; run python docs/gen_paths.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != doc:
        DESIGN.write_text(new)
        print(f"rewrote the config-path table in {DESIGN}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
