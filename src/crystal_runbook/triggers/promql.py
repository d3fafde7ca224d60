"""A small PromQL subset, evaluated over samples the `scrape` source collected itself.

Teams without Prometheus still need "error rate over the last minute" and "p99 latency", so
the scrape source keeps a ring of scraped samples and answers queries written in the same
language as the Prometheus source. One rule text then works against both: the shipped
`inventory/triggers.yaml` runs on Prometheus in production and on plain scrapes in the
sandbox. The subset is what rollback triggers use, and everything else is refused at load
time with the position of the unsupported part:

- numbers; selectors ``name{label="v", l2!="x", l3=~"re", l4!~"re"}`` with ``[5m]`` ranges;
- ``+ - * /`` (vector/vector matching one-to-one on all labels but the metric name);
- ``sum avg min max count`` with ``by (...)`` or ``without (...)``;
- ``rate increase avg_over_time min_over_time max_over_time last_over_time abs
  histogram_quantile``.

Differences from Prometheus, on purpose: ``rate`` is the per-second increase between the
first and last sample in the window (with counter resets), not extrapolated to the window's
edges; ratios of rates, which is what rules compare, come out the same.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from crystal_runbook.engine import durations

Labels = tuple[tuple[str, str], ...]
"""Sorted (name, value) pairs; the metric name is the ``__name__`` label."""

NAME = "__name__"
AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count"})
RANGE_FUNCTIONS = frozenset(
    {"rate", "increase", "avg_over_time", "min_over_time", "max_over_time", "last_over_time"}
)
FUNCTIONS = RANGE_FUNCTIONS | {"abs", "histogram_quantile"}
_UNSUPPORTED = frozenset(
    {"offset", "bool", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
)


class PromQLError(ValueError):
    """A query outside the subset, or one that cannot be evaluated; ``pos`` is 0-based."""

    def __init__(self, message: str, pos: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


@dataclass(frozen=True)
class Series:
    """One value of an instant vector."""

    labels: Labels
    value: float

    def label(self, name: str) -> str:
        return dict(self.labels).get(name, "")


# -- syntax tree -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Selector:
    matchers: tuple[Matcher, ...]
    range: float | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Aggregate:
    op: str
    expr: Node
    by: tuple[str, ...] | None = None
    without: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Negate:
    expr: Node


Node = Number | Selector | Call | Aggregate | Binary | Negate


def selectors(node: Node) -> list[Selector]:
    """Every selector in ``node`` (to know which ranges the ring must keep)."""
    if isinstance(node, Selector):
        return [node]
    if isinstance(node, Call):
        return [s for a in node.args for s in selectors(a)]
    if isinstance(node, Aggregate | Negate):
        return selectors(node.expr)
    if isinstance(node, Binary):
        return selectors(node.left) + selectors(node.right)
    return []


def longest_range(node: Node) -> float:
    """The longest ``[range]`` in ``node`` in seconds (0 if none)."""
    return max((s.range or 0.0 for s in selectors(node)), default=0.0)


# -- parser ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![A-Za-z_:]))
    |(?P<word>\d+[A-Za-z_][A-Za-z0-9_]*)
    |(?P<duration>\[[^\]]*\])
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>=~|!~|!=|==|>=|<=|[-+*/(){},=<>^%@])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            start = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise PromQLError(f"unexpected character {text[start]!r}", start)
        out.append(_Tok(m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self, text: str | None = None, kind: str | None = None) -> _Tok:
        tok = self.tok
        if (text is not None and tok.text != text) or (kind is not None and tok.kind != kind):
            wanted = repr(text) if text is not None else kind
            found = repr(tok.text) if tok.text else "the end of the query"
            raise PromQLError(f"expected {wanted}, found {found}", tok.pos)
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.sum()
        if self.tok.kind != "end":
            tok = self.tok
            if tok.text in {">", "<", ">=", "<=", "==", "!="}:
                raise PromQLError(
                    "comparisons belong in the rule's `op` and `threshold`, not in the query",
                    tok.pos,
                )
            raise PromQLError(f"unexpected {tok.text!r}", tok.pos)
        return node

    def sum(self) -> Node:
        node = self.product()
        while self.tok.text in ("+", "-"):
            op = self.take().text
            node = Binary(op, node, self.product())
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.tok.text in ("*", "/"):
            op = self.take().text
            node = Binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.tok.text == "-":
            self.take()
            return Negate(self.unary())
        if self.tok.text == "+":
            self.take()
        return self.primary()

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "number":
            self.take()
            return Number(float(tok.text))
        if tok.text == "(":
            self.take()
            node = self.sum()
            self.take(")")
            return node
        if tok.text == "{":
            return self.selector(None, tok.pos)
        if tok.kind == "ident":
            word = tok.text
            if word in _UNSUPPORTED:
                raise PromQLError(f"{word!r} is not supported by the scrape source", tok.pos)
            self.take()
            if word in AGGREGATIONS:
                return self.aggregate(word)
            if self.tok.text == "(":
                if word not in FUNCTIONS:
                    known = ", ".join(sorted(FUNCTIONS | AGGREGATIONS))
                    raise PromQLError(f"unknown function {word!r} (supported: {known})", tok.pos)
                return self.call(word, tok.pos)
            return self.selector(word, tok.pos)
        found = repr(tok.text) if tok.text else "the end of the query"
        raise PromQLError(f"expected a number, a metric or a function, found {found}", tok.pos)

    def labels_list(self) -> tuple[str, ...]:
        self.take("(")
        names: list[str] = []
        while self.tok.text != ")":
            names.append(self.take(kind="ident").text)
            if self.tok.text != ",":
                break
            self.take(",")
        self.take(")")
        return tuple(names)

    def aggregate(self, op: str) -> Node:
        by = without = None
        if self.tok.text in ("by", "without"):
            clause = self.take().text
            names = self.labels_list()
            by, without = (names, None) if clause == "by" else (None, names)
        self.take("(")
        expr = self.sum()
        self.take(")")
        if self.tok.text in ("by", "without"):
            if by is not None or without is not None:
                raise PromQLError("only one by/without clause", self.tok.pos)
            clause = self.take().text
            names = self.labels_list()
            by, without = (names, None) if clause == "by" else (None, names)
        return Aggregate(op, expr, by, without)

    def call(self, func: str, pos: int) -> Node:
        self.take("(")
        args: list[Node] = []
        while self.tok.text != ")":
            args.append(self.sum())
            if self.tok.text != ",":
                break
            self.take(",")
        self.take(")")
        want_range = func in RANGE_FUNCTIONS
        count = 2 if func == "histogram_quantile" else 1
        if len(args) != count:
            raise PromQLError(f"{func}() takes {count} argument(s), got {len(args)}", pos)
        last = args[-1]
        is_range = isinstance(last, Selector) and last.range is not None
        if want_range and not is_range:
            raise PromQLError(f"{func}() needs a range selector such as metric[1m]", pos)
        if not want_range and is_range:
            raise PromQLError(f"{func}() takes an instant vector, not a range", pos)
        if func == "histogram_quantile" and not isinstance(args[0], Number):
            raise PromQLError("histogram_quantile() needs a number as its first argument", pos)
        return Call(func, tuple(args))

    def selector(self, name: str | None, pos: int) -> Node:
        matchers: list[Matcher] = [] if name is None else [Matcher(NAME, "=", name)]
        if self.tok.text == "{":
            self.take("{")
            while self.tok.text != "}":
                label = self.take(kind="ident").text
                op_tok = self.tok
                if op_tok.text not in ("=", "!=", "=~", "!~"):
                    raise PromQLError("expected =, !=, =~ or !~ in a label matcher", op_tok.pos)
                self.take()
                value_tok = self.take(kind="string")
                value = _unquote(value_tok.text)
                if op_tok.text in ("=~", "!~"):
                    try:
                        re.compile(value)
                    except re.error as exc:
                        raise PromQLError(f"bad regular expression: {exc}", value_tok.pos) from None
                matchers.append(Matcher(label, op_tok.text, value))
                if self.tok.text != ",":
                    break
                self.take(",")
            self.take("}")
        if not matchers:
            raise PromQLError("a selector needs a metric name or a label matcher", pos)
        window: float | None = None
        if self.tok.kind == "duration":
            tok = self.take()
            try:
                window = durations.parse_duration(tok.text[1:-1])
            except ValueError as exc:
                raise PromQLError(f"bad range {tok.text}: {exc}", tok.pos) from None
            if window <= 0:
                raise PromQLError("a range must be longer than 0s", tok.pos)
        if self.tok.kind == "ident" and self.tok.text in _UNSUPPORTED:
            raise PromQLError(
                f"{self.tok.text!r} is not supported by the scrape source", self.tok.pos
            )
        return Selector(tuple(matchers), window)


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), body)


def parse(text: str) -> Node:
    """Parse ``text``.

    Raises:
        PromQLError: outside the subset or malformed, with the position of the problem.
    """
    if not text.strip():
        raise PromQLError("the query is empty", 0)
    return _Parser(text).parse()


# -- evaluation ------------------------------------------------------------------------------


class SampleStore(Protocol):
    """What evaluation reads: the scrape ring."""

    def instant(self, selector: Selector, at: float) -> list[Series]:
        """The latest value at or before ``at`` of every matching series."""
        ...

    def window(
        self, selector: Selector, start: float, end: float
    ) -> list[tuple[Labels, list[tuple[float, float]]]]:
        """Every matching series' samples with ``start < t <= end``."""
        ...


Value = float | list[Series]


def evaluate(node: Node, store: SampleStore, at: float) -> Value:
    """Evaluate ``node`` at time ``at``: a number or an instant vector.

    Raises:
        PromQLError: a query that cannot be evaluated (e.g. duplicate series in a match).
    """
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Selector):
        if node.range is not None:
            raise PromQLError("a range selector must be inside a function such as rate()")
        return store.instant(node, at)
    if isinstance(node, Negate):
        return _arith("*", evaluate(node.expr, store, at), -1.0)
    if isinstance(node, Binary):
        return _arith(node.op, evaluate(node.left, store, at), evaluate(node.right, store, at))
    if isinstance(node, Aggregate):
        inner = evaluate(node.expr, store, at)
        if not isinstance(inner, list):
            raise PromQLError(f"{node.op}() needs a vector, not a number")
        return _aggregate(node, inner)
    return _call(node, store, at)


def _drop_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != NAME)


def _apply(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


def _arith(op: str, left: Value, right: Value) -> Value:
    if not isinstance(left, list) and not isinstance(right, list):
        return _apply(op, left, right)
    if isinstance(left, list) and not isinstance(right, list):
        return [Series(_drop_name(s.labels), _apply(op, s.value, right)) for s in left]
    if not isinstance(left, list) and isinstance(right, list):
        return [Series(_drop_name(s.labels), _apply(op, left, s.value)) for s in right]
    if not isinstance(left, list) or not isinstance(right, list):  # pragma: no cover - typing
        raise PromQLError("internal: unexpected operand types")
    by_labels: dict[Labels, float] = {}
    for s in right:
        key = _drop_name(s.labels)
        if key in by_labels:
            raise PromQLError(f"several series on the right with labels {dict(key)}; aggregate")
        by_labels[key] = s.value
    out: list[Series] = []
    seen: set[Labels] = set()
    for s in left:
        key = _drop_name(s.labels)
        if key in seen:
            raise PromQLError(f"several series on the left with labels {dict(key)}; aggregate")
        seen.add(key)
        if key in by_labels:
            out.append(Series(key, _apply(op, s.value, by_labels[key])))
    return out


def _aggregate(node: Aggregate, series: list[Series]) -> list[Series]:
    groups: dict[Labels, list[float]] = {}
    for s in series:
        if node.by is not None:
            key = tuple(p for p in s.labels if p[0] in node.by)
        elif node.without is not None:
            key = tuple(p for p in s.labels if p[0] not in node.without and p[0] != NAME)
        else:
            key = ()
        groups.setdefault(key, []).append(s.value)
    reducers: dict[str, Callable[[list[float]], float]] = {
        "sum": math.fsum,
        "avg": lambda v: math.fsum(v) / len(v),
        "min": min,
        "max": max,
        "count": lambda v: float(len(v)),
    }
    return [Series(k, reducers[node.op](v)) for k, v in groups.items()]


def _call(node: Call, store: SampleStore, at: float) -> Value:
    func = node.func
    if func in RANGE_FUNCTIONS:
        sel = node.args[0]
        if not isinstance(sel, Selector) or sel.range is None:  # the parser guarantees both
            raise PromQLError(f"{func}() needs a range selector such as metric[1m]")
        out: list[Series] = []
        for labels, points in store.window(sel, at - sel.range, at):
            value = _over_range(func, points, sel.range)
            if value is not None:
                out.append(Series(_drop_name(labels), value))
        return out
    if func == "abs":
        inner = evaluate(node.args[0], store, at)
        if isinstance(inner, list):
            return [Series(_drop_name(s.labels), abs(s.value)) for s in inner]
        return abs(inner)
    first = node.args[0]
    if not isinstance(first, Number):  # the parser guarantees it
        raise PromQLError("histogram_quantile() needs a number as its first argument")
    inner = evaluate(node.args[1], store, at)
    if not isinstance(inner, list):
        raise PromQLError("histogram_quantile() needs a vector of _bucket series")
    return histogram_quantile(first.value, inner)


def _over_range(func: str, points: list[tuple[float, float]], window: float) -> float | None:
    if not points:
        return None
    values = [v for _, v in points]
    if func == "avg_over_time":
        return math.fsum(values) / len(values)
    if func == "min_over_time":
        return min(values)
    if func == "max_over_time":
        return max(values)
    if func == "last_over_time":
        return values[-1]
    if len(points) < 2:
        return None
    increase = 0.0
    for (_, before), (_, after) in itertools.pairwise(points):
        increase += after - before if after >= before else after  # a reset starts from 0
    elapsed = points[-1][0] - points[0][0]
    if elapsed <= 0:
        return None
    per_second = increase / elapsed
    return per_second if func == "rate" else per_second * window


def histogram_quantile(q: float, buckets: Sequence[Series]) -> list[Series]:
    """Prometheus' ``histogram_quantile`` over cumulative ``le`` buckets, per label group."""
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for s in buckets:
        le = s.label("le")
        if not le:
            continue
        try:
            bound = float(le)
        except ValueError:
            continue
        key = tuple(p for p in _drop_name(s.labels) if p[0] != "le")
        groups.setdefault(key, []).append((bound, s.value))
    out: list[Series] = []
    for key, pairs in groups.items():
        out.append(Series(key, _quantile(q, sorted(pairs))))
    return out


def _quantile(q: float, pairs: list[tuple[float, float]]) -> float:
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if len(pairs) < 2 or not math.isinf(pairs[-1][0]):
        return math.nan
    counts: list[float] = []
    for _, count in pairs:  # cumulative counts must not go down (scrape races): repair
        counts.append(max(count, counts[-1]) if counts else count)
    total = counts[-1]
    if total <= 0:
        return math.nan
    rank = q * total
    index = next(i for i, c in enumerate(counts) if c >= rank)
    if index == len(pairs) - 1:
        return pairs[-2][0]
    start = 0.0 if index == 0 else pairs[index - 1][0]
    below = 0.0 if index == 0 else counts[index - 1]
    end = pairs[index][0]
    if index == 0 and end <= 0:
        return end
    inside = counts[index] - below
    if inside <= 0:
        return end
    return start + (end - start) * (rank - below) / inside
