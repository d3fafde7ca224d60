"""Routing of API requests: which path is which resource, verb and representation.

Turns a parsed HTTP request into a call on ``rest`` (objects), ``logs`` (pod logs),
``proxy`` (the simulated service) or the discovery documents, and the result into a
response: JSON, a ``Table`` when kubectl asks for one, a chunked stream for watches and log
follows, or a ``Status`` for errors. It knows nothing of sockets (that is ``server``) and
nothing of how objects change (that is ``rest`` and the controllers).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from crystal_runbook.sandbox import (
    apierrors,
    logs,
    proxy,
    resources,
    rest,
    store,
    tables,
    watch,
)
from crystal_runbook.sandbox.kubelet import Kubelet

log = logging.getLogger("crystal_runbook.sandbox")

JSON = "application/json"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
VERSION = {
    "major": "1",
    "minor": "37",
    "emulationMajor": "1",
    "emulationMinor": "37",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "36",
    "gitVersion": "v1.37.0-crystal-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass
class Request:
    """An HTTP request as the API layer sees it."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes = b""
    client_gone: Callable[[], bool] = lambda: False

    def header(self, name: str) -> str:
        """A request header by case-insensitive name ("" when absent)."""
        return str(self.headers.get(name.lower()) or "")


@dataclass
class Response:
    """A full response (``body``) or a chunked stream (``stream``)."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None


def json_response(status: int, doc: Any, content_type: str = JSON) -> Response:
    return Response(status, store.dumps(doc), content_type)


def error_response(err: apierrors.ApiError) -> Response:
    return Response(err.code, store.dumps(err.status()), JSON, dict(err.headers))


def _wants_table(req: Request) -> bool:
    return "as=Table" in req.header("Accept")


@dataclass(frozen=True)
class Target:
    """What a resource path names."""

    res: resources.Resource
    namespace: str | None  # None: all namespaces (lists and watches only)
    name: str | None
    sub: str | None
    sub_path: str


class Api:
    """The request router of the sandbox API server."""

    def __init__(
        self,
        st: store.Store,
        kubelet: Kubelet,
        *,
        server_address: Callable[[], str],
        admin: Callable[[Request], Response | None] | None = None,
    ) -> None:
        self.store = st
        self.registry = st.registry
        self.rest = rest.Rest(st)
        self.kubelet = kubelet
        self.proxy = proxy.ServiceProxy(st, kubelet)
        self._metrics: Any = None  # podmetrics.PodMetrics, made on first use
        self._openapi: Any = None  # openapi.OpenAPIV3, made on first use
        self._server_address = server_address
        self._admin = admin

    # parts that a sandbox serving only its workloads never needs: loaded on first use, so
    # they cost nothing at start ------------------------------------------------------

    @property
    def metrics(self) -> Any:
        if self._metrics is None:
            from crystal_runbook.sandbox import podmetrics

            self._metrics = podmetrics.PodMetrics(self.store, self.kubelet)
        return self._metrics

    @property
    def openapi(self) -> Any:
        if self._openapi is None:
            from crystal_runbook.sandbox import openapi

            self._openapi = openapi.OpenAPIV3()
        return self._openapi

    def handle(self, req: Request) -> Response:
        """Answer one request; never raises for API errors (they become Status responses)."""
        try:
            return self._route(req)
        except apierrors.ApiError as err:
            return error_response(err)

    # routing --------------------------------------------------------------------------

    def _route(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        if path.startswith("/_sandbox/"):
            return self._sandbox(req, path)
        if path == "/version":
            return json_response(200, VERSION)
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(
            ("/healthz/", "/livez/", "/readyz/")
        ):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if path == "/openapi/v3":
            return json_response(200, self.openapi.index())
        if path.startswith("/openapi/v3/"):
            document = self.openapi.document(path.removeprefix("/openapi/v3/"))
            if document is None:
                raise apierrors.path_not_found(path)
            return Response(200, document, JSON, {"Cache-Control": "public, immutable"})
        if path == "/api":
            if "as=APIGroupDiscoveryList" in req.header("Accept"):
                return json_response(200, self.registry.aggregated(core=True), AGGREGATED)
            return json_response(200, self.registry.api_versions(self._server_address()))
        if path == "/apis":
            if "as=APIGroupDiscoveryList" in req.header("Accept"):
                return json_response(200, self.registry.aggregated(core=False), AGGREGATED)
            return json_response(200, self.registry.api_group_list())
        if path == "/api/v1":
            return json_response(200, self.registry.api_resource_list("", "v1"))
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2 and parts[1] in self.registry.groups():
            return json_response(200, self.registry.api_group(parts[1]))
        if parts[0] == "apis" and len(parts) == 3 and parts[2] in self.registry.versions(parts[1]):
            return json_response(200, self.registry.api_resource_list(parts[1], parts[2]))
        target = self._target(parts, path)
        return self._resource(req, target)

    def _target(self, parts: list[str], path: str) -> Target:
        if parts[0] == "api" and len(parts) >= 3 and parts[1] == "v1":
            group, version, rest_parts = "", "v1", parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest_parts = parts[1], parts[2], parts[3:]
        else:
            raise apierrors.path_not_found(path)
        namespace: str | None = None
        if rest_parts[0] == "namespaces" and len(rest_parts) >= 3:
            candidate = self.registry.find(group, version, rest_parts[2])
            if candidate is not None and candidate.namespaced:
                namespace = rest_parts[1]
                rest_parts = rest_parts[2:]
        res = self.registry.find(group, version, rest_parts[0])
        if res is None:
            raise apierrors.path_not_found(path)
        name = rest_parts[1] if len(rest_parts) > 1 else None
        sub = rest_parts[2] if len(rest_parts) > 2 else None
        sub_path = "/" + "/".join(rest_parts[3:])
        if res.namespaced and namespace is None and name is not None:
            raise apierrors.path_not_found(path)
        if not res.namespaced:
            namespace = ""
        if sub is not None and res.subresource(sub) is None:
            raise apierrors.path_not_found(path)
        if sub is not None and sub != "proxy" and len(rest_parts) > 3:
            raise apierrors.path_not_found(path)
        return Target(res, namespace, name, sub, sub_path)

    def _computed(self, req: Request, t: Target) -> Response:
        """metrics.k8s.io: read-only, computed on each GET."""
        if req.method != "GET" or t.sub is not None or req.query.get("watch") in ("true", "1"):
            raise apierrors.method_not_allowed()
        if t.name is None:
            return json_response(200, self.metrics.list(t.res, t.namespace, req.query))
        return json_response(200, self.metrics.get(t.res, t.namespace or "", t.name))

    def _resource(self, req: Request, t: Target) -> Response:
        method = req.method
        dry_run = req.query.get("dryRun") == "All"
        res, ns = t.res, t.namespace
        if res.computed:
            return self._computed(req, t)
        warnings: list[str] = []
        fields = _write_fields(req, warnings)
        if t.name is None:
            if method == "GET":
                if req.query.get("watch") in ("true", "1"):
                    return self._watch(req, t)
                return self._list(req, t)
            if method == "POST":
                if ns is None:
                    raise apierrors.method_not_allowed()
                body = _body(req)
                stored = self.rest.create(res, ns, body, dry_run=dry_run, **fields)
                return self._object(req, res, stored, 201, warnings)
            if method == "DELETE":
                options = rest.DeleteOptions.parse(req.body, req.query)
                deleted = self.rest.delete_collection(res, ns, req.query, options)
                return json_response(
                    200,
                    {
                        "kind": res.list_kind,
                        "apiVersion": res.api_version,
                        "metadata": {"resourceVersion": str(self.store.rv)},
                        "items": [d.obj for d in deleted],
                    },
                )
            raise apierrors.method_not_allowed()
        assert ns is not None  # noqa: S101 - _target guarantees a namespace for named objects  # nosec B101
        name = t.name
        if t.sub in (None, "status"):
            if method == "GET":
                return self._object(req, res, self.rest.get(res, ns, name), 200)
            if method == "DELETE" and t.sub is None:
                return self._delete(req, res, ns, name)
            if method == "PUT":
                body = _body(req)
                stored = self.rest.update(
                    res, ns, name, body, subresource=t.sub, dry_run=dry_run, **fields
                )
                return self._object(req, res, stored, 200, warnings)
            if method == "PATCH":
                ctype = req.header("Content-Type")
                stored = self.rest.patch(
                    res, ns, name, req.body, ctype, subresource=t.sub, dry_run=dry_run, **fields
                )
                return self._object(req, res, stored, 200, warnings)
            raise apierrors.method_not_allowed()
        if t.sub == "scale":
            if method == "GET":
                return json_response(200, self.rest.scale_of(res, self.rest.get(res, ns, name)))
            if method in ("PUT", "PATCH"):
                stored = self.rest.update_scale(
                    res,
                    ns,
                    name,
                    body=req.body,
                    content_type=req.header("Content-Type") if method == "PATCH" else None,
                    dry_run=dry_run,
                )
                return json_response(200, self.rest.scale_of(res, stored))
            raise apierrors.method_not_allowed()
        if t.sub == "log":
            if method != "GET":
                raise apierrors.method_not_allowed()
            result = logs.pod_log(
                self.store, self.kubelet, ns, name, req.query, client_gone=req.client_gone
            )
            if isinstance(result, bytes):
                return Response(200, result, "text/plain")
            return Response(200, content_type="text/plain", stream=result)
        if t.sub == "proxy":
            if res is resources.SERVICES:
                status, ctype, body = self.proxy.service(ns, name, method, t.sub_path)
            else:
                status, ctype, body = self.proxy.pod(ns, name, method, t.sub_path)
            return Response(status, body, ctype)
        raise apierrors.path_not_found(req.path)

    # representations ------------------------------------------------------------------

    def _object(
        self,
        req: Request,
        res: resources.Resource,
        stored: store.Stored,
        code: int,
        warnings: list[str] | None = None,
    ) -> Response:
        if warnings:
            response = self._object(req, res, stored, code)
            from crystal_runbook.sandbox import schema

            response.headers["Warning"] = schema.warning_header(warnings)
            return response
        if _wants_table(req):
            doc = tables.table(
                res,
                [stored.obj],
                resource_version=str(stored.rv),
                include=req.query.get("includeObject") or "Metadata",
            )
            return json_response(code, doc)
        return Response(code, stored.raw, JSON)

    def _list(self, req: Request, t: Target) -> Response:
        items, rv, token = self.rest.select(t.res, t.namespace, req.query)
        if _wants_table(req):
            doc = tables.table(
                t.res,
                [s.obj for s in items],
                resource_version=str(rv),
                include=req.query.get("includeObject") or "Metadata",
                continue_token=token,
            )
            return json_response(200, doc)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if token:
            meta["continue"] = token
        head = (
            b'{"kind":"'
            + t.res.list_kind.encode()
            + b'","apiVersion":"'
            + t.res.api_version.encode()
            + b'","metadata":'
            + store.dumps(meta)
            + b',"items":['
        )
        return Response(200, head + b",".join(s.raw for s in items) + b"]}", JSON)

    def _watch(self, req: Request, t: Target) -> Response:
        encode: watch.Encoder | None = None
        if _wants_table(req):
            include = req.query.get("includeObject") or "Metadata"
            res = t.res

            def encode(obj: dict[str, Any], _raw: bytes) -> bytes:
                return store.dumps(tables.table(res, [obj], resource_version=None, include=include))

        stream = self.rest.watch(
            t.res, t.namespace, req.query, encode=encode, client_gone=req.client_gone
        )
        return Response(200, content_type=JSON, stream=iter(stream))

    def _delete(self, req: Request, res: resources.Resource, ns: str, name: str) -> Response:
        options = rest.DeleteOptions.parse(req.body, req.query)
        if res is resources.NAMESPACES and not options.dry_run:
            self._empty_namespace(name)
        stored, gone = self.rest.delete(res, ns, name, options)
        if res is resources.PODS or not gone:
            return Response(200, stored.raw, JSON)
        details: dict[str, Any] = {"name": name, "kind": res.plural, "uid": stored.uid}
        if res.group:
            details["group"] = res.group
        return json_response(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            },
        )

    def _empty_namespace(self, namespace: str) -> None:
        with self.store.lock:
            for res in self.registry.resources:
                if not res.namespaced:
                    continue
                items, _ = self.store.objects(res, namespace)
                for item in items:
                    self.store.delete(res, namespace, item.name)

    # sandbox endpoints ----------------------------------------------------------------

    def _sandbox(self, req: Request, path: str) -> Response:
        parts = path.strip("/").split("/")
        if len(parts) == 5 and parts[1] == "services" and req.method in ("GET", "HEAD"):
            _, _, ns, name, what = parts
            if what == "metrics":
                status, ctype, body = self.proxy.service_metrics(ns, name)
                return Response(status, body, ctype)
            if what == "health":
                status, ctype, body = self.proxy.service_health(ns, name)
                return Response(status, body, ctype)
        if self._admin is not None:
            answer = self._admin(req)
            if answer is not None:
                return answer
        raise apierrors.path_not_found(path)


def _write_fields(req: Request, warnings: list[str]) -> dict[str, Any]:
    """The unknown-field handling of a write (and 415 for a body that is not JSON)."""
    if req.method not in ("POST", "PUT", "PATCH"):
        return {}
    ctype = req.header("Content-Type").split(";", 1)[0].strip().lower()
    if req.method != "PATCH" and req.body and ctype not in ("", *apierrors.BODY_MEDIA_TYPES):
        # NegotiateInputSerializer: JSON and protobuf (what typed kubectl commands send)
        raise apierrors.unsupported_media_type(ctype, apierrors.BODY_MEDIA_TYPES)
    from crystal_runbook.sandbox import schema

    return {"field_mode": schema.field_validation(req.query), "warnings": warnings}


def _body(req: Request) -> Any:
    """A POST or PUT body: JSON, or protobuf decoded into the same JSON form."""
    ctype = req.header("Content-Type").split(";", 1)[0].strip().lower()
    if ctype == "application/vnd.kubernetes.protobuf":
        from crystal_runbook.sandbox import protobuf

        return protobuf.decode_body(req.body)
    return rest.parse_json(req.body)


def parse_body_json(body: bytes) -> Any:
    """The JSON of an admin request body (``{}`` when empty)."""
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise apierrors.bad_request(f"the request body is not valid JSON: {exc}") from exc
