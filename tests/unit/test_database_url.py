"""The journal database URL is a secret: masked wherever it is shown, in every form."""

from __future__ import annotations

from pathlib import Path

import pytest

from crystal_runbook import errors, service
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.postgres import conninfo


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        (
            "postgresql://crystal:s3cret@db:5432/journal",
            "postgresql://crystal:*****@db:5432/journal",
            ["s3cret"],
        ),
        (
            "postgres://crystal:p%40ss%2Fw@db/journal?sslmode=require",
            "postgres://crystal:*****@db/journal?sslmode=require",
            ["p%40ss%2Fw", "p@ss/w"],
        ),
        (
            "postgresql://db/journal?user=crystal&password=qu3ry-pw&sslmode=verify-full",
            "postgresql://db/journal?user=crystal&password=*****&sslmode=verify-full",
            ["qu3ry-pw"],
        ),
        (
            r"host=db dbname=journal user=crystal password='it\'s a secret' port=5432",
            "host=db dbname=journal user=crystal password=***** port=5432",
            ["it's a secret"],
        ),
        ("postgresql://crystal@db/journal", "postgresql://crystal@db/journal", []),
    ],
)
def test_masked_hides_every_form_of_password(url: str, shown: str, secrets: list[str]) -> None:
    """URL userinfo, a query parameter, or libpq key=value: only the mask is shown."""
    assert conninfo.masked(url) == shown
    assert conninfo.passwords(url) == secrets
    for secret in secrets:
        assert secret not in conninfo.masked(url)


def test_the_workspace_never_shows_the_url(tmp_path: Path) -> None:
    """repr(workspace) and the journal's description show no password."""
    url = "postgresql://crystal:hunter2-db-pw@127.0.0.1:1/journal"
    ws = service.Workspace(state_dir=tmp_path, database_url=url)
    assert "hunter2" not in repr(ws)
    assert service.journals.describe(ws.state_dir, database_url=url) == (
        "postgresql://crystal:*****@127.0.0.1:1/journal"
    )


def test_an_unreachable_database_is_a_configuration_error_without_the_password(
    tmp_path: Path,
) -> None:
    """Nothing listens on port 1: exit 2, the masked URL, what to check; the password nowhere."""
    url = "postgresql://crystal:hunter2-db-pw@127.0.0.1:1/journal?connect_timeout=2"
    redactor = Redactor({})
    with pytest.raises(errors.ConfigurationError) as info:
        service.journals.open_journal(tmp_path, database_url=url, redactor=redactor)
    text = str(info.value)
    assert info.value.exit_code == 2
    assert "hunter2" not in text
    assert (
        "cannot reach the journal database postgresql://crystal:*****@127.0.0.1:1/journal" in text
    )
    assert "unset it to use the local SQLite journal" in text
    assert redactor.text("pw hunter2-db-pw") == "pw *****"


def test_a_malformed_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """A URL libpq cannot parse is reported masked, with the expected shape."""
    url = "postgresql://crystal:hunter2-db-pw@127.0.0.1:1/journal?bogus_option=1"
    with pytest.raises(errors.ConfigurationError) as info:
        service.journals.open_journal(tmp_path, database_url=url)
    assert "hunter2" not in str(info.value)
    assert "postgresql://crystal:*****@" in str(info.value)
    assert "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in str(info.value)


def test_a_full_database_disk_is_disk_full_with_the_password_masked() -> None:
    """SQLSTATE 53100 from the server is ``DiskFull`` (the executor then ends a run it stops
    interrupted, as with SQLite), naming the database without its password."""
    import secrets

    import psycopg

    from crystal_runbook.postgres import database

    password = secrets.token_hex(8)  # made fresh for each run
    url = f"postgresql://crystal:{password}@db.example:5432/journal"
    with pytest.raises(errors.DiskFull) as caught, database.translated(url, "writing run abc"):
        raise psycopg.errors.DiskFull('could not extend file "base/1/2": No space left on device')
    message = caught.value.message
    assert message.startswith("writing run abc: the journal database ")
    assert "out of disk space: could not extend file" in message
    assert password not in message
    assert "resume" in (caught.value.hint or "")
