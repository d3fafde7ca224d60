"""`slackapi.upload_file`: a document shared in a run's thread through files_upload_v2."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from slack_sdk import WebClient

from crystal_runbook import errors
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.notify import slackapi
from crystal_runbook.testing.slack_server import SlackServer

pytestmark = pytest.mark.integration


def settings(server: SlackServer, token: str | None = None) -> slackapi.SlackSettings:
    return slackapi.SlackSettings.from_env(server.env(token=token))


def test_upload_into_a_thread(slack_server: SlackServer, tmp_path: Path) -> None:
    """The file lands in the thread, by channel name, with its title and comment."""
    web = WebClient(token=slack_server.token, base_url=slack_server.url)
    parent = web.chat_postMessage(channel="#maia-incidents", text="Rollback of maia started")
    doc = tmp_path / "incident.md"
    doc.write_text("# maia rollback\n")
    uploaded = slackapi.upload_file(
        settings=settings(slack_server),
        redactor=Redactor({}),
        channel="#maia-incidents",
        filename="incident.md",
        path=doc,
        title="Incident document",
        thread_ts=parent["ts"],
        initial_comment="Incident document of the rollback",
        deadline=time.monotonic() + 10,
    )
    stored = slack_server.files[uploaded.file_id]
    assert stored.content == b"# maia rollback\n"
    assert (stored.channel, stored.thread_ts, stored.title) == (
        "C0CRYSTAL01",
        parent["ts"],
        "Incident document",
    )
    assert uploaded.permalink is not None
    assert uploaded.permalink.endswith("/incident.md")
    in_thread = slack_server.posted("#maia-incidents")[-1]
    assert (in_thread.thread_ts, in_thread.files) == (parent["ts"], [uploaded.file_id])


def test_text_content_is_redacted(slack_server: SlackServer) -> None:
    """A secret in uploaded text (a token in a log tail) is masked before it leaves."""
    slackapi.upload_file(
        settings=settings(slack_server),
        redactor=Redactor({}),
        channel="C0CRYSTAL03",
        filename="tail.log",
        content="token=xoxb-123456-abcdefgh done",  # fake secret for the test
    )
    (stored,) = slack_server.files.values()
    assert stored.content == b"token=***** done"


def test_a_refused_upload_is_explained(slack_server: SlackServer) -> None:
    """A bad token is a permanent error naming the fix; nothing is retried."""
    with pytest.raises(slackapi.SlackRefused, match="invalid_auth") as caught:
        slackapi.upload_file(
            settings=settings(slack_server, token="xoxb-0000-wrong-wrong"),  # noqa: S106 - refused fake
            redactor=Redactor({}),
            channel="C0CRYSTAL01",
            filename="a.txt",
            content="a",
        )
    assert "SLACK_BOT_TOKEN" in str(caught.value.hint)
    assert len(slack_server.calls("files.getUploadURLExternal")) == 1


def test_a_failed_upload_to_the_url_is_retried(slack_server: SlackServer) -> None:
    """The upload URL answering 500 is temporary: the whole flow is tried again."""
    slack_server.fail("upload", status=500)
    uploaded = slackapi.upload_file(
        settings=settings(slack_server),
        redactor=Redactor({}),
        channel="C0CRYSTAL01",
        filename="a.txt",
        content="a",
        deadline=time.monotonic() + 10,
    )
    assert [r.status for r in slack_server.calls("upload")] == [500, 200]
    assert slack_server.files[uploaded.file_id].content == b"a"


def test_without_a_token_it_is_a_configuration_error() -> None:
    """Uploading needs a token; the error says which variable to set."""
    with pytest.raises(errors.ConfigurationError, match="SLACK_BOT_TOKEN is not set"):
        slackapi.upload_file(
            settings=slackapi.SlackSettings.from_env({}),
            redactor=Redactor({}),
            channel="C0CRYSTAL01",
            filename="a.txt",
            content="a",
        )
