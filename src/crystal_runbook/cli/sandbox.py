"""`crystal-runbook sandbox up|down|status`: the local practice cluster (design.md section 7).

Each command parses its options and calls one function of ``crystal_runbook.sandbox``
(``daemon.spawn``/``daemon.stop``/``daemon.fetch_status`` or, in the foreground,
``lifecycle.start``); the sandbox package is imported inside the commands so that
``crystal-runbook --help`` stays light.
"""


import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from crystal_runbook.cli import _common, sandbox_hosts

DEFAULT_PORT = 17443

app = typer.Typer(
    help=(
        "A local practice Kubernetes cluster on loopback.\n\n"
        "Example: crystal-runbook sandbox up --detach && "
        "KUBECONFIG=.crystal/sandbox/kubeconfig kubectl -n crystal get deploy maia"
    ),
    no_args_is_help=True,
)


def _fault_specs(
    specs: list[str],
    *,
    fail_rate: float,
    throttle_rate: float,
    drop_rate: float,
    latency: float,
    fault_path: str | None,
) -> list[str]:
    """The --fault specs plus the ones the convenience flags stand for."""
    out = list(specs)
    where = f",path={fault_path}" if fault_path else ""
    if fail_rate:
        out.append(f"500,fraction={fail_rate}{where}")
    if throttle_rate:
        out.append(f"429,fraction={throttle_rate}{where}")
    if drop_rate:
        out.append(f"drop,fraction={drop_rate}{where}")
    if latency:
        out.append(f"latency={latency}{where}")
    return out


def _print(ctx: typer.Context, doc: dict[str, Any], text: str) -> None:
    if _common.options(ctx).json:
        print(json.dumps(doc, indent=2))
    else:
        print(text)


@app.command()
def up(
    ctx: typer.Context,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; return once it answers.")
    ] = False,
    port: Annotated[
        int, typer.Option("--port", help="TCP port on 127.0.0.1 (0 picks a free one).")
    ] = DEFAULT_PORT,
    ready_delay: Annotated[
        float, typer.Option("--ready-delay", help="Seconds from a pod's start to Ready.")
    ] = 0.5,
    seed: Annotated[
        bool, typer.Option("--seed/--no-seed", help="Create namespace crystal and deployment maia.")
    ] = True,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="Fault rule, repeatable: KIND[,fraction=F][,path=RE][,method=M][,count=N]"
            "[,retry_after=S]; KIND is an HTTP status (500, 429), drop or latency=SECONDS.",
        ),
    ] = None,
    fail_rate: Annotated[
        float, typer.Option("--fail-rate", help="Answer this fraction of API requests with 500.")
    ] = 0.0,
    throttle_rate: Annotated[
        float, typer.Option("--throttle-rate", help="Answer this fraction with 429 + Retry-After.")
    ] = 0.0,
    drop_rate: Annotated[
        float, typer.Option("--drop-rate", help="Drop the connection of this fraction.")
    ] = 0.0,
    latency: Annotated[
        float, typer.Option("--latency", help="Add this many seconds to every API request.")
    ] = 0.0,
    fault_path: Annotated[
        str | None,
        typer.Option(
            "--fault-path", help="Limit the rate/latency flags to paths matching this regex."
        ),
    ] = None,
) -> None:
    """Start the sandbox (foreground unless --detach) and write <state>/sandbox/kubeconfig.

    Example: crystal-runbook sandbox up --detach --ready-delay 0.2 --fault 429,fraction=0.1
    """
    from crystal_runbook.sandbox import daemon, faults, lifecycle

    state_dir = _common.options(ctx).state_dir
    specs = _fault_specs(
        fault or [],
        fail_rate=fail_rate,
        throttle_rate=throttle_rate,
        drop_rate=drop_rate,
        latency=latency,
        fault_path=fault_path,
    )
    try:
        rules = [faults.Fault.parse(spec) for spec in specs]
    except faults.FaultSpecError as exc:
        raise _common.fail(str(exc), code=2) from None
    if ready_delay < 0:
        raise _common.fail("--ready-delay must not be negative", code=2)
    pid = daemon.running(state_dir)
    if pid is not None:
        raise _common.fail(
            f"a sandbox is already running for {state_dir} (pid {pid})",
            code=1,
            hint="crystal-runbook sandbox status, or crystal-runbook sandbox down",
        )
    if port and not _port_free(port):
        raise _common.fail(
            f"cannot listen on 127.0.0.1:{port}: the port is already in use",
            code=1,
            hint=f"choose another --port, or --port 0 for a free one; the inventory follows "
            f"it through {state_dir}/sandbox/endpoint.json",
        )
    if detach:
        try:
            endpoint = daemon.spawn(
                state_dir, port=port, ready_delay=ready_delay, seed=seed, fault_specs=specs
            )
        except daemon.DaemonError as exc:
            raise _common.fail(str(exc), code=1) from None
        _print(ctx, endpoint, _describe(endpoint))
        return
    try:
        sandbox = lifecycle.start(
            state_dir, port=port, ready_delay=ready_delay, seed=seed, faults=rules
        )
    except OSError as exc:
        raise _common.fail(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}",
            code=1,
            hint="choose another --port, or --port 0 for a free one",
        ) from None
    endpoint = {
        "pid": None,
        "url": sandbox.url,
        "port": sandbox.port,
        "kubeconfig": str(sandbox.kubeconfig_path),
        "health_url": sandbox.health_url(),
        "metrics_url": sandbox.metrics_url(),
    }
    _print(ctx, endpoint, _describe(endpoint) + "\nPress Ctrl-C to stop.")
    sys.stdout.flush()
    daemon.serve_until_signalled(state_dir, sandbox)


def _port_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be listened on (as the sandbox's server would)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _describe(endpoint: dict[str, Any]) -> str:
    lines = [f"sandbox running at {endpoint.get('url')}"]
    if endpoint.get("pid"):
        lines[0] += f" (pid {endpoint['pid']})"
    lines += [
        f"  kubeconfig:  {endpoint.get('kubeconfig')}"
        "  (context crystal-sandbox, namespace crystal)",
        f"  health URL:  {endpoint.get('health_url')}",
        f"  metrics URL: {endpoint.get('metrics_url')}",
        f"  try:         KUBECONFIG={endpoint.get('kubeconfig')} kubectl get deploy,rs,pods",
    ]
    return "\n".join(lines)


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop the sandbox started for this state directory (by its PID file).

    Example: crystal-runbook sandbox down
    """
    from crystal_runbook.sandbox import daemon

    state_dir: Path = _common.options(ctx).state_dir
    pid = daemon.stop(state_dir)
    doc = {"stopped": pid is not None, "pid": pid}
    _print(ctx, doc, f"sandbox stopped (pid {pid})" if pid else "no sandbox was running")


@app.command()
def status(ctx: typer.Context) -> None:
    """Show whether the sandbox runs, where, and the state of its deployments.

    Exit code 0 when it runs and answers, 1 otherwise.
    Example: crystal-runbook sandbox status --output json
    """
    from crystal_runbook.sandbox import daemon

    state_dir: Path = _common.options(ctx).state_dir
    pid = daemon.running(state_dir)
    endpoint = daemon.read_endpoint(state_dir) if pid is not None else None
    info = daemon.fetch_status(str(endpoint["url"])) if endpoint else None
    if pid is None or endpoint is None or info is None:
        _print(
            ctx,
            {"running": False, "pid": pid},
            "sandbox is not running" if pid is None else f"sandbox process {pid} does not answer",
        )
        raise typer.Exit(1)
    deployments = _deployments(str(endpoint["url"]))
    doc: dict[str, Any] = {"running": True, **info, "deployments": deployments}
    up = f"up {info['uptime_seconds']:.0f}s"
    head_start = info.get("seeded_pods_head_start_seconds") or 0
    if head_start:  # else its pods' age (kubectl, /health) looks like a wrong uptime
        up += (
            f"; its seeded pods were started {head_start:.0f}s before it, with logs and "
            "counters from then"
        )
    lines = [
        f"sandbox running at {info['url']} (pid {pid}, {up})",
        f"  kubeconfig: {info['kubeconfig']}",
        f"  requests served: {info['requests']}; faults: {len(info['faults'])}",
    ]
    for d in deployments:
        lines.append(
            f"  deployment {d['namespace']}/{d['name']}: revision {d['revision']}, "
            f"{d['ready']}/{d['replicas']} ready, image {d['image']}"
        )
    _print(ctx, doc, "\n".join(lines))


def _deployments(url: str) -> list[dict[str, Any]]:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/apis/apps/v1/deployments", timeout=2.0) as resp:  # noqa: S310 - loopback URL of our own sandbox  # nosec B310
            items = json.loads(resp.read()).get("items", [])
    except (OSError, ValueError):
        return []
    out = []
    for d in items:
        containers = d["spec"]["template"]["spec"].get("containers") or [{}]
        out.append(
            {
                "namespace": d["metadata"].get("namespace"),
                "name": d["metadata"]["name"],
                "revision": (d["metadata"].get("annotations") or {}).get(
                    "deployment.kubernetes.io/revision"
                ),
                "replicas": d["spec"].get("replicas", 0),
                "ready": (d.get("status") or {}).get("readyReplicas", 0),
                "image": containers[0].get("image"),
            }
        )
    return out


app.add_typer(sandbox_hosts.app, name="hosts")
