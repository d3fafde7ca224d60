"""``python -m crystal_runbook.sandbox``: run a sandbox in this process until SIGTERM/SIGINT.

With ``--detach`` the process forks: the child serves (in a new session, detached from the
terminal) and reports over a pipe once it answers; the parent prints ``ready <url>`` and
exits 0, or exits 1 if the child failed. ``crystal-runbook sandbox up --detach`` runs this.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from crystal_runbook.sandbox import daemon, faults, lifecycle


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m crystal_runbook.sandbox", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=Path(".crystal"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ready-delay", type=float, default=0.5)
    parser.add_argument("--no-seed", action="store_true")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC")
    parser.add_argument("--detach", action="store_true")
    return parser


def _start(args: argparse.Namespace) -> lifecycle.Sandbox:
    return lifecycle.start(
        args.state_dir,
        port=args.port,
        host=args.host,
        ready_delay=args.ready_delay,
        seed=not args.no_seed,
        faults=[faults.Fault.parse(s) for s in args.fault],
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        for spec in args.fault:
            faults.Fault.parse(spec)
    except faults.FaultSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if daemon.running(args.state_dir) is not None:
        print(f"error: a sandbox is already running for {args.state_dir}", file=sys.stderr)
        return 1
    if not args.detach:
        sandbox = _start(args)
        print(f"ready {sandbox.url}", flush=True)
        daemon.serve_until_signalled(args.state_dir, sandbox)
        return 0
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: serve
        os.close(read_fd)
        os.setsid()
        os.dup2(2, 1)  # stdout is the launcher's pipe: release it, write to the log instead
        try:
            sandbox = _start(args)
        except Exception as exc:  # noqa: BLE001 - whatever stops the start must reach the parent
            print(f"error: the sandbox failed to start: {exc!r}", file=sys.stderr, flush=True)
            os._exit(1)
        daemon.serve_until_signalled(args.state_dir, sandbox, ready_fd=write_fd)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        message = pipe.readline().decode().strip()
    if not message.startswith("ready "):
        os.waitpid(pid, 0)
        return 1
    print(message, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
