"""The store: resourceVersions, watch history, waking, and what the REST layer builds on it."""

from __future__ import annotations

import threading
import time

import pytest

from crystal_runbook.sandbox import admission, apierrors, resources, rest, store


def new_store(history: int = 2048) -> store.Store:
    return store.Store(resources.Registry(), history=history)


def namespace(st: store.Store, name: str = "crystal") -> None:
    rest.Rest(st).create(resources.NAMESPACES, "", {"metadata": {"name": name}})


class TestStore:
    """Commit order, events and their history."""

    def test_resource_versions_grow_and_events_follow(self) -> None:
        """Every commit gets a higher rv; events_after returns changes after an rv."""
        st = new_store()
        namespace(st)
        api = rest.Rest(st)
        first = api.create(resources.CONFIGMAPS, "crystal", {"metadata": {"name": "a"}})
        second = api.update(
            resources.CONFIGMAPS, "crystal", "a", {"metadata": {"name": "a"}, "data": {"k": "v"}}
        )
        assert second.rv > first.rv
        events = st.events_after(resources.CONFIGMAPS, first.rv - 1)
        assert [e.type for e in events] == ["ADDED", "MODIFIED"]
        assert events[1].prev == first.obj

    def test_history_is_bounded(self) -> None:
        """Once the history drops an rv, resuming from it raises TooOld."""
        st = new_store(history=3)
        namespace(st)
        api = rest.Rest(st)
        start = st.rv
        for i in range(5):
            api.create(resources.CONFIGMAPS, "crystal", {"metadata": {"name": f"c{i}"}})
        with pytest.raises(store.TooOld):
            st.events_after(resources.CONFIGMAPS, start)
        assert len(st.events_after(resources.CONFIGMAPS, st.rv - 3)) == 3

    def test_wait_is_woken_by_a_commit(self) -> None:
        """A waiter returns as soon as a change arrives, not at its timeout."""
        st = new_store()
        namespace(st)
        woke: list[float] = []

        def waiter() -> None:
            started = time.monotonic()
            st.wait(resources.CONFIGMAPS, st.rv, timeout=10)
            woke.append(time.monotonic() - started)

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.1)
        rest.Rest(st).create(resources.CONFIGMAPS, "crystal", {"metadata": {"name": "x"}})
        thread.join(5)
        assert woke
        assert woke[0] < 1


class TestRestSemantics:
    """Conflicts, no-op updates, generation and status handling."""

    def test_generation_counts_spec_changes_only(self) -> None:
        """Metadata or status changes keep the generation; spec changes bump it."""
        st = new_store()
        namespace(st)
        api = rest.Rest(st)
        manifest = {
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        }
        created = api.create(resources.DEPLOYMENTS, "crystal", manifest)
        assert created.obj["metadata"]["generation"] == 1
        labelled = api.patch(
            resources.DEPLOYMENTS,
            "crystal",
            "d",
            b'{"metadata":{"labels":{"x":"y"}}}',
            "application/merge-patch+json",
        )
        assert labelled.obj["metadata"]["generation"] == 1
        status = api.patch(
            resources.DEPLOYMENTS,
            "crystal",
            "d",
            b'{"status":{"replicas":1}}',
            "application/merge-patch+json",
            subresource="status",
        )
        assert status.obj["metadata"]["generation"] == 1
        assert status.obj["status"] == {"replicas": 1}
        ignored = api.patch(
            resources.DEPLOYMENTS,
            "crystal",
            "d",
            b'{"status":{"replicas":9}}',
            "application/merge-patch+json",
        )
        assert ignored.obj["status"] == {"replicas": 1}  # status only through /status
        scaled = api.patch(
            resources.DEPLOYMENTS,
            "crystal",
            "d",
            b'{"spec":{"replicas":4}}',
            "application/merge-patch+json",
        )
        assert scaled.obj["metadata"]["generation"] == 2

    def test_stale_update_conflicts(self) -> None:
        """A PUT carrying an old resourceVersion is a 409."""
        st = new_store()
        namespace(st)
        api = rest.Rest(st)
        created = api.create(resources.CONFIGMAPS, "crystal", {"metadata": {"name": "a"}})
        api.update(
            resources.CONFIGMAPS, "crystal", "a", {"metadata": {"name": "a"}, "data": {"k": "1"}}
        )
        stale = created.copy()
        stale["data"] = {"k": "2"}
        with pytest.raises(apierrors.ApiError) as conflict:
            api.update(resources.CONFIGMAPS, "crystal", "a", stale)
        assert conflict.value.code == 409
        assert conflict.value.reason == "Conflict"

    def test_defaults_are_idempotent(self) -> None:
        """Defaulting an already defaulted Deployment changes nothing (rollback relies on it)."""
        d = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "c", "image": "i:latest", "ports": [{"containerPort": 1}]}
                        ]
                    }
                }
            }
        }
        admission.default(resources.DEPLOYMENTS, d)
        once = repr(d)
        admission.default(resources.DEPLOYMENTS, d)
        assert repr(d) == once
        container = d["spec"]["template"]["spec"]["containers"][0]
        assert container["imagePullPolicy"] == "Always"
        assert container["ports"][0]["protocol"] == "TCP"
        assert d["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
        }
