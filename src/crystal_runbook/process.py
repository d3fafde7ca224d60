"""The console script's process: how it starts and how it ends, for a fast rollback.

`crystal-runbook` (and `python -m crystal_runbook`) enter here, not at ``cli.main``, so that
what follows applies to the command-line process only, never to a test or a library that
imports the CLI:

- Start: a command builds a few hundred thousand objects while it imports and wires itself
  (typer, pydantic models, the kubernetes client) and makes almost no reference cycles,
  yet the cyclic garbage collector scans that growing heap again and again (0.1 to 0.2 s of
  CPU in a rollback here). It is off for commands that run to completion; those that may
  run for hours (``LONG_RUNNING``) turn it back on once started, with what start-up built
  frozen out of its scans.
- Pydantic plugins: pydantic looks for them in every installed package's entry points on
  first use (10 to 30 ms); a command-line run loads none, unless PYDANTIC_DISABLE_PLUGINS
  is set to something else.
- kubernetes-validate: where it is installed (a dev extra: the sandbox's schema generator
  reads it), `import kubernetes` loads it, with jsonschema, for the dynamic client's
  validation, which crystal-runbook never uses: 0.1 s or more before a rollback's first
  request. The command-line process marks it absent, as it is in a production install.
- The kubernetes package: ``import kubernetes.client`` runs the package's ``__init__``,
  which imports all of its parts, among them ``config`` with requests, oauthlib and
  requests-oauthlib, and the dynamic client, watch, stream, leader election and informer
  modules (0.1 s of CPU before a rollback's first request). crystal-runbook uses only the
  client's transport and, for kubeconfigs beyond static credentials, the config loader. The
  command-line process loads those parts lazily (``importlib.util.LazyLoader``): each is
  executed on first use, as before, and never when unused. The config loader's first use is
  in ``kube.client.connect``, under its lock, so two threads never load it at once
  (Python 3.11's LazyLoader is not safe for that).
- End: once the command has closed the journal, released its locks and Lease and printed
  its result, the interpreter would still free every object one by one and collect the
  garbage (0.4 s after a rollback here). ``finish`` flushes stdout and stderr, runs the
  atexit handlers (libraries close their pools there) and ends the process with
  ``os._exit``. While another non-daemon thread still runs, it exits normally instead: the
  interpreter then waits for that thread, as it always has.
- Interrupts while it starts: Ctrl-C or SIGTERM that arrives while the command line is still
  being imported (a second or more on a loaded machine, before any command has its own
  handling) ends the process quietly with "interrupted" and exit 130, instead of a
  KeyboardInterrupt traceback. No command has started then: nothing changed, nothing to
  resume. The console script imports this module and calls ``main`` a few lines later, so
  the same handling is installed when the module is imported by the console script.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib.machinery
import os
import signal
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import NoReturn

LONG_RUNNING = frozenset({"watch", "serve", "logs", "sandbox", "demo", "drill"})
"""Commands that may run for hours: they keep the garbage collector."""


LAZY_MODULES = frozenset(
    f"kubernetes.{part}"
    for part in ("config", "dynamic", "watch", "stream", "leaderelection", "informer")
)
"""Parts of the kubernetes package loaded on first use in the command-line process."""


class _LazyFinder:
    """Finds ``LAZY_MODULES`` as usual, with their loader wrapped in ``LazyLoader``.

    A meta path finder by protocol (``find_spec``): ``importlib.abc`` costs 20 ms to import.
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in LAZY_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            from importlib.util import LazyLoader

            spec.loader = LazyLoader(spec.loader)
        return spec


def load_lazily() -> None:
    """Load ``LAZY_MODULES`` on first use from now on (once per process)."""
    if not any(isinstance(finder, _LazyFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LazyFinder())


def command_name(args: list[str]) -> str | None:
    """The command of a command line (global options and their values skipped)."""
    from crystal_runbook.cli import _hoist

    i = 0
    while i < len(args):
        token = args[i]
        if token in _hoist.GLOBAL_WITH_VALUE:
            i += 2
            continue
        if not token.startswith("-"):
            return token
        i += 1
    return None


def exit_code(code: object) -> int:
    """The status ``sys.exit(code)`` would end with (printing a message as it would)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def finish(code: object) -> NoReturn:
    """End the process with ``code`` without the interpreter's teardown (see the docstring)."""
    others = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    status = exit_code(code)
    if others:
        sys.exit(status)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`)
            stream.flush()
    atexit._run_exitfuncs()  # what the interpreter's own exit would run
    os._exit(status)


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def interrupted_while_starting() -> NoReturn:
    """End a command line interrupted before its command took over (see the docstring)."""
    with contextlib.suppress(OSError, ValueError):  # a closed stderr
        print("interrupted", file=sys.stderr)
    finish(130)


def _before_main(signum: int, frame: object) -> None:
    interrupted_while_starting()


if os.path.basename(sys.argv[0] if sys.argv else "").startswith("crystal-runbook"):
    # the console script imports this module, then calls ``main`` a few lines later: a
    # Ctrl-C in between would print a KeyboardInterrupt traceback from the script itself
    signal.signal(signal.SIGINT, _before_main)
    signal.signal(signal.SIGTERM, _before_main)


def main() -> NoReturn:
    """The console script: run the command line, then ``finish``."""
    gc.disable()
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    sys.modules.setdefault("kubernetes_validate", None)  # type: ignore[arg-type]  # "absent"
    load_lazily()
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt from here
        signal.signal(signal.SIGTERM, _sigterm)  # as Ctrl-C, also while the CLI imports
        from crystal_runbook import cli

        if command_name(sys.argv[1:]) in LONG_RUNNING:
            gc.freeze()
            gc.enable()
        cli.main()
    except SystemExit as exc:
        finish(exc.code)
    except KeyboardInterrupt:
        interrupted_while_starting()
    finish(0)
