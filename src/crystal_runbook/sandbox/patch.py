"""The three PATCH flavours the API accepts: JSON patch, merge patch, strategic merge patch.

kubectl uses all three (``rollout undo`` sends a JSON patch, ``scale`` a merge patch,
``set image``/``set env``/``apply``/``rollout pause`` strategic merge patches), and the
Python client sends strategic merge for any dict body, so each must behave as Kubernetes'
does. Strategic merge needs to know, per field, which lists merge by a key (``containers``
by ``name``, container ``ports`` by ``containerPort``, ...) rather than being replaced: that
knowledge, normally compiled from Go struct tags, is the small table in ``list_merge_key``.

All functions are pure: they return a new document and never modify their inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

Json = Any


class PatchError(ValueError):
    """A patch that cannot be applied; the message says which operation or path failed."""


# --- RFC 6902 JSON patch --------------------------------------------------------------


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} must start with '/'")
    return [_unescape(t) for t in path[1:].split("/")]


def _index(container: list[Any], segment: str, *, for_add: bool) -> int:
    if segment == "-" and for_add:
        return len(container)
    if not segment.isdigit() or (len(segment) > 1 and segment.startswith("0")):
        raise PatchError(f"invalid array index {segment!r}")
    idx = int(segment)
    limit = len(container) if for_add else len(container) - 1
    if idx > limit:
        raise PatchError(f"array index {idx} out of range")
    return idx


def _parent(doc: Json, tokens: list[str], path: str) -> tuple[Json, str]:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"path {path!r} does not exist: missing {token!r}")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, for_add=False)]
        else:
            raise PatchError(f"path {path!r} goes through a value that is not an object or array")
    return current, tokens[-1]


def _get(doc: Json, path: str) -> Json:
    current = doc
    for token in _pointer(path):
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"path {path!r} does not exist")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, for_add=False)]
        else:
            raise PatchError(f"path {path!r} does not exist")
    return current


def _add(doc: Json, path: str, value: Json) -> Json:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent, last = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise PatchError(f"cannot add at {path!r}: parent is not an object or array")
    return doc


def _remove(doc: Json, path: str) -> tuple[Json, Json]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"cannot remove {path!r}: it does not exist")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, for_add=False))
    raise PatchError(f"cannot remove {path!r}: parent is not an object or array")


def json_patch(doc: Json, operations: Json) -> Json:
    """Apply an RFC 6902 patch (a list of operations) and return the new document."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(doc)
    for n, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"operation {n} needs 'op' and 'path'")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"operation {n} ({kind} {path}) needs a 'value'")
        if kind == "add":
            result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            result, _ = _remove(result, path)
        elif kind == "replace":
            if _pointer(path):
                _get(result, path)  # must exist
                result, _ = _remove(result, path)
            result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise PatchError(f"operation {n} ({kind}) needs 'from'")
            if kind == "move":
                result, value = _remove(result, source)
            else:
                value = copy.deepcopy(_get(result, source))
            result = _add(result, path, value)
        elif kind == "test":
            if _get(result, path) != op["value"]:
                raise PatchError(f"test operation {n} failed at {path!r}")
        else:
            raise PatchError(f"unknown operation {kind!r} in operation {n}")
    return result


# --- RFC 7386 merge patch -------------------------------------------------------------


def merge_patch(target: Json, patch: Json) -> Json:
    """Apply an RFC 7386 merge patch: objects merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- strategic merge patch ------------------------------------------------------------

_CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})
_BY_NAME = frozenset(
    {
        "containers",
        "initContainers",
        "ephemeralContainers",
        "env",
        "volumes",
        "imagePullSecrets",
        "resourceClaims",
        "schedulingGates",
    }
)


def list_merge_key(path: Sequence[str]) -> str | None:
    """How a list at ``path`` (field names, no indexes) merges: its merge key, ``"$primitive"``
    for a primitive list merged as a set, or ``None`` for lists that are replaced whole."""
    if not path:
        return None
    name = path[-1]
    parents = set(path[:-1])
    if name in _BY_NAME:
        return "name"
    if name == "ports":
        if parents & _CONTAINER_LISTS:
            return "containerPort"
        return "port"  # Service spec.ports
    if name == "volumeMounts":
        return "mountPath"
    if name == "volumeDevices":
        return "devicePath"
    if name == "conditions":
        return "type"
    if name == "ownerReferences":
        return "uid"
    if name in ("hostAliases", "podIPs", "hostIPs"):
        return "ip"
    if name == "topologySpreadConstraints":
        return "topologyKey"
    if name == "finalizers" and tuple(path) == ("metadata", "finalizers"):
        return "$primitive"
    return None


def strategic_merge(original: Json, patch: Json, path: Sequence[str] = ()) -> Json:
    """Apply a strategic merge patch to ``original`` and return the result.

    Handles ``null`` (delete), ``$patch: replace|delete|merge``, ``$retainKeys``,
    ``$setElementOrder/<list>``, ``$deleteFromPrimitiveList/<list>`` and lists merged by key.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive not in (None, "merge"):
        raise PatchError(f"unknown $patch directive {directive!r} at {'.'.join(path) or '.'}")
    result: dict[str, Any] = copy.deepcopy(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    deletions: dict[str, list[Any]] = {}
    retain: list[str] | None = None
    for key, value in patch.items():
        if key == "$patch":
            continue
        if key == "$retainKeys":
            if not isinstance(value, list):
                raise PatchError("$retainKeys must be a list")
            retain = [str(v) for v in value]
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = list(value or [])
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            deletions[key.split("/", 1)[1]] = list(value or [])
            continue
        child_path = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value, child_path)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, child_path)
        else:
            result[key] = copy.deepcopy(value)
    for key, values in deletions.items():
        if isinstance(result.get(key), list):
            result[key] = [v for v in result[key] if v not in values]
    for key, order in orders.items():
        if isinstance(result.get(key), list):
            result[key] = _reorder(result[key], order, list_merge_key((*path, key)))
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(original: Json, patch: list[Any], path: Sequence[str]) -> list[Any]:
    merge_key = list_merge_key(path)
    original_list = original if isinstance(original, list) else []
    if merge_key is None:
        return [_strip_directives(item) for item in patch]
    if merge_key == "$primitive":
        out = list(original_list)
        for item in patch:
            if item not in out:
                out.append(item)
        return out
    if any(isinstance(i, dict) and i.get("$patch") == "replace" and len(i) == 1 for i in patch):
        return [_strip_directives(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    out = copy.deepcopy(original_list)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(
                f"list {'.'.join(path)} merges by {merge_key!r}: items must be objects"
            )
        if merge_key not in item:
            raise PatchError(
                f"item of {'.'.join(path)} is missing its merge key {merge_key!r}: {item!r}"
            )
        key_value = item[merge_key]
        found = next(
            (
                i
                for i, cur in enumerate(out)
                if isinstance(cur, dict) and cur.get(merge_key) == key_value
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if found is not None:
                out.pop(found)
            continue
        if found is None:
            out.append(_strip_directives(strategic_merge({}, item, path)))
        else:
            out[found] = strategic_merge(out[found], item, path)
    return out


def _reorder(items: list[Any], order: list[Any], merge_key: str | None) -> list[Any]:
    def key_of(item: Any) -> Any:
        if merge_key and merge_key != "$primitive" and isinstance(item, dict):
            return item.get(merge_key)
        return item

    wanted = [key_of(o) for o in order]
    ranked = sorted(
        enumerate(items),
        key=lambda pair: (
            wanted.index(key_of(pair[1])) if key_of(pair[1]) in wanted else len(wanted),
            pair[0],
        ),
    )
    return [item for _, item in ranked]


def _strip_directives(value: Json) -> Json:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value
