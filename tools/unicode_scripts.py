"""Prints the table of ``src/gophermart/domain/scripts.py`` from Unicode's Scripts.txt.

    python tools/unicode_scripts.py /usr/share/unicode/Scripts.txt   # Debian: unicode-data

Ranges of one script are merged across gaps that hold no assigned code point (a gap
listed under no script at all), and Common and Inherited are left out: they mix with
any script. One line per script (wrapped), code points in hexadecimal.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

NEUTRAL = {"Common", "Inherited"}
LINE = re.compile(r"^([0-9A-F]+)(?:\.\.([0-9A-F]+))?\s*;\s*(\w+)")


def ranges(text: str) -> list[tuple[int, int, str]]:
    listed = []
    for line in text.splitlines():
        if m := LINE.match(line):
            start = int(m[1], 16)
            listed.append((start, int(m[2] or m[1], 16), m[3]))
    listed.sort()
    merged: list[tuple[int, int, str]] = []
    for start, end, script in listed:
        if merged and merged[-1][2] == script:
            merged[-1] = (merged[-1][0], end, script)
        else:
            merged.append((start, end, script))
    return [r for r in merged if r[2] not in NEUTRAL]


def main() -> None:
    source = Path(sys.argv[1])
    version = source.read_text().splitlines()[0].lstrip("# ").strip()
    by_script: dict[str, list[str]] = defaultdict(list)
    for start, end, script in ranges(source.read_text()):
        by_script[script].append(f"{start:X}" if start == end else f"{start:X}-{end:X}")
    print(f"# {version}")
    for script in sorted(by_script):
        body = " ".join(by_script[script])
        for line in textwrap.wrap(body, 88 - len(script)):
            print(f"{script} {line}")


if __name__ == "__main__":
    main()
