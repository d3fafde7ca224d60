"""Let global options follow the command name, as kubectl's flags do.

`crystal-runbook rollback maia --env production` must mean the same as
`crystal-runbook --env production rollback maia`. Click only accepts a group's options before
the sub-command, so the argument list is rewritten: every global option (and its value) found
after the command name is moved to the front. Values of the command's own options are skipped
(a `--reason "--env"` stays a reason), and nothing after `--` is touched.
"""

from __future__ import annotations

# global options that take a value, and those that do not
GLOBAL_WITH_VALUE = frozenset(
    {"--env", "--inventory", "--runbooks", "--output", "-o", "--state-dir"}
)
GLOBAL_FLAGS = frozenset({"--verbose", "-v", "-vv", "-vvv"})

# options of sub-commands that take a value: their value is never mistaken for a global option
COMMAND_WITH_VALUE = frozenset(
    {
        "-p",
        "--param",
        "--reason",
        "--to-revision",
        "--replicas",
        "--since",
        "--tail",
        "--grep",
        "--limit",
        "--service",
        "--format",
        "--triggers",
        "--interval",
        "--port",
        "--ready-delay",
        "--http-port",
        "--hpa",
    }
)


def hoist_global_options(args: list[str]) -> list[str]:
    """Return ``args`` with every global option moved in front of the command name."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":  # noqa: S105 - the end-of-options marker, not a password  # nosec B105
            rest.extend(args[i:])
            break
        name = token.split("=", 1)[0]
        if token in GLOBAL_WITH_VALUE and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 2
            continue
        if (name in GLOBAL_WITH_VALUE and "=" in token) or token in GLOBAL_FLAGS:
            front.append(token)
        elif token in COMMAND_WITH_VALUE and i + 1 < len(args):
            rest.extend(args[i : i + 2])
            i += 2
            continue
        else:
            rest.append(token)
        i += 1
    return front + rest
