"""Start-up: `crystal-runbook --help` beside `kubectl --help` (target: 120 ms here), and
`health maia --env sandbox` beside `kubectl get deploy` (target: 1.0 s).

`health` runs on a sandbox (the shipped `sandbox` environment of inventory/services.yaml):
the health URL, the Deployment's rollout and the five trigger rules, whose `rate()` needs two
scrapes a second apart. It is timed twice: as it runs again within the rules' range (the
samples the previous look kept in the state dir serve as the first scrape), and as the first
look in a state dir (that file removed before each run: it waits for its second sample).

Every command is run in alternation with the others of its table, round by round, so that
the load of a shared machine falls on all of them alike; with ``--baseline DIR`` another
checkout (its own .venv, inventory) is timed in the same alternation: before and after.

Run: .venv/bin/python bench/cli_help.py [--repo DIR] [--baseline DIR] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _timing import emit, row, run_command
from rollback import REPO, Checkout, shipped_inventory

from crystal_runbook import sandbox


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def alternate(commands: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Time each command per round, after one warm-up each; the order flips per round.

    Prints wall time (spawn to exit) and CPU time (user + system of the process: on a
    shared machine it moves far less with the load than wall time does).
    """
    for call in commands.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            started, used = time.perf_counter(), children_cpu()
            commands[name]()
            times[name].append(time.perf_counter() - started)
            cpu[name].append(children_cpu() - used)
    for name in names:
        row(name, times[name])
        print(f"  {'':<44} CPU median {statistics.median(cpu[name]) * 1000:7.1f} ms")
    return times


def emit_help(times: dict[str, list[float]]) -> None:
    """The --help figures for scripts/bench.sh's table."""
    if "kubectl --help (peer)" in times:
        emit("--help start-up", ours=[t * 1000 for t in times["crystal-runbook --help"]],
             peer=[t * 1000 for t in times["kubectl --help (peer)"]], unit="ms",
             peer_name="kubectl --help")


def load() -> str:
    return "load average {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", type=Path, default=REPO)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout timed in the same alternation (before/after)")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    checkouts = {"": Checkout.of(args.repo)}
    if args.baseline is not None:
        checkouts[" (baseline)"] = Checkout.of(args.baseline)
    for label, checkout in checkouts.items():
        print(f"crystal-runbook{label}: {checkout.bin_dir / 'crystal-runbook'}")
    ours = checkouts[""]
    kubectl = str(ours.bin_dir / "kubectl") if (ours.bin_dir / "kubectl").exists() else (
        shutil.which("kubectl"))

    help_commands: dict[str, Callable[[], object]] = {}
    for label, checkout in checkouts.items():
        exe = str(checkout.bin_dir / "crystal-runbook")
        help_commands[f"crystal-runbook --help{label}"] = run_command([exe, "--help"])
        help_commands[f"crystal-runbook run --help{label}"] = run_command([exe, "run", "--help"])
    help_commands["python -c pass (interpreter floor)"] = run_command(
        [sys.executable, "-c", "pass"])
    if kubectl:
        help_commands["kubectl --help (peer)"] = run_command([kubectl, "--help"])
    print(f"\n--help wall time (process start to exit), {args.rounds} rounds, alternating "
          f"({load()} at start)")
    emit_help(alternate(help_commands, args.rounds))
    print(f"  ({load()} at end)")

    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        with sandbox.start(top / "sandbox", ready_delay=0.2) as sb:
            sb.settle(10)
            health: dict[str, Callable[[], object]] = {}
            env: dict[str, str] = {}
            for i, (label, checkout) in enumerate(checkouts.items()):
                root = top / f"checkout{i}"
                root.mkdir()
                shipped_inventory(checkout.repo, root, sb)
                kubeconfig = root / ".crystal/sandbox/kubeconfig"  # where the inventory says
                if not kubeconfig.exists():
                    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(sb.kubeconfig_path, kubeconfig)
                env = {**os.environ, "CRYSTAL_STATE_DIR": str(root / ".crystal"),
                       "KUBECONFIG": str(sb.kubeconfig_path),
                       "KUBECACHEDIR": str(root / "cache")}
                argv = [str(checkout.bin_dir / "crystal-runbook"), "health", "maia", "--env",
                        "sandbox"]
                again = run_command(argv, env=env, cwd=root)
                health[f"health maia --env sandbox{label}"] = again
                samples = root / ".crystal/triggers/maia.sandbox.samples.json"

                def first(again: Callable[[], object] = again, samples: Path = samples) -> None:
                    samples.unlink(missing_ok=True)
                    again()

                health[f"  first look in its state dir{label}"] = first
            if kubectl:
                health["kubectl get deploy maia (peer)"] = run_command(
                    [kubectl, "-n", "crystal", "get", "deploy", "maia"], env=env, cwd=top)
            rounds = max(4, args.rounds // 2)
            print(f"\nhealth on the sandbox, {rounds} rounds, alternating ({load()} at start)")
            alternate(health, rounds)
            print(f"  ({load()} at end)")


if __name__ == "__main__":
    main()
