"""The `sql` source: the service's own health tables (``current_health``, ``system_health``).

The source document proves health with SQL (``SELECT * FROM current_health;``, hourly
``AVG(coherence_ratio)`` from ``system_health``). This source runs such queries through
psycopg 3, and only such queries:

- parameterised only: values reach the server as bound parameters (``%(service)s``), never
  pasted into the text; ``service`` and ``env`` are always available, plus the rule's
  ``params``;
- read-only twice over: ``check_read_only`` refuses anything but one SELECT-like statement
  before it is sent, and every statement runs in a READ ONLY transaction that is rolled back,
  so the server itself refuses a write that slipped through (a data-modifying CTE);
- bounded: ``statement_timeout`` and a connect timeout from the spec, and at most
  ``MAX_ROWS`` rows read.

A result's value is the column named ``value``, else its only numeric column; other
columns become labels, so one row per pod or region gives one series each. The DSN comes
from the environment and may hold a password: every message passes through the
``Redactor`` first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.triggers.promql import Series
from crystal_runbook.triggers.sources import (
    QueryRejected,
    SourceKind,
    SourceSpec,
    SourceUnavailable,
)

if TYPE_CHECKING:
    import psycopg

MAX_ROWS = 100
_FIRST_WORDS = frozenset({"select", "with", "values", "table"})
_WRITES = re.compile(
    r"\b(insert|update|delete|merge|create|alter|drop|truncate|grant|revoke|copy|call|do|lock|"
    r"vacuum|analyze|refresh|reindex|cluster|listen|notify|prepare|execute|discard|reset|into|"
    r"set|comment\s+on|security\s+label)\b",
    re.IGNORECASE,
)
_COMMENTS_AND_STRINGS = re.compile(
    r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(\w*)\$.*?\$\1\$", re.DOTALL
)


def check_read_only(sql: str) -> str | None:
    """Why ``sql`` is refused (None when it is one read-only statement)."""
    bare = _COMMENTS_AND_STRINGS.sub(" ", sql).strip()
    if bare.endswith(";"):
        bare = bare[:-1].rstrip()
    if not bare:
        return "the query is empty"
    if ";" in bare:
        return "only one statement is allowed (found `;` between statements)"
    first = bare.split(None, 1)[0].lower().lstrip("(")
    if first not in _FIRST_WORDS:
        return f"only SELECT, WITH, VALUES or TABLE queries are allowed, not {first.upper()}"
    hit = _WRITES.search(bare)
    if hit is not None:
        return f"the query contains {hit.group(1).upper()}; SQL rules and checks are read-only"
    return None


class SqlSource:
    """Runs read-only, parameterised queries on one PostgreSQL database."""

    kind: SourceKind = "sql"

    def __init__(self, spec: SourceSpec, *, redactor: Redactor) -> None:
        self.spec = spec
        self.redactor = redactor
        self._conn: psycopg.Connection[Any] | None = None
        self._hide_password(spec.url)

    def _hide_password(self, dsn: str) -> None:
        try:
            from psycopg import conninfo

            password = conninfo.conninfo_to_dict(dsn).get("password")
        except Exception:  # noqa: BLE001 - a malformed DSN is reported when connecting
            return
        if password:
            self.redactor.add(str(password))

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        timeout_ms = max(1, int(self.spec.timeout * 1000))
        try:
            conn = psycopg.connect(
                self.spec.url,
                connect_timeout=max(1, math.ceil(self.spec.timeout)),
                options=f"-c statement_timeout={timeout_ms} -c default_transaction_read_only=on",
                application_name="crystal-runbook",
            )
        except psycopg.Error as exc:
            raise SourceUnavailable(
                f"cannot connect to the database ({self.spec.where or 'sql source'}): "
                f"{self._message(exc)}",
                hint="check the DSN in that variable, the network and the server",
            ) from None
        except Exception as exc:  # noqa: BLE001 - a malformed DSN raises ProgrammingError
            raise QueryRejected(
                f"the database URL in {self.spec.where or 'the sql source'} is invalid: "
                f"{self._message(exc)}"
            ) from None
        conn.read_only = True
        self._conn = conn
        return conn

    def _message(self, exc: BaseException) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return self.redactor.text(text)

    def refresh(self, now: float) -> None:
        return None

    def query(self, text: str, at: float, params: Mapping[str, Any] | None = None) -> list[Series]:
        import psycopg
        from psycopg import errors as pgerrors

        refused = check_read_only(text)
        if refused is not None:
            raise QueryRejected(f"refused: {refused}")
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(text, dict(params or {}), prepare=False)
                names = [c.name for c in cur.description or ()]
                rows = cur.fetchmany(MAX_ROWS)
            conn.rollback()
        except (pgerrors.ReadOnlySqlTransaction, pgerrors.InsufficientPrivilege) as exc:
            self._reset(conn)
            raise QueryRejected(f"refused by the database: {self._message(exc)}") from None
        except pgerrors.QueryCanceled:
            self._reset(conn)
            raise SourceUnavailable(
                f"the query ran longer than {self.spec.timeout:g}s (statement_timeout)",
                hint="make the query cheaper (an index, a shorter time range)",
            ) from None
        except psycopg.OperationalError as exc:
            self._close()
            raise SourceUnavailable(f"database connection failed: {self._message(exc)}") from None
        except psycopg.Error as exc:
            self._reset(conn)
            raise QueryRejected(f"database error: {self._message(exc)}") from None
        return rows_to_series(names, rows)

    def query_range(
        self, text: str, start: float, end: float, step: float
    ) -> list[tuple[float, list[Series]]]:
        return []  # a table has no generic notion of "the value at time t"

    def _reset(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 - a broken connection is replaced on the next query
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        self._close()


def rows_to_series(names: list[str], rows: list[tuple[Any, ...]]) -> list[Series]:
    """Rows to series: the ``value`` (or only numeric) column is the value, text is labels."""
    if not rows:
        return []
    numeric = [
        i
        for i, _ in enumerate(names)
        if any(_is_number(row[i]) for row in rows)
        and all(row[i] is None or _is_number(row[i]) for row in rows)
    ]
    if "value" in names:
        index = names.index("value")
    elif len(numeric) == 1 or numeric:
        index = numeric[0]
    else:
        raise QueryRejected(
            f"the query returned no numeric column (columns: {', '.join(names)}); "
            "select a number, or name the column `value`"
        )
    out: list[Series] = []
    for row in rows:
        raw = row[index]
        if raw is None:
            continue
        labels = tuple(
            sorted(
                (name, str(row[i]))
                for i, name in enumerate(names)
                if i != index and i not in numeric and row[i] is not None
            )
        )
        out.append(Series(labels, float(raw)))
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
