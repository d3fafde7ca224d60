"""Reading YAML with positions, and refusing what a runbook never needs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crystal_runbook import errors
from crystal_runbook.engine import yamlsource


class TestPositions:
    def test_every_value_has_its_line_and_column(self) -> None:
        """Keys map to the line and column where they are written."""
        source = yamlsource.parse_text("a: 1\nsteps:\n  - id: x\n    uses: wait\n", path="f.yaml")
        assert source.where(("steps", 0, "uses")) == (4, 5)
        assert source.where(("a",)) == (1, 1)

    def test_missing_location_falls_back_to_the_nearest_parent(self) -> None:
        """A problem about a missing key points at the mapping that lacks it."""
        source = yamlsource.parse_text("steps:\n  - id: x\n", path="f.yaml")
        assert source.where(("steps", 0, "uses")) == (2, 5)


class TestRefusals:
    def test_duplicate_keys_are_reported_with_both_lines(self) -> None:
        """PyYAML keeps the last duplicate silently; we refuse it."""
        with pytest.raises(errors.RunbookInvalid) as info:
            yamlsource.parse_text("name: a\nname: b\n", path="f.yaml")
        assert "f.yaml:2:1: duplicate key 'name' (first at line 1)" in str(info.value)

    def test_malformed_yaml_names_the_position(self) -> None:
        """A syntax error carries the parser's line and column."""
        with pytest.raises(errors.RunbookInvalid) as info:
            yamlsource.parse_text("steps:\n  - id: [unclosed\n", path="f.yaml")
        problem = info.value.problems[0]
        assert (problem.path, problem.line) == ("f.yaml", 3)
        assert "invalid YAML" in problem.message

    def test_several_documents_are_refused(self) -> None:
        """One runbook per file."""
        with pytest.raises(errors.RunbookInvalid, match="several YAML documents"):
            yamlsource.parse_text("a: 1\n---\nb: 2\n", path="f.yaml")

    def test_billion_laughs_is_refused_quickly_without_expanding(self) -> None:
        """Nine levels of nine aliases would be 387 million strings; we stop at the budget."""
        lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
            lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
        started = time.monotonic()
        with pytest.raises(errors.RunbookInvalid, match="expands to more than"):
            yamlsource.parse_text("\n".join(lines), path="bomb.yaml")
        assert time.monotonic() - started < 2.0

    def test_large_file_is_refused_before_parsing(self, tmp_path: Path) -> None:
        """A 10 MB file is rejected by size, not parsed."""
        big = tmp_path / "big.yaml"
        big.write_text("a: " + "x" * (10 * 1024 * 1024) + "\n")
        started = time.monotonic()
        with pytest.raises(errors.RunbookInvalid, match="larger than 1024 KiB"):
            yamlsource.read_file(big)
        assert time.monotonic() - started < 1.0

    def test_binary_file_is_refused(self, tmp_path: Path) -> None:
        """Non-UTF-8 bytes get a clear message, not a traceback."""
        path = tmp_path / "bin.yaml"
        path.write_bytes(b"a: \xff\xfe\n")
        with pytest.raises(errors.RunbookInvalid, match="not UTF-8"):
            yamlsource.read_file(path)

    def test_small_aliases_still_work(self) -> None:
        """Anchors for shared `with:` blocks are fine within the budget."""
        source = yamlsource.parse_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", path="f")
        assert source.data["other"] == {"x": 1, "y": 2}
