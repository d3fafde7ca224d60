"""Jinja2 templates in runbooks: checked before anything runs, rendered just before each step.

Two jobs, kept together because they must agree on what a name means:

- ``check``: a static pass over a template's syntax tree that finds undefined names, unknown
  parameters and references to a step that has not run yet (or does not exist), so `validate`
  and `plan` report them with file:line:column before any step runs.
- ``render``: sandboxed rendering with strict undefined. A value that is exactly one
  ``{{ expression }}`` keeps its native type (an integer stays an integer, a mapping a mapping);
  anything else renders to a string.

At plan time the outputs of steps that have not run are unknown; they render as ``Deferred``
placeholders that print as ``<steps.undo.outputs.to_revision>``.

Rendering has resource limits (``MAX_ITERATIONS`` loop iterations and ``MAX_OUTPUT``
characters per render, no huge powers): a template cannot hang `plan` or eat the machine.

Values substituted into markup (an action's ``markup`` fields, e.g. the text of a Slack
message) are escaped with that markup's rules, so that what a user typed (a --reason, an
actor name) is shown as text and never read as markup such as Slack's ``<!channel>``; the
runbook's own text around them is left as written. ``| safe`` opts a value out.

Shell commands are markup too (dialect ``shell``, e.g. `ssh.run`'s `command`): every value
becomes one word quoted with ``shlex.quote``, so a parameter such as ``1.4.2; touch /tmp/x``,
``$(id)``, backticks or a newline reaches the shell as data, never as syntax. ``shell_problems``
finds values placed inside shell quotes, where that quoting would not protect them.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    Undefined,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from crystal_runbook.engine.yamlsource import PathKey

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}|\{%).)+)\}\}\s*$", re.S)
RUN_FIELDS = ("id", "actor", "started_at", "drill")
STEP_FIELDS = ("outputs", "status", "changed")
FAILED_STEP_FIELDS = ("id", "uses", "error")


class Deferred:
    """An output of a step that has not run yet (plan time)."""

    __slots__ = ("_path",)

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> Deferred:
        if name.startswith("_"):
            raise AttributeError(name)
        return Deferred(f"{self._path}.{name}")

    def __getitem__(self, key: object) -> Deferred:
        return Deferred(f"{self._path}.{key}")

    def __str__(self) -> str:
        return f"<{self._path}>"

    __repr__ = __str__


def is_deferred(value: Any) -> bool:
    """True if ``value`` is or contains an unknown-until-run placeholder."""
    if isinstance(value, Deferred):
        return True
    if isinstance(value, str):
        return "<steps." in value and ".outputs" in value
    if isinstance(value, Mapping):
        return any(is_deferred(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_deferred(v) for v in value)
    return False


MAX_ITERATIONS = 100_000
"""Loop iterations (all `range()`s together) one render may make: a runbook's templates
loop over a few items; a template that wants more is a mistake or an attack."""
MAX_OUTPUT = 1_000_000
"""Characters one render may produce, and the size of any string or list it builds."""


class LimitExceeded(SecurityError):
    """A template went past MAX_ITERATIONS or MAX_OUTPUT."""


_iterations: ContextVar[list[int] | None] = ContextVar("template_iterations", default=None)


def _bounded_range(*args: int) -> range:
    """`range` of the sandbox, counting toward the render's MAX_ITERATIONS."""
    numbers = range(*args)
    left = _iterations.get()
    if left is not None:
        left[0] -= len(numbers)
        if left[0] < 0:
            raise LimitExceeded(
                f"the template loops more than {MAX_ITERATIONS:,} times (the limit): "
                "templates are for short lists, not computation"
            )
    elif len(numbers) > MAX_ITERATIONS:
        raise LimitExceeded(f"range of {len(numbers):,} items; the limit is {MAX_ITERATIONS:,}")
    return numbers


def _too_big(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT


class _LimitedEnvironment(SandboxedEnvironment):
    """The sandbox with resource limits: loop iterations, sizes of strings and lists built
    by `*` and by filters or methods given huge counts, and big powers."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if sized and len(seq) * count > MAX_OUTPUT:
                    raise LimitExceeded(
                        f"the template builds a value of {len(seq) * count:,} items; the "
                        f"limit is {MAX_OUTPUT:,}"
                    )
        if operator == "**" and isinstance(right, int) and abs(right) > 1000:
            raise LimitExceeded(f"the template raises to the power {right:,}; the limit is 1,000")
        return super().call_binop(context, operator, left, right)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if any(_too_big(a) for a in (*args, *kwargs.values())) and __obj is not _bounded_range:
            raise LimitExceeded(
                f"the template passes a number over {MAX_OUTPUT:,} (the limit) to "
                f"{getattr(__obj, '__name__', 'a call')}"
            )
        return super().call(__context, __obj, *args, **kwargs)


def _guarded(name: str, fn: Any) -> Any:
    """A filter that refuses counts over MAX_OUTPUT (`center(10**9)` would build 1 GB)."""

    @functools.wraps(fn)  # keeps jinja's pass_context/pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if any(_too_big(a) for a in (*args, *kwargs.values())):
            raise LimitExceeded(
                f"the template passes a number over {MAX_OUTPUT:,} (the limit) to the {name} filter"
            )
        return fn(*args, **kwargs)

    return guarded


def _environment(**options: Any) -> _LimitedEnvironment:
    env = _LimitedEnvironment(undefined=StrictUndefined, autoescape=False, **options)
    env.globals["range"] = _bounded_range
    env.filters = {name: _guarded(name, fn) for name, fn in env.filters.items()}
    return env


_ENV = _environment()
JINJA_GLOBALS = frozenset(_ENV.globals)


def slack_escape(text: str) -> str:
    """Slack's escaping of text: ``&``, ``<`` and ``>`` as HTML entities, nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_unescape(text: str) -> str:
    """Text escaped for Slack (``slack_escape``) as a person reads it: what the console and
    the journal show; the escaped form belongs on the wire to Slack only."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def shell_quote(value: Any) -> str:
    """One shell word holding ``value`` (as text), whatever characters it has."""
    return shlex.quote(str(value))


ESCAPES = {"slack": slack_escape, "shell": shell_quote}
"""Markup dialects an action's ``markup`` fields may name, with their escaping."""
WHOLE_VALUE = frozenset({"shell"})
"""Dialects that escape a value as one piece: a number or a list becomes one quoted word
(each string inside a list escaped apart would leave the list's own brackets and commas
to the shell)."""


def _escaped(escape: Any, *, whole: bool = False) -> Any:
    def finalize(value: Any) -> Any:
        if isinstance(value, Markup):
            return value
        if whole or isinstance(value, str):
            return escape(value)
        return _escape_data(value, escape)

    return finalize


def _escape_data(value: Any, escape: Any) -> Any:
    """Every string inside a value (a native mapping or list put into markup) escaped."""
    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, Mapping):
        return {k: _escape_data(v, escape) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escape_data(v, escape) for v in value]
    return value


_MARKUP_ENVS = {
    name: _environment(finalize=_escaped(escape, whole=name in WHOLE_VALUE))
    for name, escape in ESCAPES.items()
}


class RenderError(Exception):
    """A template failed to render; ``loc`` is where in the runbook it sits."""

    def __init__(self, loc: PathKey, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def has_template(value: Any) -> bool:
    """True if ``value`` (or anything inside it) is a string with template syntax."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    return False


def render(
    value: Any,
    context: Mapping[str, Any],
    loc: PathKey = (),
    *,
    markup: Mapping[str, str] | None = None,
) -> Any:
    """Render every template inside ``value`` (strings, lists, mappings) against ``context``.

    Args:
        markup: top-level keys of ``value`` that are markup, and their dialect (``slack``):
            values substituted into them are escaped with its rules.
    Raises:
        RenderError: an undefined name, a failing filter, a sandbox violation.
    """
    if markup and isinstance(value, Mapping):
        return {k: _render(v, context, (*loc, k), markup.get(str(k))) for k, v in value.items()}
    return _render(value, context, loc, None)


def _render(value: Any, context: Mapping[str, Any], loc: PathKey, dialect: str | None) -> Any:
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        budget = _iterations.set([MAX_ITERATIONS])
        try:
            single = _SINGLE.match(value)
            if single:
                native = _native(single.group("expr"), context)
                if dialect is None:
                    return native
                if dialect in WHOLE_VALUE:
                    return str(native) if isinstance(native, Markup) else ESCAPES[dialect](native)
                return _escape_data(native, ESCAPES[dialect])
            rendered = _template(dialect, value).render(**context)
        except TemplateError as exc:
            raise RenderError(loc, f"template error: {exc.message or exc}") from None
        except (OverflowError, MemoryError, RecursionError, ValueError, TypeError) as exc:
            raise RenderError(
                loc, f"template error: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        finally:
            _iterations.reset(budget)
        if len(rendered) > MAX_OUTPUT:
            raise RenderError(
                loc,
                f"template error: the template renders {len(rendered):,} characters; the "
                f"limit is {MAX_OUTPUT:,}",
            )
        return rendered
    if isinstance(value, Mapping):
        return {k: _render(v, context, (*loc, k), dialect) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, context, (*loc, i), dialect) for i, v in enumerate(value)]
    return value


def shell_problems(text: str) -> list[str]:
    """Template values placed inside shell quotes, where quoting them would not protect them.

    ``"releases/{{ v }}"`` would hand ``'$(id)'`` to a double-quoted string, where ``$(id)``
    still runs; a value must stand outside quotes (``"$dir"/releases/{{ v }}``) and is then
    quoted on render. Jinja tags and comments are skipped; backslash escapes are honoured.
    """
    quote: str | None = None
    i = 0
    while i < len(text):
        if text.startswith("{{", i):
            if quote is not None:
                kind = "single" if quote == "'" else "double"
                return [
                    f"a template value inside {kind} quotes in a shell command: write it "
                    'outside quotes (e.g. "$app_root"/releases/{{ params.version }}); every '
                    "value is shell-quoted on render"
                ]
            end = text.find("}}", i + 2)
            i = len(text) if end < 0 else end + 2
            continue
        if text.startswith(("{%", "{#"), i):
            end = text.find(text[i + 1] + "}", i + 2)
            i = len(text) if end < 0 else end + 2
            continue
        char = text[i]
        if quote == "'":
            if char == "'":
                quote = None
        elif char == "\\":
            i += 2
            continue
        elif quote == '"':
            if char == '"':
                quote = None
        elif char in "'\"":
            quote = char
        i += 1
    return []


def evaluate(expression: str, context: Mapping[str, Any], loc: PathKey = ()) -> Any:
    """Evaluate a bare expression (a `when:`), or a ``{{ }}``-wrapped one."""
    single = _SINGLE.match(expression)
    expr = single.group("expr") if single else expression
    budget = _iterations.set([MAX_ITERATIONS])
    try:
        return _native(expr, context)
    except TemplateError as exc:
        raise RenderError(loc, f"expression error: {exc.message or exc}") from None
    except (OverflowError, MemoryError, RecursionError, ValueError, TypeError) as exc:
        raise RenderError(
            loc, f"expression error: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    finally:
        _iterations.reset(budget)


COMPILED_CACHE = 512
"""Compiled templates and expressions kept per process (a runbook's are rendered again at
each step, each retry and each run of `serve`; compiling one costs about 2 ms)."""


@functools.lru_cache(maxsize=COMPILED_CACHE)
def _template(dialect: str | None, source: str) -> Template:
    """``source`` compiled in the environment of ``dialect`` (a syntax error is not kept)."""
    return (_ENV if dialect is None else _MARKUP_ENVS[dialect]).from_string(source)


@functools.lru_cache(maxsize=COMPILED_CACHE)
def _expression(expr: str) -> Callable[..., Any]:
    """``expr`` compiled as an expression (a syntax error is not kept)."""
    return _ENV.compile_expression(expr, undefined_to_none=False)


def _native(expr: str, context: Mapping[str, Any]) -> Any:
    """Evaluate an expression to a Python value; an undefined part raises at once."""
    value = _expression(expr)(**context)
    _raise_undefined(value)
    return value


def _raise_undefined(value: Any) -> None:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    elif isinstance(value, Mapping):
        for item in value.values():
            _raise_undefined(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _raise_undefined(item)


# --- static checks -------------------------------------------------------------------------


@dataclass
class Scope:
    """What a template may refer to at one place in a runbook."""

    params: frozenset[str]
    earlier_steps: Mapping[str, tuple[str, ...] | None]
    """Steps that have run before this one: id -> declared output names (None: undeclared)."""
    later_steps: frozenset[str] = frozenset()
    failure: bool = False
    """In `on_failure`, where `failed_step` is defined."""
    extra: frozenset[str] = field(default_factory=frozenset)

    def roots(self) -> frozenset[str]:
        base = {"params", "env", "service", "target", "run", "steps", *self.extra}
        if self.failure:
            base.add("failed_step")
        return frozenset(base) | JINJA_GLOBALS


@dataclass(frozen=True)
class Reference:
    """A name and the attribute chain read from it, e.g. ("steps", "undo", "outputs")."""

    chain: tuple[str, ...]
    lineno: int


def _chains(node: nodes.Node) -> Iterator[Reference]:
    """Every load of a name with the constant attribute/item chain that follows it."""
    stored = {n.name for n in node.find_all(nodes.Name) if n.ctx in ("store", "param")}
    consumed: set[int] = set()
    for sub in node.find_all((nodes.Getattr, nodes.Getitem)):
        if id(sub) in consumed:
            continue
        chain: list[str] = []
        cur: nodes.Node = sub
        while isinstance(cur, nodes.Getattr | nodes.Getitem):
            consumed.add(id(cur))
            if isinstance(cur, nodes.Getattr):
                chain.append(cur.attr)
            elif isinstance(cur.arg, nodes.Const) and isinstance(cur.arg.value, str):
                chain.append(cur.arg.value)
            else:
                chain.clear()  # dynamic subscript: only the root can be checked
            cur = cur.node
        if isinstance(cur, nodes.Name):
            consumed.add(id(cur))
            if cur.name not in stored:
                yield Reference((cur.name, *reversed(chain)), sub.lineno)
    for name in node.find_all(nodes.Name):
        if id(name) not in consumed and name.ctx == "load" and name.name not in stored:
            yield Reference((name.name,), name.lineno)


def check(text: str, scope: Scope, *, expression: bool = False) -> list[str]:
    """Problems with one template string, as messages (empty when it is fine)."""
    try:
        if expression and not _SINGLE.match(text):
            tree: nodes.Node = _ENV.parse("{{ " + text + " }}")
        else:
            tree = _ENV.parse(text)
    except TemplateSyntaxError as exc:
        return [f"template syntax error: {exc.message}"]
    problems: list[str] = []
    roots = scope.roots()
    for ref in _chains(tree):
        message = _check_reference(ref.chain, scope, roots)
        if message and message not in problems:
            problems.append(message)
    return problems


def _check_reference(chain: tuple[str, ...], scope: Scope, roots: frozenset[str]) -> str | None:
    root = chain[0]
    if root not in roots:
        known = ", ".join(sorted(roots - JINJA_GLOBALS))
        return f"undefined name {root!r} in template; names available here: {known}"
    if root == "params" and len(chain) > 1 and chain[1] not in scope.params:
        params = ", ".join(sorted(scope.params)) or "none"
        return f"unknown parameter {chain[1]!r} in template; declared parameters: {params}"
    if root == "run" and len(chain) > 1 and chain[1] not in RUN_FIELDS:
        return f"run has no field {chain[1]!r}; it has {', '.join(RUN_FIELDS)}"
    if root == "failed_step" and len(chain) > 1 and chain[1] not in FAILED_STEP_FIELDS:
        return f"failed_step has no field {chain[1]!r}; it has {', '.join(FAILED_STEP_FIELDS)}"
    if root == "steps" and len(chain) > 1:
        step = chain[1]
        if step not in scope.earlier_steps:
            if step in scope.later_steps:
                return (
                    f"refers to steps.{step}, which runs later; a step can only use the "
                    "outputs of steps before it"
                )
            known = ", ".join(scope.earlier_steps) or "none"
            return f"refers to steps.{step}, which does not exist; steps before this one: {known}"
        if len(chain) > 2 and chain[2] not in STEP_FIELDS:
            return f"steps.{step} has no field {chain[2]!r}; it has {', '.join(STEP_FIELDS)}"
        declared = scope.earlier_steps[step]
        if (
            len(chain) > 3
            and chain[2] == "outputs"
            and declared is not None
            and chain[3] not in declared
        ):
            outputs = ", ".join(declared) or "none"
            return f"step {step!r} has no output {chain[3]!r}; its outputs: {outputs}"
    return None
