"""Engine overhead per no-op step, journal writes included (target: <= 2 ms per step).

A 100-step runbook of `fake.noop` steps runs in process with the SQLite journal; each step
commits its transitions (checking, ok) and events before the next starts. Beside it, the
same 100 no-op tasks as an Ansible playbook (`meta: noop` on localhost) when ansible-playbook
is installed: the per-task overhead of the tool our users would otherwise script.

Run: .venv/bin/python bench/engine_overhead.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import emit, measure, row

from crystal_runbook import service

STEPS = 100


def runbook(directory: Path) -> None:
    steps = "\n".join(f"  - {{id: s{i}, uses: fake.noop}}" for i in range(STEPS))
    (directory / "noop.yaml").write_text(
        f"apiVersion: crystal-runbook/v1\nkind: Runbook\nname: noop\nlock: noop\nsteps:\n{steps}\n"
    )


def ours(root: Path) -> float:
    ws = service.Workspace(
        state_dir=root / ".crystal",
        runbooks_dir=root,
        inventory_dir=root / "inventory",
        action_modules=("crystal_runbook.testing",),
    )
    started = time.perf_counter()
    result = service.runs.run(ws, "noop", {})
    took = time.perf_counter() - started
    assert result.run.status == "ok"
    ws.close()
    return took


def ansible(root: Path) -> float | None:
    playbook_bin = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
    if playbook_bin is None:
        return None
    tasks = "\n".join(f"    - name: noop {i}\n      meta: noop" for i in range(STEPS))
    playbook = root / "noop.yml"
    playbook.write_text(f"- hosts: localhost\n  gather_facts: false\n  tasks:\n{tasks}\n")
    started = time.perf_counter()
    subprocess.run(
        [playbook_bin, "-i", "localhost,", "-c", "local", str(playbook)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"ANSIBLE_HOME": str(root / "ansible"), "PATH": str(Path(sys.executable).parent)},
    )
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runbook(root)
        times = []
        for _ in range(5):
            times.append(ours(root))
        per_step = [t / STEPS for t in times]
        print(f"{STEPS}-step no-op runbook, journal on ({root} is on the local disk)")
        row(f"crystal-runbook: whole run of {STEPS} steps", times)
        row("crystal-runbook: per step", per_step)
        peer = [t for t in (ansible(root) for _ in range(3)) if t is not None]
        if peer:
            row(f"ansible-playbook: {STEPS} meta:noop tasks (peer)", peer)
            row("ansible-playbook: per task (peer)", [t / STEPS for t in peer])
        else:
            print("  ansible-playbook not installed: no peer figure")
        emit("engine overhead per no-op step", ours=[t * 1000 for t in per_step],
             peer=[t / STEPS * 1000 for t in peer] or None, unit="ms/step",
             peer_name="ansible-playbook meta: noop tasks",
             note="" if peer else "ansible-playbook not installed")
        _ = measure  # shared helper kept for symmetry with the other benchmarks


if __name__ == "__main__":
    main()
