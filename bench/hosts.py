"""Hosts: `ssh.run` beside `ansible-playbook -f 10`, and what `ansible.playbook` adds to a playbook.

Practice hosts (`crystal-runbook sandbox hosts up`: one real sshd per host on loopback, as
this user) carry the Capistrano release tree with the bad release 1.4.2 live. Every round
starts from that state (the symlinks are put back directly on disk, not timed) and the kinds
alternate round by round, so the load of a shared machine falls on every side alike.

Part 1, the same symlink rollback on ``--hosts`` hosts (default 20), wall time from spawn to
exit, including each tool's start-up:

- ours:    `crystal-runbook run switch` (one `ssh.run` step, concurrency 10: check
           `readlink`, command `ln -sfn` + `mv -T` where needed, verify `readlink` on every
           host; journalled like any run);
- ansible: `ansible-playbook -f 10` of the equivalent playbook (the `file` module,
           state=link), Ansible's defaults (ControlMaster/ControlPersist, a fresh control
           directory per round as on a first run) plus pipelining; host keys checked.

Also the second run on hosts already switched (nothing to change) for both.

Part 2, the per-step overhead of `ansible.playbook` on the same hosts with
`playbooks/rollback.yml` (switch, restart, health): the step (`crystal-runbook run` of a
one-step runbook: check mode, apply on the hosts that need it, check-mode verification) beside
the same three `ansible-playbook` runs by hand (`--check --diff`, the real run, `--check`),
and beside the single real run an engineer would type. Overhead = step - the three by hand.

Run: .venv/bin/python bench/hosts.py [--rounds 3] [--hosts 20] [--parts 1,2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _timing import emit

from crystal_runbook import hostsandbox

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SWITCH_RUNBOOK = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: switch
params:
  service: {type: string, required: true}
steps:
  - id: switch
    uses: ssh.run
    with:
      check: test "$(readlink "$app_root/current")" = releases/1.4.1
      command: ln -sfn releases/1.4.1 "$app_root/current.new" && mv -T "$app_root/current.new" "$app_root/current"
      verify: test "$(readlink "$app_root/current")" = releases/1.4.1
      export_vars: [app_root]
      concurrency: 10
"""

SWITCH_PLAYBOOK = """\
- name: Switch current to 1.4.1
  hosts: all
  gather_facts: false
  tasks:
    - name: Switch current to the release
      ansible.builtin.file:
        src: releases/1.4.1
        dest: "{{ app_root }}/current"
        state: link
        force: true
"""

PLAYBOOK_RUNBOOK = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: playbook
params:
  service: {type: string, required: true}
steps:
  - id: switch
    uses: ansible.playbook
    with:
      playbook: rollback
      vars: {service: "{{ service.name }}"}
      forks: 10
    timeout: 20m
"""


class Bench:
    """Practice hosts, a state directory, and the commands of each kind."""

    def __init__(self, root: Path, hosts: int) -> None:
        self.root = root
        self.state = root / "state"
        self.practice = hostsandbox.up(self.state, count=hosts)
        self.runbooks = root / "runbooks"
        self.runbooks.mkdir()
        (self.runbooks / "switch.yaml").write_text(SWITCH_RUNBOOK)
        (self.runbooks / "playbook.yaml").write_text(PLAYBOOK_RUNBOOK)
        shutil.copytree(REPO / "playbooks", root / "playbooks")
        (root / "switch.yml").write_text(SWITCH_PLAYBOOK)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "ANSIBLE_"))},
            "CRYSTAL_STATE_DIR": str(self.state),
            "HOME": str(root),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def put(self, release: str) -> None:
        """Every host on ``release``, running it (set on disk directly, not timed)."""
        for host in self.practice.hosts:
            app = host.directory / "maia"
            link = app / "current.reset"
            link.unlink(missing_ok=True)
            link.symlink_to(f"releases/{release}")
            os.replace(link, app / "current")
            (app / ".crystal-running").write_text(f"{release}\n")

    def ours(self, runbook: str) -> float:
        argv = [
            str(BIN / "crystal-runbook"),
            "--runbooks", str(self.runbooks),
            "--inventory", str(REPO / "inventory"),
            "run", runbook, "-p", "service=maia", "--env", "vms", "-o", "json",
        ]  # fmt: skip
        return timed(argv, self.env, self.root)

    def ansible(self, playbook: Path, *extra: str) -> float:
        home = Path(tempfile.mkdtemp(prefix="ansible-home-", dir=self.root))
        env = {
            **self.env,
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=60s "
            f"-o UserKnownHostsFile={self.practice.known_hosts} -o StrictHostKeyChecking=yes",
        }
        argv = [
            str(BIN / "ansible-playbook"), "-f", "10",
            "-i", str(self.practice.inventory), "-e", "service=maia", *extra, str(playbook),
        ]  # fmt: skip
        try:
            return timed(argv, env, self.root)
        finally:
            stop_muxes(home)

    def close(self) -> None:
        hostsandbox.down(self.state)


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])}... failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return took


def stop_muxes(home: Path) -> None:
    """End the ControlPersist mux processes of one Ansible round (ours, by their socket dir)."""
    marker = str(home).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ssh" in cmdline.split(b"\0")[0] and marker in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), 15)
    shutil.rmtree(home, ignore_errors=True)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def median(values: list[float]) -> float:
    return statistics.median(values)


def line(label: str, values: list[float], base: float | None = None) -> None:
    ratio = f"  {median(values) / base:5.2f}x" if base else ""
    spread = f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
    print(f"  {label:<52} median {median(values):6.2f} s {spread}{ratio}")


def alternate(rounds: int, kinds: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Each kind once per round, the order rotating so no kind always goes first."""
    found: dict[str, list[float]] = {k: [] for k in kinds}
    names = list(kinds)
    for i in range(rounds):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            found[name].append(kinds[name]())
        print(f"    round {i + 1}/{rounds} done ({load()})", file=sys.stderr)
    return found


Fresh = Callable[..., Callable[[], float]]
"""Wraps a measurement so that the hosts are put on a release (not timed) before it."""


def part1(bench: Bench, rounds: int, hosts: int, fresh: Fresh) -> None:
    """The symlink rollback: ssh.run beside ansible-playbook -f 10."""
    playbook = bench.root / "switch.yml"
    found = alternate(
        rounds,
        {
            "ours": fresh(lambda: bench.ours("switch")),
            "ours-noop": fresh(lambda: bench.ours("switch"), "1.4.1"),
            "ansible": fresh(lambda: bench.ansible(playbook)),
            "ansible-noop": fresh(lambda: bench.ansible(playbook), "1.4.1"),
        },
    )
    print(f"\n1. symlink rollback on {hosts} hosts, concurrency 10 ({load()})")
    base = median(found["ansible"])
    line("ansible-playbook -f 10 (file module, state=link)", found["ansible"])
    line("crystal-runbook ssh.run (check, command, verify)", found["ours"], base)
    noop = median(found["ansible-noop"])
    line("ansible-playbook -f 10, nothing to change", found["ansible-noop"])
    line("crystal-runbook ssh.run, nothing to change", found["ours-noop"], noop)
    print(f"  ours / ansible: {median(found['ours']) / base:.2f} (target <= 0.5)")
    emit(f"host rollback (symlink switch) on {hosts} hosts", ours=found["ours"],
         peer=found["ansible"], unit="s", peer_name="ansible-playbook -f 10")


def part2(bench: Bench, rounds: int, hosts: int, fresh: Fresh) -> None:
    """The ansible.playbook step beside the same playbook runs by hand."""
    rollback = REPO / "playbooks" / "rollback.yml"
    found = alternate(
        rounds,
        {
            "step": fresh(lambda: bench.ours("playbook")),
            "hand-check": fresh(lambda: bench.ansible(rollback, "--check", "--diff")),
            "hand-apply": fresh(lambda: bench.ansible(rollback)),
            "hand-verify": fresh(lambda: bench.ansible(rollback, "--check"), "1.4.1"),
        },
    )
    print(f"\n2. ansible.playbook (playbooks/rollback.yml) on {hosts} hosts ({load()})")
    apply_ = median(found["hand-apply"])
    by_hand = [
        c + a + v
        for c, a, v in zip(
            found["hand-check"], found["hand-apply"], found["hand-verify"], strict=True
        )
    ]
    line("ansible-playbook by hand: the real run", found["hand-apply"])
    line("by hand: --check --diff, the run, --check", by_hand, apply_)
    line("crystal-runbook ansible.playbook step", found["step"], apply_)
    overhead = median(found["step"]) - median(by_hand)
    print(
        f"  overhead of the step over the same three runs by hand: {overhead:+.2f} s "
        f"({overhead / median(by_hand) * 100:+.0f} %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--parts", default="1,2", help="which parts: 1, 2 or 1,2")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="crystal-bench-hosts-"))
    bench = Bench(root, options.hosts)
    try:
        print(f"hosts: {options.hosts} practice sshd on loopback; {os.cpu_count()} CPUs; {load()}")

        def fresh(fn: Callable[[], float], release: str = "1.4.2") -> Callable[[], float]:
            def call() -> float:
                bench.put(release)
                return fn()

            return call

        parts = {p.strip() for p in options.parts.split(",")}
        if "1" in parts:
            part1(bench, options.rounds, options.hosts, fresh)
        if "2" in parts:
            part2(bench, options.rounds, options.hosts, fresh)
    finally:
        bench.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
