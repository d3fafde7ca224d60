"""Decoding ``application/vnd.kubernetes.protobuf`` request bodies into the JSON form.

kubectl's typed commands (``kubectl create deployment``, ``create configmap``, ``create
secret``...) send their object as protobuf: the magic ``k8s\\x00`` and a ``runtime.Unknown``
envelope (``apiVersion``/``kind``, the raw message), as ``k8s.io/apimachinery``'s protobuf
serializer writes it. The field numbers, JSON names and types come from the generated
``data/protobuf-messages.json.gz`` (``protobuf_gen`` reads them from kubectl's own binary),
loaded on first use. Values follow the types' JSON rules: ``omitempty`` zero values are
dropped, ``[]byte`` becomes base64, ``Time`` RFC 3339, ``IntOrString`` an int or a string,
``Quantity`` its string. Standard library only.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crystal_runbook.sandbox import apierrors

DATA = Path(__file__).with_name("data") / "protobuf-messages.json.gz"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

Obj = dict[str, Any]


class DecodeError(ValueError):
    """Bytes that are not a well-formed message of the expected type."""


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise DecodeError("truncated varint")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(number, wire type, value) of each field; length-delimited values as bytes."""
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 2:
            length, i = _varint(data, i)
            if i + length > len(data):
                raise DecodeError("truncated field")
            value, i = data[i : i + length], i + length
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _rfc3339(seconds: int, nanos: int, *, micro: bool) -> str | None:
    if seconds == 0 and nanos == 0:
        return None  # the zero Time marshals as null
    moment = datetime.fromtimestamp(seconds + nanos / 1e9, UTC)
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _zero(value: Any) -> bool:
    return value in (None, "", 0, False) or value in ([], {})


class Decoder:
    """Decodes messages with the generated layout (loaded once, on first use)."""

    def __init__(self, path: Path = DATA) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._layout: Obj | None = None

    @property
    def layout(self) -> Obj:
        with self._lock:
            if self._layout is None:
                self._layout = json.loads(gzip.decompress(self._path.read_bytes()))
            return self._layout

    def decode(self, body: bytes) -> Obj:
        """An envelope's object as a JSON-ready dict; ``DecodeError`` if it is not one."""
        if not body.startswith(MAGIC):
            raise DecodeError("the body does not start with the protobuf magic number")
        envelope = {n: v for n, _, v in _fields(body[len(MAGIC) :])}
        type_meta = {n: v for n, _, v in _fields(envelope.get(1, b""))}
        api_version = type_meta.get(1, b"").decode()
        kind = type_meta.get(2, b"").decode()
        root = self.layout["roots"].get(f"{api_version}/{kind}")
        if root is None:
            raise DecodeError(f"no protobuf decoding for {api_version or '?'}/{kind or '?'}")
        obj = self._message(root, envelope.get(2, b""))
        return {"apiVersion": api_version, "kind": kind, **obj}

    def _message(self, name: str, data: bytes) -> Obj:
        layout = self.layout["messages"].get(name)
        if layout is None:
            raise DecodeError(f"no layout for {name}")
        out: Obj = {}
        for number, wire, raw in _fields(data):
            field = layout.get(str(number))
            if field is None:
                continue  # unknown field numbers are skipped, as proto2 does
            key = field["json"]
            if "map" in field:
                entry = {n: v for n, _, v in _fields(raw)}
                k_type, v_type = field["map"]
                item_key = self._value(k_type, entry.get(1, b""), 2)
                item_value = self._value(v_type, entry.get(2, b""), 2 if 2 in entry else 0)
                out.setdefault(key, {})[str(item_key)] = item_value
            elif field.get("repeated"):
                values = out.setdefault(key, [])
                if wire == 2 and field["kind"] in ("int", "bool"):  # packed
                    i = 0
                    while i < len(raw):
                        item, i = _varint(raw, i)
                        values.append(self._value(field, item, 0))
                else:
                    values.append(self._value(field, raw, wire))
            else:
                out[key] = self._value(field, raw, wire)
        for field in layout.values():
            key = field["json"]
            if (
                key in out
                and field.get("omitempty")
                and not field.get("pointer")
                and field.get("kind") != "message"
                and _zero(out[key])
            ):
                del out[key]
        return out

    def _value(self, field: Obj, raw: Any, wire: int) -> Any:
        kind = field["kind"]
        if kind == "string":
            return raw.decode("utf-8") if isinstance(raw, bytes) else ""
        if kind == "bytes":
            return base64.b64encode(raw if isinstance(raw, bytes) else b"").decode()
        if kind == "int":
            return _signed(raw) if isinstance(raw, int) else 0
        if kind == "bool":
            return bool(raw)
        if kind == "double":
            return _double(raw)
        parts = {n: v for n, _, v in _fields(raw if isinstance(raw, bytes) else b"")}
        if kind in ("time", "microtime"):
            return _rfc3339(_signed(parts.get(1, 0)), parts.get(2, 0), micro=kind == "microtime")
        if kind == "duration":
            return f"{_signed(parts.get(1, 0)) / 1e9}s"
        if kind == "quantity":
            return parts.get(1, b"").decode()
        if kind == "intorstring":
            return parts.get(3, b"").decode() if parts.get(1, 0) == 1 else _signed(parts.get(2, 0))
        if kind == "raw":
            data = parts.get(1, b"")
            return json.loads(data) if data else None
        return self._message(field["type"], raw if isinstance(raw, bytes) else b"")


def _double(raw: Any) -> float:
    return float(struct.unpack("<d", raw)[0]) if isinstance(raw, bytes) and len(raw) == 8 else 0.0


DECODER = Decoder()


def decode_body(body: bytes) -> Obj:
    """A protobuf request body as the JSON object; 400 BadRequest if it cannot be read."""
    try:
        return DECODER.decode(body)
    except (DecodeError, UnicodeDecodeError, ValueError) as exc:
        raise apierrors.bad_request(
            f"the protobuf request body could not be decoded: {exc}"
        ) from exc
