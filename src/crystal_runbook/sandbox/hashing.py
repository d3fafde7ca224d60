"""Names and hashes the controllers derive from pod templates.

A Deployment's ReplicaSets are named ``<deployment>-<pod-template-hash>`` and rollback finds
the ReplicaSet of a revision by comparing templates with that label removed, so both the
hash and the comparison must ignore what does not change a template's meaning: empty
fields (``{}``, ``[]``, ``""``, ``null``) and the ``pod-template-hash`` label itself.
The hash is FNV-1a over a canonical JSON form, encoded with Kubernetes' "safe" alphabet
(no vowels, no digits that read as letters), as ``rand.SafeEncodeString`` does.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

HASH_LABEL = "pod-template-hash"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def prune_empty(value: Any) -> Any:
    """``value`` without empty maps, lists, strings and nulls, recursively.

    ``0`` and ``False`` are kept: they are values, not absence.
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            pruned = prune_empty(item)
            if pruned in (None, "", {}, []):
                continue
            out[key] = pruned
        return out
    if isinstance(value, list):
        return [prune_empty(item) for item in value]
    return value


def without_hash_label(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of a pod template whose labels lack ``pod-template-hash``."""
    metadata = dict(template.get("metadata") or {})
    labels = {k: v for k, v in (metadata.get("labels") or {}).items() if k != HASH_LABEL}
    metadata["labels"] = labels
    return {**template, "metadata": metadata}


def canonical(template: dict[str, Any]) -> str:
    """The form templates are hashed and compared in: no hash label, no empty fields."""
    return json.dumps(
        prune_empty(without_hash_label(template)), sort_keys=True, separators=(",", ":")
    )


def fnv32a(data: bytes) -> int:
    """32-bit FNV-1a, the hash Kubernetes uses for pod templates."""
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """Kubernetes' ``SafeEncodeString``: each character mapped into the safe alphabet."""
    return "".join(SAFE_ALPHABET[ord(ch) % len(SAFE_ALPHABET)] for ch in text)


def template_hash(template: dict[str, Any], collision_count: int = 0) -> str:
    """The ``pod-template-hash`` of a template (stable across processes and runs)."""
    data = canonical(template).encode()
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    return safe_encode(str(fnv32a(data)))


def equal_ignore_hash(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two pod templates are the same apart from the hash label and empty fields."""
    return canonical(a) == canonical(b)


def random_suffix(length: int = 5) -> str:
    """The random part of generated names (``maia-7b9c5f8d4c-x2k9p``)."""
    return "".join(secrets.choice(SAFE_ALPHABET) for _ in range(length))
