"""The secret scan (issue 16, item 3): no planted secret in what the tests made the product
write, and no real-looking secret in the repository.

Two scans:

- ``outputs(root, planted)``: every file the product wrote under a test run's temporary
  directory (journals, JSON logs and `*.log` files, incident documents, outbox entries) is
  searched for each secret the tests planted: the fake tokens and passwords in the tests'
  source (string literals on lines marked ``noqa: S105``/``S106``, the marker ruff asks
  every hard-coded secret to carry) and the random ones the chaos suite generated
  (``plant``). SQLite journals are read row by row, so a value split across pages is found.
- ``repository(repo)``: every tracked text file outside the tests (``tests/`` and
  ``crystal_runbook.testing``, where the fakes live) is searched for secret shapes (Slack,
  AWS, GitHub, GitLab tokens, private keys) that are not one of the tests' marked fakes.

``tests/conftest.py`` runs the first at the end of every pytest session (a finding fails the
session); `scripts/test.sh` runs the second (``python -m tests.secretscan --repo``).
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MIN_LENGTH = 8
_MARKED = re.compile(rf"[\"']([^\"'\n]{{{MIN_LENGTH},}})[\"']\)?,?\s*#\s*noqa:\s*S10[56]")
_SHAPES = (
    re.compile(r"xox[abposr]-[0-9A-Za-z-]{8,}"),
    re.compile(r"xapp-[0-9A-Za-z-]{8,}"),
    re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s+[A-Za-z0-9+/=]{40,}"),
    re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b"),
    re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
)
_planted: set[str] = set()
FAKES_LIVE_IN = ("tests/", "src/crystal_runbook/testing/")


def plant(*values: str) -> None:
    """Remember secrets a test generated at run time (scanned for at the session's end)."""
    _planted.update(v for v in values if len(v) >= MIN_LENGTH)


def marked_fakes(roots: Iterable[Path] = (REPO / "tests", REPO / "src/crystal_runbook/testing")) -> set[str]:
    """The hard-coded fake secrets of the tests (literals on ``noqa: S105/S106`` lines)."""
    found: set[str] = set()
    for root in roots:
        for path in root.rglob("*.py"):
            found.update(_MARKED.findall(path.read_text(encoding="utf-8", errors="replace")))
    return {value for value in found if value.strip() and " " not in value}


def generated() -> set[str]:
    """The secrets this process's tests generated at run time (``plant``)."""
    return set(_planted)


def planted() -> set[str]:
    return marked_fakes() | _planted


def _is_output(path: Path) -> bool:
    """A file the product writes: its journal, logs, incident documents, outbox entries."""
    parts = set(path.parts)
    return (
        path.name.startswith("journal.db")
        or path.suffix in {".log", ".jsonl"}
        or "outbox" in parts
        or "incidents" in parts
    )


def _texts(path: Path) -> Iterator[str]:
    if path.name == "journal.db":
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
            try:
                tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
                for table in tables:
                    for row in conn.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - names from sqlite_master  # nosec B608
                        yield " ".join(str(v) for v in row if v is not None)
            finally:
                conn.close()
        except sqlite3.Error:
            pass  # a test's deliberately corrupted journal: its bytes below
    try:
        yield path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return


def outputs(root: Path, secrets: Iterable[str]) -> list[str]:
    """``path: which secret`` for every product output under ``root`` holding one."""
    wanted = sorted(set(secrets), key=len, reverse=True)
    findings = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and _is_output(p)):
        for text in _texts(path):
            hit = next((s for s in wanted if s in text), None)
            if hit is not None:
                findings.append(f"{path}: holds the planted secret {hit[:6]}…")
                break
    return findings


def repository(repo: Path = REPO) -> list[str]:
    """``file:line: shape`` for every secret-shaped string in a tracked file that is not a
    marked fake of the tests."""
    fakes = marked_fakes()
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.decode().split("\0")
    findings = []
    for name in filter(None, listed):
        if name.startswith(FAKES_LIVE_IN):
            continue
        path = repo / name
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # binary or gone
        for number, line in enumerate(text.splitlines(), 1):
            for shape in _SHAPES:
                for match in shape.finditer(line):
                    value = match.group(0)
                    if any(value in fake or fake in value for fake in fakes):
                        continue
                    if re.search(r"noqa:\s*S10[56]|nosec", line):
                        continue  # a fake, marked as such where it stands
                    findings.append(f"{name}:{number}: {value[:12]}…")
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", action="store_true", help="scan the tracked files")
    parser.add_argument("--outputs", type=Path, nargs="*", default=[],
                        help="scan the product outputs under these directories")
    args = parser.parse_args(argv)
    findings = repository() if args.repo else []
    for root in args.outputs:
        findings += outputs(root, planted())
    for finding in findings:
        print(f"secret scan: {finding}", file=sys.stderr)
    if not findings:
        what = "the repository" if args.repo else ""
        print(f"secret scan: nothing found in {what or 'the outputs'}", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
