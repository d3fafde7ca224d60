"""Generic REST semantics over the store: get, list, create, update, patch, delete, watch.

This is the part of the API server that is the same for every resource type: preconditions
and optimistic concurrency (409 on a stale resourceVersion), no-op updates that do not bump
the resourceVersion, the spec/status split of types with a status subresource, ``dryRun``,
``generateName``, deletion with finalizers and ownerReference propagation
(Background/Foreground/Orphan), pagination with ``limit``/``continue``, and watch streams
(``resourceVersion``, ``timeoutSeconds``, bookmarks, and WatchList's initial events ending
in a bookmark annotated ``k8s.io/initial-events-end``). The ``/scale`` subresource lives here
too because it is a view of the object's own fields. Everything raises ``ApiError``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import itertools
import json
from collections.abc import Callable
from typing import Any

from crystal_runbook.sandbox import (
    admission,
    apierrors,
    deletion,
    hashing,
    patch,
    resources,
    selectors,
    store,
    watch,
)

Obj = dict[str, Any]

FOREGROUND = deletion.FOREGROUND
DeleteOptions = deletion.DeleteOptions
DEFAULT_WATCH_SECONDS = 1800.0

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}


def parse_json(body: bytes, what: str = "request body") -> Any:
    """Decode a JSON body, or raise 400 saying what could not be read."""
    try:
        return json.loads(body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise apierrors.bad_request(f"the {what} is not valid JSON: {exc}") from exc


class Rest:
    """CRUD and watch over one store; each method takes a resolved resource type."""

    def __init__(self, st: store.Store) -> None:
        self.store = st
        self.deleter = deletion.Deleter(st)
        self._ips = itertools.count(10)

    # helpers -------------------------------------------------------------------------

    def _require(self, res: resources.Resource, ns: str, name: str) -> store.Stored:
        stored = self.store.get(res, ns, name)
        if stored is None:
            raise apierrors.not_found(res, name)
        return stored

    def _require_namespace(self, res: resources.Resource, ns: str) -> None:
        if res.namespaced and self.store.get(resources.NAMESPACES, "", ns) is None:
            raise apierrors.not_found(resources.NAMESPACES, ns)

    def _cluster_ip(self) -> str:
        return str(ipaddress.ip_address("10.96.0.0") + next(self._ips))

    # reads ---------------------------------------------------------------------------

    def get(self, res: resources.Resource, ns: str, name: str) -> store.Stored:
        return self._require(res, ns, name)

    def select(
        self, res: resources.Resource, ns: str | None, query: dict[str, str]
    ) -> tuple[list[store.Stored], int, str]:
        """Matching objects, the list resourceVersion and the ``continue`` token."""
        labels, fields = _selectors(res, query)
        items, rv = self.store.objects(res, ns or None)
        start_after: tuple[str, str] | None = None
        token = query.get("continue")
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                start_after = (str(decoded["ns"]), str(decoded["name"]))
                rv = int(decoded["rv"])
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise apierrors.bad_request(f"invalid continue token {token!r}") from exc
        selected = [
            s
            for s in items
            if (start_after is None or (s.namespace, s.name) > start_after)
            and labels.matches(s.obj["metadata"].get("labels"))
            and fields.matches(s.obj)
        ]
        limit = int(query.get("limit") or 0)
        if limit > 0 and len(selected) > limit:
            last = selected[limit - 1]
            next_token = base64.urlsafe_b64encode(
                json.dumps({"rv": rv, "ns": last.namespace, "name": last.name}).encode()
            ).decode()
            return selected[:limit], rv, next_token
        return selected, rv, ""

    # writes --------------------------------------------------------------------------

    def create(
        self,
        res: resources.Resource,
        ns: str,
        body: Any,
        *,
        dry_run: bool = False,
        field_mode: str | None = None,
        warnings: list[str] | None = None,
    ) -> store.Stored:
        """POST to a collection (unknown fields handled as ``field_mode`` says)."""
        if not isinstance(body, dict):
            raise apierrors.bad_request("the request body must be a JSON object")
        obj = copy.deepcopy(body)
        _check_kind(res, obj)
        _check_fields(res, obj, field_mode, warnings)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise apierrors.bad_request("metadata must be an object")
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise apierrors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise apierrors.bad_request(
                "resourceVersion should not be set on objects to be created"
            )
        for key in ("uid", "creationTimestamp", "deletionTimestamp", "generation", "managedFields"):
            meta.pop(key, None)
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        with self.store.lock:
            self._require_namespace(res, ns)
            if not meta.get("name") and meta.get("generateName"):
                for _ in range(8):
                    candidate = f"{meta['generateName']}{hashing.random_suffix()}"
                    if self.store.get(res, ns if res.namespaced else "", candidate) is None:
                        meta["name"] = candidate
                        break
            status = admission.initial_status(res)
            if status is not None:
                obj["status"] = status
            cluster_ip = self._cluster_ip() if res is resources.SERVICES else None
            admission.default(res, obj, cluster_ip=cluster_ip, creating=True)
            admission.validate(res, obj)
            if self.store.get(res, ns if res.namespaced else "", meta["name"]) is not None:
                raise apierrors.already_exists(res, meta["name"])
            return self.store.create(res, obj, dry_run=dry_run)

    def update(
        self,
        res: resources.Resource,
        ns: str,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_mode: str | None = None,
        warnings: list[str] | None = None,
    ) -> store.Stored:
        """PUT an object (or its ``status``): 409 if the resourceVersion is stale."""
        if not isinstance(body, dict):
            raise apierrors.bad_request("the request body must be a JSON object")
        obj = copy.deepcopy(body)
        _check_kind(res, obj)
        _check_fields(res, obj, field_mode, warnings)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise apierrors.bad_request("metadata must be an object")
        if meta.get("name") not in (None, name):
            raise apierrors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the "
                f"URL ({name})"
            )
        if res.namespaced and meta.get("namespace") not in (None, "", ns):
            raise apierrors.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        with self.store.lock:
            current = self._require(res, ns, name)
            want_rv = meta.get("resourceVersion")
            if want_rv and want_rv != current.obj["metadata"]["resourceVersion"]:
                raise apierrors.conflict(res, name)
            return self._commit_update(res, current, obj, subresource=subresource, dry_run=dry_run)

    def patch(
        self,
        res: resources.Resource,
        ns: str,
        name: str,
        body: bytes,
        content_type: str,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_mode: str | None = None,
        warnings: list[str] | None = None,
    ) -> store.Stored:
        """PATCH an object (or its ``status``) with a JSON, merge or strategic merge patch."""
        kind = PATCH_TYPES.get(content_type.split(";", 1)[0].strip().lower())
        if kind is None:
            raise apierrors.unsupported_media_type(content_type)
        document = parse_json(body, "patch")
        with self.store.lock:
            current = self._require(res, ns, name)
            patched = apply_patch(kind, current.copy(), document)
            if isinstance(patched, dict):
                _check_fields(res, patched, field_mode, warnings)
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise apierrors.bad_request("the patch removed the object's metadata")
            if patched["metadata"].get("name") != name:
                raise apierrors.bad_request("the patch may not change metadata.name")
            want_rv = patched["metadata"].get("resourceVersion")
            if want_rv and want_rv != current.obj["metadata"]["resourceVersion"]:
                raise apierrors.conflict(res, name)
            return self._commit_update(
                res, current, patched, subresource=subresource, dry_run=dry_run
            )

    def _commit_update(
        self,
        res: resources.Resource,
        current: store.Stored,
        obj: Obj,
        *,
        subresource: str | None,
        dry_run: bool,
    ) -> store.Stored:
        cur = current.obj
        if subresource == "status":
            new = copy.deepcopy(cur)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
        else:
            new = obj
            new["apiVersion"], new["kind"] = res.api_version, res.kind
            meta = new["metadata"]
            if res.namespaced:
                meta["namespace"] = cur["metadata"]["namespace"]
            for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                if key in cur["metadata"]:
                    meta[key] = cur["metadata"][key]
                else:
                    meta.pop(key, None)
            meta.pop("generation", None)
            if res.status_subresource:
                if "status" in cur:
                    new["status"] = copy.deepcopy(cur["status"])
                else:
                    new.pop("status", None)
            admission.default(res, new)
            admission.validate(res, new, old=cur)
        new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
        if res.generation and "generation" in cur["metadata"]:
            gen = cur["metadata"]["generation"]
            new["metadata"]["generation"] = gen + 1 if new.get("spec") != cur.get("spec") else gen
        if new == cur:
            return current  # no-op: no new resourceVersion, no watch event
        meta = new["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not meta.get("deletionGracePeriodSeconds")
        ):
            # ShouldDeleteDuringUpdate: the last finalizer is gone and no grace period runs
            if dry_run:
                return store.Stored(new, store.dumps(new), current.rv)
            return self.store.delete(res, current.namespace, current.name)
        return self.store.replace(res, new, dry_run=dry_run)

    def delete(
        self, res: resources.Resource, ns: str, name: str, options: deletion.DeleteOptions
    ) -> tuple[store.Stored, bool]:
        """DELETE an object; returns it and whether it is gone (False while it terminates)."""
        return self.deleter.delete(res, ns, name, options)

    def delete_collection(
        self,
        res: resources.Resource,
        ns: str | None,
        query: dict[str, str],
        options: deletion.DeleteOptions,
    ) -> list[store.Stored]:
        """DELETE on a collection: every object the selectors match."""
        with self.store.lock:
            items, _, _ = self.select(res, ns, {k: v for k, v in query.items() if k != "limit"})
            return [self.delete(res, s.namespace, s.name, options)[0] for s in items]

    # scale ---------------------------------------------------------------------------

    def scale_of(self, res: resources.Resource, stored: store.Stored) -> Obj:
        """The autoscaling/v1 Scale view of a Deployment or ReplicaSet."""
        obj = stored.obj
        meta = obj["metadata"]
        selector = (obj.get("spec") or {}).get("selector")
        try:
            selector_text = str(selectors.from_structured(selector))
        except selectors.SelectorError:
            selector_text = ""
        status: Obj = {"replicas": int((obj.get("status") or {}).get("replicas") or 0)}
        if selector_text:
            status["selector"] = selector_text
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": int((obj.get("spec") or {}).get("replicas") or 0)},
            "status": status,
        }

    def update_scale(
        self,
        res: resources.Resource,
        ns: str,
        name: str,
        *,
        body: bytes,
        content_type: str | None,
        dry_run: bool = False,
    ) -> store.Stored:
        """PUT (``content_type`` None) or PATCH the Scale; writes ``spec.replicas`` through."""
        with self.store.lock:
            current = self._require(res, ns, name)
            scale = self.scale_of(res, current)
            if content_type is None:
                new_scale = parse_json(body, "Scale")
                if not isinstance(new_scale, dict):
                    raise apierrors.bad_request("the Scale must be a JSON object")
            else:
                kind = PATCH_TYPES.get(content_type.split(";", 1)[0].strip().lower())
                if kind is None:
                    raise apierrors.unsupported_media_type(content_type)
                new_scale = apply_patch(kind, scale, parse_json(body, "patch"))
            want_rv = ((new_scale.get("metadata") or {}).get("resourceVersion")) or None
            if want_rv and want_rv != current.obj["metadata"]["resourceVersion"]:
                raise apierrors.conflict(res, name)
            replicas = (new_scale.get("spec") or {}).get("replicas", 0)
            problem = admission.replicas_problem(replicas)
            if problem is not None:
                raise apierrors.invalid(
                    resources.Resource("autoscaling", "v1", "scale", "scale", "Scale", True),
                    name,
                    [("FieldValueInvalid", "spec.replicas", problem)],
                )
            new = current.copy()
            new["spec"]["replicas"] = replicas
            return self._commit_update(res, current, new, subresource=None, dry_run=dry_run)

    # watch ---------------------------------------------------------------------------

    def watch(
        self,
        res: resources.Resource,
        ns: str | None,
        query: dict[str, str],
        *,
        encode: watch.Encoder | None = None,
        client_gone: Callable[[], bool] = lambda: False,
    ) -> watch.WatchStream:
        """A watch stream: newline-delimited ``{"type": ..., "object": ...}`` events.

        Validates the request now (errors become HTTP errors) and returns the iterator that
        streams; it ends on ``timeoutSeconds``, on server stop or when the client goes away.
        """
        labels, fields = _selectors(res, query)
        timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        send_initial = query.get("sendInitialEvents") in ("true", "1")
        rv_text = query.get("resourceVersion") or ""
        if send_initial and not bookmarks:
            raise apierrors.invalid(
                res,
                "",
                [
                    (
                        "FieldValueForbidden",
                        "sendInitialEvents",
                        "Forbidden: sendInitialEvents is forbidden for watch unless "
                        "allowWatchBookmarks is set",
                    )
                ],
            )
        initial: list[store.Stored] = []
        with self.store.lock:
            if send_initial or rv_text in ("", "0"):
                selector_query: dict[str, str] = {
                    k: query[k] for k in ("labelSelector", "fieldSelector") if k in query
                }
                initial, start_rv, _ = self.select(res, ns, selector_query)
            else:
                try:
                    start_rv = int(rv_text)
                except ValueError as exc:
                    raise apierrors.bad_request(f"invalid resourceVersion {rv_text!r}") from exc
        return watch.WatchStream(
            self.store,
            res,
            namespace=ns,
            labels=labels,
            fields=fields,
            initial=initial,
            start_rv=start_rv,
            initial_events_end=send_initial,
            timeout=timeout,
            encode=encode,
            client_gone=client_gone,
        )


def apply_patch(kind: str, current: Obj, document: Any) -> Any:
    """Apply a patch of ``kind`` (json, merge, strategic); bad patches become 422/400."""
    try:
        if kind == "json":
            return patch.json_patch(current, document)
        if not isinstance(document, dict):
            raise apierrors.bad_request("a merge patch must be a JSON object")
        if kind == "merge":
            return patch.merge_patch(current, document)
        return patch.strategic_merge(current, document)
    except patch.PatchError as exc:
        raise apierrors.ApiError(422, "Invalid", f"the patch could not be applied: {exc}") from exc


def _check_fields(
    res: resources.Resource, obj: Obj, mode: str | None, warnings: list[str] | None
) -> None:
    """Unknown fields of a request's object (``schema``, loaded on the first write)."""
    if mode is None:
        return  # the sandbox's own writes (the seed)
    from crystal_runbook.sandbox import schema

    schema.check_fields(res, obj, mode, warnings)


def _check_kind(res: resources.Resource, obj: Obj) -> None:
    kind, version = obj.get("kind"), obj.get("apiVersion")
    if kind and kind != res.kind:
        raise apierrors.bad_request(
            f"the kind of the object ({kind}) does not match the resource ({res.kind})"
        )
    if version and version != res.api_version:
        raise apierrors.bad_request(
            f"the API version in the data ({version}) does not match the expected API version "
            f"({res.api_version})"
        )


def _selectors(
    res: resources.Resource, query: dict[str, str]
) -> tuple[selectors.LabelSelector, selectors.FieldSelector]:
    try:
        labels = selectors.parse_labels(query.get("labelSelector"))
        fields = selectors.parse_fields(query.get("fieldSelector"))
    except selectors.SelectorError as exc:
        raise apierrors.bad_request(f"unable to parse requirement: {exc}") from exc
    if fields.empty:
        return labels, fields
    from crystal_runbook.sandbox import fieldlabels

    try:
        # handlers.ListResource: a label the kind does not support is a 400 BadRequest
        return labels, fieldlabels.bind(res, fields)
    except fieldlabels.UnsupportedLabel as exc:
        raise apierrors.bad_request(str(exc)) from exc
