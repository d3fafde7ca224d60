"""`crystal-runbook sandbox hosts up|down`: practice SSH hosts (real sshd) on loopback.

Each command parses its options and calls one function of ``crystal_runbook.hostsandbox``,
imported inside the command so that ``crystal-runbook --help`` stays light.
"""


import json
from typing import Annotated

import typer

from crystal_runbook.cli import _common

app = typer.Typer(
    help=(
        "Practice hosts: real OpenSSH servers on loopback for ssh.run and ansible.playbook.\n\n"
        "Example: crystal-runbook sandbox hosts up && "
        "crystal-runbook rollback maia --env vms --yes"
    ),
    no_args_is_help=True,
)


@app.command("up")
def up_cmd(
    ctx: typer.Context,
    count: Annotated[int, typer.Option("--count", help="How many hosts (vm1, vm2, ...).")] = 5,
) -> None:
    """Start practice hosts and write <state>/sandbox/hosts.ini and known_hosts.

    Each host runs sshd as you, on a free 127.0.0.1 port, with its own host key and the
    release tree of the practice service (bad release 1.4.2 live). They keep running until
    `crystal-runbook sandbox hosts down`.

    Example: crystal-runbook sandbox hosts up --count 3
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook import hostsandbox

        started = hostsandbox.up(opts.state_dir, count=count)
    if opts.json:
        print(json.dumps(started.as_json(), indent=2))
        return
    print(f"{len(started.hosts)} practice host(s) running (group {hostsandbox.GROUP}):")
    for host in started.hosts:
        print(f"  {host.name:<6} 127.0.0.1:{host.port}  pid {host.pid}  {host.directory}")
    print(f"  inventory:   {started.inventory}")
    print(f"  known_hosts: {started.known_hosts}")
    print(f"  client key:  {started.client_key}")
    print("  try:         crystal-runbook rollback maia --env vms --yes")


@app.command("down")
def down_cmd(ctx: typer.Context) -> None:
    """Stop the practice hosts of this state directory.

    Example: crystal-runbook sandbox hosts down
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook import hostsandbox

        stopped = hostsandbox.down(opts.state_dir)
    if opts.json:
        print(json.dumps({"stopped": [h.name for h in stopped]}))
        return
    names = ", ".join(h.name for h in stopped)
    print(f"stopped {len(stopped)} practice host(s): {names}" if stopped else "no host was running")
