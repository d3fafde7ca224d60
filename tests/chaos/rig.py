"""The chaos suite's rig: sandboxes with inventories, real processes to kill, the journal read back.

Every chaos test drives the installed `crystal-runbook` console script against a sandbox on
loopback, as the integration tests do, and then proves its claims from records the product
cannot fake: the sandbox's request log (what reached the API, when, and how it was answered),
the journal's tables (every transition of every step), the Leases left in the cluster and
the lock table. Reading those directly (SQLite, HTTP) instead of through more CLI processes
keeps hundreds of rounds within the suite's time bound on two loaded cores.
"""

from __future__ import annotations

import functools
import json
import os
import random
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from crystal_runbook import sandbox
from tests import secretscan
from tests.conftest import REPO
from tests.polling import wait_for

BIN = Path(sys.executable).parent
CONSOLE_SCRIPT = BIN / "crystal-runbook"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FINAL = frozenset({"ok", "failed", "refused"})
"""Run states a run may be left in (``interrupted`` and ``running`` must be resumed)."""
STEP_FINAL = frozenset({"ok", "skipped", "failed", "refused", "pending"})
DEPLOYMENTS = "/apis/apps/v1/namespaces/crystal/deployments"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/crystal/leases"
OUR_AGENT = "OpenAPI-Generator"
"""User-Agent prefix of the product's kubernetes client (the test's own requests use urllib)."""
EXIT_CODES = frozenset({0, 1, 2, 3, 4, 130})
"""design.md section 4: the only exit codes a command may end with."""


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


wait_until = functools.partial(wait_for, interval=0.02)
"""``tests.polling.wait_for``, polled every 20 ms (kill moments follow the journal closely)."""


# -- the cluster --------------------------------------------------------------------------------


@dataclass
class Rig:
    """One sandbox, its inventory, a state dir, and the console script pointed at them."""

    sb: sandbox.Sandbox
    root: Path
    services: tuple[str, ...] = ("maia",)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> Path:
        return self.root / ".crystal"

    # processes ----------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CRYSTAL_", "KUBECONFIG", "SLACK_"))
        }
        env.update(
            CRYSTAL_STATE_DIR=str(self.state),
            CRYSTAL_ACTOR="oncall",
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            HOME=str(self.root),
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        return [str(CONSOLE_SCRIPT), "--runbooks", str(REPO / "runbooks"), *args]

    def cli(self, *args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def spawn(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """The console script as a process of its own: the Python interpreter itself (the
        script's shebang is exec'd by the kernel; no shell in between), so a SIGKILL sent
        to this pid hits crystal-runbook, not a wrapper."""
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.root,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # the API, over plain HTTP (cheaper than kubectl per look) -------------------------------

    def api(self, method: str, path: str, body: Any = None, *, content_type: str = "") -> Any:
        data = None if body is None else json.dumps(body).encode()
        url = self.sb.url + path
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
        if data is not None:
            request.add_header(
                "Content-Type", content_type or "application/strategic-merge-patch+json"
            )
        opened = urllib.request.urlopen(request, timeout=30)  # noqa: S310 - our loopback sandbox
        with opened as resp:
            return json.loads(resp.read() or b"null")

    def deployment(self, name: str = "maia") -> dict[str, Any]:
        return dict(self.api("GET", f"{DEPLOYMENTS}/{name}"))

    def leases(self) -> list[str]:
        """Names of the Leases in the namespace (a run's lock in the cluster)."""
        return [item["metadata"]["name"] for item in self.api("GET", LEASES)["items"]]

    def release(self, image: str, name: str = "maia") -> int:
        """Ship ``image`` as a new revision (what a deploy pipeline does) and wait for its
        rollout; returns the new revision."""
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "maia", "image": image}]}}}}
        self.api("PATCH", f"{DEPLOYMENTS}/{name}", patch)
        wait_until(lambda: rolled_out(self.deployment(name)), 60, f"the rollout of {image}")
        return revision(self.deployment(name))

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        return self.sb.requests()[since:]

    def request_count(self) -> int:
        return len(self.sb.requests())


def rolled_out(deployment: dict[str, Any]) -> bool:
    """The Deployment's rollout is complete (what `kubectl rollout status` waits for)."""
    spec, status = deployment["spec"], deployment.get("status", {})
    want = spec.get("replicas", 1)
    return (
        status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == want
        and status.get("readyReplicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and status.get("replicas", 0) == want
    )


def revision(deployment: dict[str, Any]) -> int:
    return int(deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"])


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def image(deployment: dict[str, Any]) -> str:
    return str(container(deployment)["image"])


def env_value(deployment: dict[str, Any], name: str) -> str | None:
    return next(
        (e.get("value") for e in container(deployment).get("env", []) if e["name"] == name), None
    )


def inventory_block(sb: sandbox.Sandbox, deployment: str, *, channel: str | None = None) -> str:
    lines = (
        f"        kubernetes: {{context: crystal-sandbox, namespace: crystal, "
        f"deployment: {deployment}, kubeconfig: {sb.kubeconfig_path}}}\n"
        f"        health_url: {sb.health_url(deployment)}\n"
    )
    if channel:
        lines += f"        slack_channel: '{channel}'\n"
    return lines


def write_inventory(
    root: Path, sb: sandbox.Sandbox, services: Iterable[str], *, channel: str | None = None
) -> None:
    """``inventory/services.yaml`` with each service in ``sandbox`` (and ``production``)."""
    inventory = root / "inventory"
    inventory.mkdir(exist_ok=True)
    text = "default_environment: sandbox\nservices:\n"
    for name in services:
        block = inventory_block(sb, name, channel=channel)
        text += f"  {name}:\n    environments:\n      sandbox:\n{block}      production:\n{block}"
    (inventory / "services.yaml").write_text(text)


@contextmanager
def rig(
    root: Path,
    *,
    ready_delay: float = 0.1,
    services: Sequence[str] = ("maia",),
    channel: str | None = None,
) -> Iterator[Rig]:
    """A sandbox seeded with ``maia`` (revision 2 of 2) and, for other names, copies of it
    with two revisions each; the inventory lists them all. Stopped (and its internal
    errors asserted empty) at the end."""
    root.mkdir(parents=True, exist_ok=True)
    sb = sandbox.start(root / ".crystal", ready_delay=ready_delay)
    sb.config.update({"burn_ramp_seconds": 1.0, "backoff_base": 0.2})
    built = Rig(sb, root, tuple(services))
    try:
        for name in services:
            if name != "maia":
                clone_service(built, name)
        write_inventory(root, sb, services, channel=channel)
        sb.settle(10)
        yield built
    finally:
        errors = sb.internal_errors
        sb.stop()
    assert errors == [], "\n".join(errors)


def clone_service(built: Rig, name: str) -> None:
    """A Deployment (and Service) ``name`` like maia's: revision 1 good, revision 2 current."""
    source = built.deployment("maia")
    labels = {"app": name}
    template = json.loads(json.dumps(source["spec"]["template"]))
    template["metadata"] = {"labels": labels}
    template["spec"]["containers"][0]["image"] = "registry.local/maia:1.4.2"
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": source["spec"].get("replicas", 3),
            "selector": {"matchLabels": labels},
            "template": template,
        },
    }
    built.api("POST", DEPLOYMENTS, body, content_type="application/json")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    try:
        built.api(
            "POST", "/api/v1/namespaces/crystal/services", service, content_type="application/json"
        )
    except urllib.error.HTTPError as exc:  # the health URL then needs maia's own service
        raise AssertionError(f"cannot create service {name}: {exc}") from exc
    wait_until(lambda: rolled_out(built.deployment(name)), 60, f"{name} revision 1")
    built.release("registry.local/maia:1.5.0", name)


# -- the journal, read directly ------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    seq: int
    step: str | None
    kind: str
    status: str
    at: datetime
    message: str


def journal(state: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{state / 'journal.db'}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def run_ids(state: Path) -> list[str]:
    """Run ids, oldest first ([] before the journal exists)."""
    if not (state / "journal.db").exists():
        return []
    try:
        with journal(state) as conn:
            return [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY started_at, rowid")]
    except sqlite3.OperationalError:
        return []  # created but not migrated yet


def event_count(state: Path, run_id: str | None = None) -> int:
    if not (state / "journal.db").exists():
        return 0
    try:
        with journal(state) as conn:
            if run_id is None:
                return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
            return int(
                conn.execute("SELECT COUNT(*) FROM events WHERE run_id = ?", (run_id,)).fetchone()[
                    0
                ]
            )
    except sqlite3.OperationalError:
        return 0


def run_row(state: Path, run_id: str) -> sqlite3.Row:
    with journal(state) as conn:
        return conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()


def events(state: Path, run_id: str) -> list[Event]:
    with journal(state) as conn:
        return [
            Event(r["seq"], r["step_id"], r["kind"], r["status"], parse_time(r["at"]), r["message"])
            for r in conn.execute(
                "SELECT seq, step_id, kind, status, at, message FROM events "
                "WHERE run_id = ? ORDER BY seq",
                (run_id,),
            )
        ]


def steps(state: Path, run_id: str) -> list[sqlite3.Row]:
    with journal(state) as conn:
        return list(
            conn.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY phase DESC, idx", (run_id,))
        )


def held_locks(state: Path) -> list[str]:
    if not (state / "journal.db").exists():
        return []
    with journal(state) as conn:
        return [r[0] for r in conn.execute("SELECT key FROM locks")]


# A step's transitions, as the executor journals them. After a kill, `resume` starts the
# step again from `checking` (its check decides whether the change is already there).
NEXT = {
    # interrupted first: its `checking` could not be written (a full disk); the run ended
    # there, with the journal's space reserve, and nothing was done for the step
    None: {"checking", "skipped", "pending", "interrupted"},
    "checking": {"applying", "verifying", "ok", "failed", "refused", "interrupted"},
    "applying": {"applied", "failed", "interrupted"},
    "applied": {"verifying", "ok", "failed", "interrupted"},
    "verifying": {"verifying", "ok", "failed", "interrupted"},
    "interrupted": {"checking"},
    "failed": set(),
    "ok": set(),
    "skipped": set(),
    "refused": set(),
    "pending": set(),
}
RESTARTED = {"checking", "skipped"}
"""What a step's first event after a `resume` may be, whatever state it was left in."""


def journal_problems(state: Path, run_id: str) -> list[str]:
    """Everything wrong with a finished run's journal: a transition out of order or missing,
    a step not final, events out of time order, an end without its steps."""
    problems: list[str] = []
    run = run_row(state, run_id)
    if run is None:
        return [f"run {run_id} is not in the journal"]
    if run["status"] not in FINAL:
        problems.append(f"run {run_id} left {run['status']!r}")
    found = events(state, run_id)
    seqs = [e.seq for e in found]
    if seqs != sorted(seqs):
        problems.append("events out of order")
    times = [e.at for e in found]
    if times != sorted(times):
        problems.append("event times go backwards")
    resumes = {e.seq for e in found if e.kind == "run" and e.status in {"running", "resumed"}}
    last: dict[str, str | None] = {}
    restarted: set[str] = set()
    intended: set[str] = set()
    for event in found:
        if event.kind == "run" and event.seq in resumes:
            restarted = set(last)  # every step seen so far may start again
            continue
        if event.kind != "step" or event.step is None:
            continue
        before = last.get(event.step)
        allowed = set(NEXT.get(before, set()))
        if before == "checking" and event.step in intended:
            # resumed: the check found the journalled intent done, this run's change
            allowed.add("applied")
        if event.step in restarted and event.status in RESTARTED:
            restarted.discard(event.step)
        elif event.status not in allowed:
            problems.append(f"step {event.step}: {before} -> {event.status} (#{event.seq})")
        restarted.discard(event.step)
        if event.status == "applying":
            intended.add(event.step)
        last[event.step] = event.status
    for row in steps(state, run_id):
        if (
            run["status"] == "ok"
            and row["phase"] == "main"
            and row["status"] not in {"ok", "skipped"}
        ):
            problems.append(f"step {row['id']} is {row['status']!r} in a run that is ok")
        if row["status"] not in STEP_FINAL:
            problems.append(f"step {row['id']} left {row['status']!r}")
        seen = last.get(row["id"])
        if row["status"] in {"ok", "failed"} and seen != row["status"]:
            problems.append(f"step {row['id']} is {row['status']} but its last event is {seen}")
    if not found or found[-1].kind != "run" or found[-1].status != run["status"]:
        problems.append(f"the last event is not the run's end ({found[-1:]})")
    return problems


def deployment_patches(
    requests: Iterable[dict[str, Any]], name: str = "maia"
) -> list[dict[str, Any]]:
    """The product's mutating requests on the Deployment, in order."""
    return [
        r
        for r in requests
        if r["method"] in MUTATING
        and r["path"] == f"{DEPLOYMENTS}/{name}"
        and r.get("user_agent", "").startswith(OUR_AGENT)
    ]


def took_effect(request: dict[str, Any]) -> bool:
    """A request the server applied: answered 2xx (a dropped one is logged with status 0)."""
    return 200 <= int(request["status"]) < 300


def intent_before_change(state: Path, run_id: str, request: dict[str, Any], step: str) -> bool:
    """The step's `applying` (its intent) was journalled before the request reached the API."""
    applying = [e.at for e in events(state, run_id) if e.step == step and e.status == "applying"]
    return bool(applying) and min(applying) <= parse_time(request["time"])


def planted_secrets() -> dict[str, str]:
    """Secrets the chaos tests put in the environment; none may appear in any output."""
    nonce = f"{random.getrandbits(64):016x}"
    planted = {
        "SLACK_SIGNING_SECRET": f"chaos-signing-secret-{nonce}",
        "CRYSTAL_CHAOS_PASSWORD": f"chaos-password-{nonce}",
        "AWS_SECRET_ACCESS_KEY": f"chaosAwsSecret{nonce}Xy12",
    }
    secretscan.plant(*planted.values())  # the session's end looks for them in every output
    return planted
