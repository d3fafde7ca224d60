"""Template rendering has resource limits (issue 17, point 5): a loop, a string or a number
that would hang `plan` or eat gigabytes stops at once with a clear error at its place."""

from __future__ import annotations

import time

import pytest

from crystal_runbook.engine import templating

HOSTILE_TEMPLATES = [
    ("a billion-item range", "{% for i in range(10**9) %}{% endfor %}1s"),
    (
        "nested loops",
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    ),
    (
        "triple loops",
        "{% for a in range(500) %}{% for b in range(500) %}{% for c in range(500) %}x{% endfor %}{% endfor %}{% endfor %}",
    ),
    ("a gigabyte string", "{{ ('a' * 10**9)|length }}"),
    ("a long list", "{{ ([1] * 10**8)|length }}"),
    ("a huge power", "{{ 2 ** 100000000 }}"),
    ("a padded string", "{{ 'a'|center(10**9) }}"),
    ("a wide format", "{{ '%*d'|format(10**9, 1) }}"),
    ("an output too long", "{% for i in range(90000) %}{{ 'abcdefghijklm' }}{% endfor %}"),
]


class TestLimits:
    """Each hostile template fails fast with a RenderError naming the limit."""

    @pytest.mark.parametrize(
        ("name", "template"), HOSTILE_TEMPLATES, ids=[n for n, _ in HOSTILE_TEMPLATES]
    )
    def test_stops_at_once(self, name: str, template: str) -> None:
        """Under a second, no MemoryError, a message saying what the limit is."""
        started = time.monotonic()
        with pytest.raises(templating.RenderError) as caught:
            templating.render({"seconds": template}, {}, ("steps", 0, "with"))
        assert time.monotonic() - started < 2.0
        assert caught.value.loc == ("steps", 0, "with", "seconds")
        assert "limit" in caught.value.message or "too" in caught.value.message

    def test_ordinary_templates_still_render(self) -> None:
        """Small loops, repetition and arithmetic are fine."""
        rendered = templating.render(
            "{% for i in range(3) %}{{ i }}{% endfor %}-{{ '=' * 5 }}-{{ 2 ** 10 }}", {}
        )
        assert rendered == "012-=====-1024"
