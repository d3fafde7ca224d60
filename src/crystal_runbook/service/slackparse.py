"""The `/crystal` command's text, tokenised strictly: what a Slack user may type, nothing more.

Why: the text of a slash command is whatever anyone typed, and it ends up as runbook
parameters. It is never passed to a shell, and it is refused before anything runs when it
is over ``MAX_TEXT`` characters (the checklist's input limit), holds control characters
(newlines, NUL) or shell syntax (`;`, backticks, ``$(``, ``${``, ``&&``, ``||``), names an
unknown command, or has extra arguments. Names (service, environment) must look like names
and numbers like numbers. The grammar, positional and explicit (``ENV`` is always the word
after ``SERVICE``, so a typo in it is an error, never a reason)::

    rollback SERVICE [ENV] [reason…]     scale SERVICE REPLICAS [ENV]
    health SERVICE [ENV]                 logs SERVICE [ENV] [grep…]
    status                               runs [SERVICE]
    drill SERVICE [ENV]                  help

Slack sends ``<``, ``>`` and ``&`` as ``&lt;``, ``&gt;`` and ``&amp;``; they are decoded
before the checks, so ``&amp;&amp;`` is refused like ``&&``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from crystal_runbook import errors

MAX_TEXT = 1000
"""Characters a command may have (the source checklist's input limit)."""
MAX_REPLICAS = 1000
"""Replicas a Slack `scale` may ask for (the CLI's `--force` is not offered in Slack)."""
MAX_GREP = 200

COMMANDS = ("rollback", "scale", "health", "logs", "status", "runs", "drill", "help")
USAGE = {
    "rollback": "rollback SERVICE [ENV] [reason…]",
    "scale": "scale SERVICE REPLICAS [ENV]",
    "health": "health SERVICE [ENV]",
    "logs": "logs SERVICE [ENV] [grep…]",
    "status": "status",
    "runs": "runs [SERVICE]",
    "drill": "drill SERVICE [ENV]",
    "help": "help",
}
SERVICE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
ENV = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
REPLICAS = re.compile(r"[0-9]{1,4}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_SHELL = ("`", "$(", "${", ";", "&&", "||")


@dataclass(frozen=True)
class Command:
    """A parsed `/crystal` command."""

    name: str
    service: str | None = None
    env: str | None = None
    """None: the inventory's default environment."""
    replicas: int | None = None
    reason: str = ""
    grep: str | None = None

    def describe(self) -> str:
        """The command as it would be typed, for messages and the journal."""
        words = [self.name]
        if self.service:
            words.append(self.service)
        if self.name == "scale" and self.replicas is not None:
            words.append(str(self.replicas))
        if self.env:
            words.append(self.env)
        if self.reason:
            words.append(self.reason)
        if self.grep:
            words.append(self.grep)
        return " ".join(words)


def unescape(text: str) -> str:
    """Slack's message escaping undone (``&lt;`` ``&gt;`` ``&amp;``, in that order)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse(text: str) -> Command:
    """Tokenise and check a command's text.

    Raises:
        errors.ParamError: too long, control characters, shell syntax, unknown command,
            missing or extra arguments, or a malformed name or number. Nothing has run.
    """
    if len(text) > MAX_TEXT:
        raise errors.ParamError(
            f"the command is {len(text)} characters long; at most {MAX_TEXT} are accepted",
            hint="shorten the reason",
        )
    control = _CONTROL.search(text)
    if control is not None:
        raise errors.ParamError(
            f"the command holds a control character ({_named(control.group())}); "
            "type it on one line",
        )
    decoded = unescape(text)
    for token in _SHELL:
        if token in decoded:
            raise errors.ParamError(
                f"shell syntax {token!r} is not accepted in a command "
                "(arguments are never passed to a shell)",
                hint="type plain words: /crystal rollback maia production p99 above 2s",
            )
    words = decoded.split()
    if not words:
        return Command("help")
    name, args = words[0].lower(), words[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        raise errors.ParamError(
            f"unknown command {name[:40]!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
            hint="commands: " + ", ".join(COMMANDS) + "; `/crystal help` explains them",
        )
    return _GRAMMAR[name](name, args)


def _named(char: str) -> str:
    names = {"\n": "a newline", "\r": "a carriage return", "\x00": "NUL", "\t": "a tab"}
    return names.get(char, f"U+{ord(char):04X}")


def _usage(name: str) -> str:
    return f"usage: /crystal {USAGE[name]}"


def _service(name: str, args: list[str]) -> str:
    if not args:
        raise errors.ParamError(f"{name} needs a SERVICE", hint=_usage(name))
    value = args[0]
    if not SERVICE.fullmatch(value):
        raise errors.ParamError(
            f"{value[:80]!r} is not a service name (lower-case letters, digits and -)",
            hint=_usage(name),
        )
    return value


def _env(name: str, value: str) -> str:
    if not ENV.fullmatch(value):
        raise errors.ParamError(
            f"{value[:80]!r} is not an environment name (lower-case letters, digits, - and _)",
            hint=_usage(name),
        )
    return value


def _no_more(name: str, args: list[str], used: int) -> None:
    if len(args) > used:
        extra = " ".join(args[used:])
        raise errors.ParamError(f"extra arguments: {extra[:80]!r}", hint=_usage(name))


def _bare(name: str, args: list[str]) -> Command:
    _no_more(name, args, 0)
    return Command(name)


def _service_env(name: str, args: list[str]) -> Command:
    service = _service(name, args)
    _no_more(name, args, 2)
    return Command(name, service=service, env=_env(name, args[1]) if len(args) > 1 else None)


def _rollback(name: str, args: list[str]) -> Command:
    service = _service(name, args)
    env = _env(name, args[1]) if len(args) > 1 else None
    return Command(name, service=service, env=env, reason=" ".join(args[2:]))


def _scale(name: str, args: list[str]) -> Command:
    service = _service(name, args)
    if len(args) < 2:
        raise errors.ParamError("scale needs REPLICAS", hint=_usage(name))
    if not REPLICAS.fullmatch(args[1]) or int(args[1]) > MAX_REPLICAS:
        raise errors.ParamError(
            f"REPLICAS must be a whole number from 0 to {MAX_REPLICAS}, not {args[1][:20]!r}",
            hint=_usage(name),
        )
    _no_more(name, args, 3)
    env = _env(name, args[2]) if len(args) > 2 else None
    return Command(name, service=service, env=env, replicas=int(args[1]))


def _logs(name: str, args: list[str]) -> Command:
    service = _service(name, args)
    env = _env(name, args[1]) if len(args) > 1 else None
    grep = " ".join(args[2:]) or None
    if grep is not None:
        if len(grep) > MAX_GREP:
            raise errors.ParamError(f"the grep pattern is longer than {MAX_GREP} characters")
        try:
            re.compile(grep)
        except re.error as exc:
            raise errors.ParamError(f"{grep[:80]!r} is not a regular expression: {exc}") from None
    return Command(name, service=service, env=env, grep=grep)


def _runs(name: str, args: list[str]) -> Command:
    _no_more(name, args, 1)
    return Command(name, service=_service(name, args) if args else None)


_GRAMMAR = {
    "rollback": _rollback,
    "scale": _scale,
    "health": _service_env,
    "logs": _logs,
    "status": _bare,
    "runs": _runs,
    "drill": _service_env,
    "help": _bare,
}
