"""``GET pods/<name>/log``: a container's log, whole or streamed with ``follow=true``.

Answers the options kubectl and the Python client send: ``container`` (required when a pod
has several and none is the default), ``tailLines``, ``sinceSeconds``, ``sinceTime``,
``timestamps``, ``limitBytes``, ``previous`` and ``follow``. A follow stream writes each line
when the simulated container writes it, wakes early when the pod changes, and ends when the
container exits, the pod is deleted, the server stops or the client goes away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from crystal_runbook.sandbox import apierrors, resources, store, workload
from crystal_runbook.sandbox.kubelet import Kubelet

DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
# a follower re-checks that its client is still there at least this often (seconds)
LIVENESS_SECONDS = 15.0


def _stamp(at: float) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int((at % 1) * 1e9):09d}Z"


def _int(query: dict[str, str], key: str) -> int | None:
    if key not in query or query[key] == "":
        return None
    try:
        return int(query[key])
    except ValueError as exc:
        raise apierrors.bad_request(f"{key} must be an integer, not {query[key]!r}") from exc


def pod_log(
    st: store.Store,
    kubelet: Kubelet,
    namespace: str,
    name: str,
    query: dict[str, str],
    *,
    client_gone: Callable[[], bool] = lambda: False,
) -> bytes | Iterator[bytes]:
    """The log text (bytes), or for ``follow=true`` a generator of chunks."""
    stored = st.get(resources.PODS, namespace, name)
    if stored is None:
        raise apierrors.not_found(resources.PODS, name)
    pod = stored.obj
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    container = query.get("container") or (pod["metadata"].get("annotations") or {}).get(
        DEFAULT_CONTAINER
    )
    if not container:
        if len(names) != 1:
            raise apierrors.bad_request(
                f"a container name must be specified for pod {name}, choose one of: "
                f"[{' '.join(names)}]"
            )
        container = names[0]
    if container not in names:
        raise apierrors.bad_request(f"container {container} is not valid for pod {name}")
    previous = query.get("previous") in ("true", "1")
    runtime = kubelet.container(namespace, name, container, previous=previous)
    if runtime is None:
        if previous:
            raise apierrors.bad_request(
                f'previous terminated container "{container}" in pod "{name}" not found'
            )
        raise apierrors.bad_request(
            f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
        )
    timestamps = query.get("timestamps") in ("true", "1")
    tail = _int(query, "tailLines")
    since_seconds = _int(query, "sinceSeconds")
    limit = _int(query, "limitBytes")
    since_time = store.parse_time(query.get("sinceTime"))
    now = time.time()
    start = runtime.first_kept(now)
    count = runtime.line_count(now)
    lines = runtime.lines(start, count)
    cutoff = since_time if since_time is not None else None
    if since_seconds is not None:
        cutoff = now - since_seconds
    if cutoff is not None:
        lines = [(t, text) for t, text in lines if t >= cutoff]
    if tail is not None and tail >= 0:
        lines = lines[-tail:] if tail else []

    def render(batch: list[tuple[float, str]]) -> bytes:
        if timestamps:
            return "".join(f"{_stamp(t)} {text}\n" for t, text in batch).encode()
        return "".join(f"{text}\n" for _, text in batch).encode()

    head = render(lines)
    if limit is not None and limit >= 0:
        head = head[:limit]
    if query.get("follow") not in ("true", "1"):
        return head
    return _follow(
        st,
        kubelet,
        runtime,
        head=head,
        written=count,
        limit=limit,
        render=render,
        client_gone=client_gone,
    )


def _follow(
    st: store.Store,
    kubelet: Kubelet,
    runtime: workload.Container,
    *,
    head: bytes,
    written: int,
    limit: int | None,
    render: Callable[[list[tuple[float, str]]], bytes],
    client_gone: Callable[[], bool],
) -> Iterator[bytes]:
    sent = len(head)
    if head:
        yield head
    while not st.closed:
        if limit is not None and sent >= limit:
            return
        current = kubelet.container(runtime.namespace, runtime.pod, runtime.name)
        now = time.time()
        count = runtime.line_count(now)
        if count > written:
            chunk = render(runtime.lines(written, count))
            written = count
            if limit is not None:
                chunk = chunk[: max(0, limit - sent)]
            sent += len(chunk)
            yield chunk
            continue
        if current is not runtime:
            return  # the container exited (and was restarted) or the pod is gone
        next_at = runtime.next_line_time(now)
        if next_at is None:
            return  # the container has ended
        if client_gone():
            return
        st.wait(resources.PODS, st.rv, min(max(0.0, next_at - now), LIVENESS_SECONDS))
