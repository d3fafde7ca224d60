"""Leader takeover time of `crystal-runbook serve`, beside the kubernetes client's own election.

Two `serve --scheduler` replicas campaign for one coordination.k8s.io/v1 Lease in the
sandbox. Each round the leader is stopped, by `kill -9` (a dead pod: the follower must wait
for the Lease to expire) or by SIGTERM (a rolling update: the leader releases its Lease),
and the time from the signal to the moment the Lease names the other replica is measured
by reading the Lease every 20 ms. The killed replica is started again as the next round's
follower. The peer, in the same invocation and alternating round by round: the official
Python client's `kubernetes.leaderelection` (LeaseLock) with the same Lease duration and
retry period, stopped the same way (it has no release on SIGTERM: it waits for the expiry;
it refuses retry periods of 1 s or less, so with a shorter --renew only ours runs).

The bound the issue sets: a follower takes over within the Lease duration plus one renew
period after a kill -9; after SIGTERM, within one renew period.

    python bench/failover.py [--rounds 3] [--lease 15s --renew 2s]
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from _timing import emit

from crystal_runbook import sandbox
from crystal_runbook.engine import durations

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OURS_LEASE = "crystal-runbook-serve-scheduler"
PEER_LEASE = "bench-client-go-style"

PEER = textwrap.dedent(
    """
    import sys, uuid
    from kubernetes import config
    from kubernetes.leaderelection import electionconfig, leaderelection
    from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock
    kubeconfig, name, retry = sys.argv[1], sys.argv[2], float(sys.argv[4])
    lease = int(float(sys.argv[3]))  # whole seconds: it writes leaseDurationSeconds with int()
    config.load_kube_config(config_file=kubeconfig)
    identity = f"{name}-{uuid.uuid4().hex[:6]}"
    print(identity, flush=True)
    lock = LeaseLock(sys.argv[5], "crystal", identity)
    def lead():
        import time
        while True:
            time.sleep(3600)
    # renew_deadline: client-go's rule (less than the duration, more than 1.2 retry periods)
    leaderelection.LeaderElection(electionconfig.Config(
        lock, lease_duration=lease, renew_deadline=lease - retry, retry_period=retry,
        onstarted_leading=lead, onstopped_leading=None)).run()
    """
)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Cluster:
    """The sandbox, and a fast reader of one Lease's holder."""

    def __init__(self, root: Path) -> None:
        self.sb = sandbox.start(root / "cluster", ready_delay=0.1)
        self.sb.settle(10)
        self.http = httpx.Client(base_url=self.sb.url, timeout=5)

    def holder(self, lease: str) -> str:
        answer = self.http.get(f"/apis/coordination.k8s.io/v1/namespaces/crystal/leases/{lease}")
        if answer.status_code == 404:
            return ""
        answer.raise_for_status()
        return str((answer.json().get("spec") or {}).get("holderIdentity") or "")

    def wait_holder(self, lease: str, want: Callable[[str], bool], timeout: float) -> float:
        """Monotonic time at which ``want(holder)`` first held (read every 20 ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if want(self.holder(lease)):
                return time.monotonic()
            time.sleep(0.02)
        raise SystemExit(f"lease {lease}: no change within {timeout:.0f} s")

    def close(self) -> None:
        self.http.close()
        self.sb.stop()


class Candidate:
    """One process campaigning for a Lease; ``identity`` as it writes it in holderIdentity."""

    def __init__(self, proc: subprocess.Popen[str], identity: str, metrics: str = "") -> None:
        self.proc = proc
        self.identity = identity
        self.metrics = metrics
        """Its /metrics URL (ours), to know when it has seen the leader's Lease."""

    def follows(self, leader: str, timeout: float) -> None:
        """Wait until this follower has read the Lease held by ``leader`` (a follower that
        first reads it after the leader died rightly waits a whole Lease duration from then:
        that would measure its start, not the takeover). The peer says nothing: 2 s."""
        if not self.metrics:
            time.sleep(2.0)
            return
        deadline = time.monotonic() + timeout
        wanted = f'holder="{leader}"'
        while time.monotonic() < deadline:
            try:
                text = httpx.get(self.metrics, timeout=5).text
            except httpx.HTTPError:
                text = ""
            if any(
                ln.startswith("crystal_runbook_lease_holder{") and wanted in ln and ln.endswith(" 1.0")
                for ln in text.splitlines()
            ):
                return
            time.sleep(0.05)
        raise SystemExit(f"the follower never saw {leader} lead")

    def stop(self, how: signal.Signals) -> float:
        """Send ``how``; returns the monotonic time it was sent (the process is reaped later)."""
        sent = time.monotonic()
        self.proc.send_signal(how)
        return sent

    def reap(self) -> None:
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def write_inventory(root: Path, sb: sandbox.Sandbox, lease: float, renew: float) -> Path:
    inventory = root / "inventory"
    inventory.mkdir()
    (inventory / "services.yaml").write_text(
        "default_environment: sandbox\nservices:\n  maia:\n    environments:\n      sandbox:\n"
        "        kubernetes: {context: crystal-sandbox, namespace: crystal, deployment: maia, "
        f"kubeconfig: '{sb.kubeconfig_path}'}}\n"
    )
    (inventory / "serve.yaml").write_text(
        textwrap.dedent(
            f"""
            apiVersion: crystal-runbook/v1
            kind: Serve
            leader_election:
              kubernetes: {{context: crystal-sandbox, namespace: crystal, kubeconfig: '{sb.kubeconfig_path}'}}
              lease_duration: {lease}s
              renew_period: {renew}s
            scheduler: {{interval: 30s}}
            """
        ).lstrip()
    )
    return inventory


def start_ours(root: Path, inventory: Path, n: int) -> Candidate:
    """`serve --scheduler` with a state dir of its own, once it campaigns."""
    home = root / f"replica-{n}"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "KUBECONFIG", "SLACK_"))}
    env.update(CRYSTAL_STATE_DIR=str(home / ".crystal"), HOME=str(home))
    log = home / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "crystal-runbook"), "--inventory", str(inventory), "serve", "--scheduler",
             "--host", "127.0.0.1", "--port", "0", "--grace", "5s"],
            cwd=home, env=env, stderr=out, stdout=subprocess.DEVNULL, text=True,
        )
    deadline = time.monotonic() + 60
    while "campaigns for" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    text = log.read_text()
    identity = text.split("replica ")[1].split(" ")[0]
    port = int(text.split("127.0.0.1:")[1].split(" ")[0])
    return Candidate(proc, identity, f"http://127.0.0.1:{port}/metrics")


def start_peer(root: Path, sb: sandbox.Sandbox, n: int, *, lease: float, renew: float) -> Candidate:
    script = root / "peer.py"
    if not script.exists():
        script.write_text(PEER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(sb.kubeconfig_path), f"peer{n}", str(lease), str(renew), PEER_LEASE],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    identity = proc.stdout.readline().strip()
    return Candidate(proc, identity)


def rounds(
    cluster: Cluster,
    lease_name: str,
    start: Callable[[int], Candidate],
    *,
    how: signal.Signals,
    count: int,
    timeout: float,
) -> list[float]:
    """Takeover seconds of ``count`` rounds: stop the leader with ``how``, time the follower."""
    n = 0
    leader = start(n)
    cluster.wait_holder(lease_name, leader.identity.__eq__, timeout)
    times = []
    for _ in range(count):
        n += 1
        follower = start(n)
        follower.follows(leader.identity, timeout)
        sent = leader.stop(how)
        led = cluster.wait_holder(lease_name, follower.identity.__eq__, timeout)
        times.append(led - sent)
        leader.reap()
        leader = follower
    leader.stop(signal.SIGTERM)
    leader.reap()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lease", default="15s", help="Lease duration (default: client-go's 15 s)")
    parser.add_argument("--renew", default="2s", help="renew (retry) period (default: client-go's 2 s)")
    args = parser.parse_args()
    lease, renew = durations.parse_duration(args.lease), durations.parse_duration(args.renew)
    timeout = 3 * lease + 30
    print(f"leader takeover, Lease {lease:g} s renewed every {renew:g} s, {args.rounds} rounds each; load {load()}")
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="crystal-bench-failover-") as tmp:
        root = Path(tmp)
        cluster = Cluster(root)
        try:
            inventory = write_inventory(root, cluster.sb, lease, renew)
            for how in (signal.SIGKILL, signal.SIGTERM):
                label = "kill -9" if how == signal.SIGKILL else "SIGTERM"
                ours_root = root / f"ours-{how.name}"
                peer_root = root / f"peer-{how.name}"
                ours_root.mkdir()
                peer_root.mkdir()
                results[f"crystal-runbook serve, {label}"] = rounds(
                    cluster, OURS_LEASE, functools.partial(start_ours, ours_root, inventory),
                    how=how, count=args.rounds, timeout=timeout,
                )
                print(f"  crystal-runbook serve, {label}: done (load {load()})", flush=True)
                if renew <= 1.0:  # the client refuses: "retry_period must be greater than one"
                    continue
                results[f"kubernetes.leaderelection, {label}"] = rounds(
                    cluster, PEER_LEASE,
                    functools.partial(start_peer, peer_root, cluster.sb, lease=lease, renew=renew),
                    how=how, count=args.rounds, timeout=timeout,
                )
                print(f"  kubernetes.leaderelection, {label}: done (load {load()})", flush=True)
        finally:
            cluster.close()
    print()
    print(f"{'who, stopped by':<40} {'median s':>9} {'max s':>7}  rounds")
    for name, times in results.items():
        print(f"{name:<40} {statistics.median(times):>9.2f} {max(times):>7.2f}  {', '.join(f'{t:.2f}' for t in times)}")
    print()
    print(f"bound after kill -9: Lease duration + one renew period = {lease + renew:g} s; after SIGTERM: one renew period = {renew:g} s")
    for label in ("kill -9", "SIGTERM"):
        peer = results.get(f"kubernetes.leaderelection, {label}")
        emit(
            f"leader takeover after {label} (Lease {lease:g} s, renew {renew:g} s)",
            ours=results[f"crystal-runbook serve, {label}"],
            peer=peer,
            unit="s",
            peer_name="kubernetes.leaderelection (LeaseLock)",
            note="" if peer is not None else "the client refuses retry periods of 1 s or less",
        )
    print(f"load average at the end: {load()}")


if __name__ == "__main__":
    main()
