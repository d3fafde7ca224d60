"""Label and field selector parsing and matching."""

from __future__ import annotations

import pytest

from crystal_runbook.sandbox import selectors

LABELS = {"app": "maia", "tier": "web", "release": "5"}


class TestLabelSelectors:
    """The labels.Parse grammar."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", True),
            ("app=maia", True),
            ("app==maia", True),
            ("app!=maia", False),
            ("app in (maia, other)", True),
            ("app notin (maia)", False),
            ("tier", True),
            ("!tier", False),
            ("!missing", True),
            ("missing!=x", True),
            ("release>4,release<6", True),
            ("app=maia,tier in (db)", False),
            ("example.com/team=x", False),
        ],
    )
    def test_matching(self, text: str, expected: bool) -> None:
        """Each operator matches as Kubernetes defines it."""
        assert selectors.parse_labels(text).matches(LABELS) is expected

    @pytest.mark.parametrize("text", ["app in (a", "a b c", "Bad Key=1", "release>x", "a,,b"])
    def test_errors(self, text: str) -> None:
        """Malformed selectors raise SelectorError."""
        with pytest.raises(selectors.SelectorError):
            selectors.parse_labels(text)

    def test_structured_selector(self) -> None:
        """matchLabels and matchExpressions become requirements and print back as text."""
        selector = selectors.from_structured(
            {
                "matchLabels": {"app": "maia"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["web", "api"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            }
        )
        assert selector.matches(LABELS)
        assert str(selector) == "app=maia,tier in (api,web),!canary"
        assert selectors.parse_labels(str(selector)).matches(LABELS)


class TestFieldSelectors:
    """Dotted paths compared with = and !=."""

    def test_matching(self) -> None:
        """metadata.name, status.phase and negation."""
        pod = {"metadata": {"name": "p", "namespace": "crystal"}, "status": {"phase": "Running"}}
        assert selectors.parse_fields("metadata.name=p,status.phase==Running").matches(pod)
        assert not selectors.parse_fields("status.phase!=Running").matches(pod)
        assert selectors.parse_fields("spec.nodeName=").matches(pod)

    def test_errors(self) -> None:
        """A requirement without an operator or a field is refused."""
        with pytest.raises(selectors.SelectorError):
            selectors.parse_fields("metadata.name")
        with pytest.raises(selectors.SelectorError):
            selectors.parse_fields("=x")
