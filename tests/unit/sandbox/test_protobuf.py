"""Protobuf bodies: the committed layout is kubectl's, and a message decodes to its JSON."""

from __future__ import annotations

from crystal_runbook.sandbox import protobuf, protobuf_gen


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (test-side encoder)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


def varint_field(number: int, value: int) -> bytes:
    return bytes([number << 3, value])


class TestLayout:
    """Regenerate with `python -m crystal_runbook.sandbox.protobuf_gen` when this fails."""

    def test_committed_file_is_read_from_this_kubectl(self) -> None:
        """data/protobuf-messages.json.gz equals a fresh read of the venv's kubectl binary."""
        fresh = protobuf_gen.render(
            protobuf_gen.build(protobuf_gen.GoBinary(protobuf_gen.kubectl_path()))
        )
        assert protobuf_gen.OUTPUT.read_bytes() == fresh

    def test_known_field_numbers(self) -> None:
        """Spot checks against k8s.io/api's tags: DeploymentSpec.replicas is 1, paused is 7."""
        layout = protobuf.Decoder().layout["messages"]
        spec = layout["k8s.io/api/apps/v1.DeploymentSpec"]
        assert (spec["1"]["json"], spec["7"]["json"], spec["9"]["json"]) == (
            "replicas",
            "paused",
            "progressDeadlineSeconds",
        )
        assert spec["1"]["pointer"] is True


class TestDecode:
    """The envelope, nested messages, maps, bytes and zero values."""

    def test_configmap_and_secret(self) -> None:
        """A ConfigMap's data map and a Secret's bytes come out as JSON would carry them."""
        meta = field(1, b"flags")  # ObjectMeta.name
        entry = field(1, b"a") + field(2, b"1")
        configmap = field(1, meta) + field(2, entry)
        envelope = field(1, field(1, b"v1") + field(2, b"ConfigMap")) + field(2, configmap)
        assert protobuf.Decoder().decode(protobuf.MAGIC + envelope) == {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flags"},
            "data": {"a": "1"},
        }
        secret = field(1, field(1, b"s")) + field(2, field(1, b"k") + field(2, b"\x00\xff"))
        envelope = field(1, field(1, b"v1") + field(2, b"Secret")) + field(2, secret)
        decoded = protobuf.Decoder().decode(protobuf.MAGIC + envelope)
        assert decoded["data"] == {"k": "AP8="}

    def test_pointer_zero_is_kept_and_omitempty_zero_dropped(self) -> None:
        """replicas: 0 (a pointer) stays; minReadySeconds: 0 (omitempty int) goes."""
        spec = varint_field(1, 0) + varint_field(5, 0)
        deployment = field(1, field(1, b"d")) + field(2, spec)
        envelope = field(1, field(1, b"apps/v1") + field(2, b"Deployment")) + field(2, deployment)
        decoded = protobuf.Decoder().decode(protobuf.MAGIC + envelope)
        assert decoded["spec"] == {"replicas": 0}
