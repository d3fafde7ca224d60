"""Pod template hashing and comparison."""

from __future__ import annotations

from crystal_runbook.sandbox import hashing

TEMPLATE = {
    "metadata": {"labels": {"app": "maia"}},
    "spec": {
        "containers": [{"name": "maia", "image": "maia:1", "resources": {}}],
        "securityContext": {},
    },
}


class TestTemplateHash:
    """The pod-template-hash and the comparison rollback relies on."""

    def test_fnv32a_known_values(self) -> None:
        """FNV-1a 32-bit reference values."""
        assert hashing.fnv32a(b"") == 0x811C9DC5
        assert hashing.fnv32a(b"a") == 0xE40C292C
        assert hashing.fnv32a(b"foobar") == 0xBF9CF968

    def test_hash_ignores_empty_fields_and_its_own_label(self) -> None:
        """Empty maps and the pod-template-hash label do not change the hash."""
        bare = {
            "metadata": {"labels": {"app": "maia"}},
            "spec": {"containers": [{"name": "maia", "image": "maia:1"}]},
        }
        labelled = {**TEMPLATE, "metadata": {"labels": {"app": "maia", "pod-template-hash": "abc"}}}
        assert (
            hashing.template_hash(TEMPLATE)
            == hashing.template_hash(bare)
            == hashing.template_hash(labelled)
        )
        assert hashing.equal_ignore_hash(TEMPLATE, labelled)

    def test_hash_changes_with_content_and_collisions(self) -> None:
        """A different image or a collision count gives a different hash."""
        other = {**TEMPLATE, "spec": {"containers": [{"name": "maia", "image": "maia:2"}]}}
        assert hashing.template_hash(TEMPLATE) != hashing.template_hash(other)
        assert hashing.template_hash(TEMPLATE) != hashing.template_hash(TEMPLATE, 1)
        assert not hashing.equal_ignore_hash(TEMPLATE, other)

    def test_safe_alphabet(self) -> None:
        """Hashes and suffixes use only Kubernetes' safe characters."""
        for text in (hashing.template_hash(TEMPLATE), hashing.random_suffix()):
            assert set(text) <= set(hashing.SAFE_ALPHABET)
        assert len(hashing.random_suffix()) == 5
        assert hashing.safe_encode("0123456789") == "456789bcdf"  # digits as in real hashes
