"""The local Slack Web API server speaks Slack's wire format to the real slack_sdk."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from crystal_runbook.testing.slack_server import SlackServer

pytestmark = pytest.mark.integration


def client(server: SlackServer, token: str | None = None) -> WebClient:
    return WebClient(token=token or server.token, base_url=server.url, retry_handlers=[])


class TestAuth:
    def test_auth_test_answers_like_slack(self, slack_server: SlackServer) -> None:
        """auth.test with the right token: ok, team and bot user."""
        data = client(slack_server).auth_test().data
        assert isinstance(data, dict)
        assert data["ok"] is True
        assert data["team_id"] == "T0CRYSTAL"

    @pytest.mark.parametrize(
        ("token", "code"), [("xoxb-wrong-token", "invalid_auth"), ("", "not_authed")]  # fake secret for the test
    )
    def test_a_wrong_or_missing_token_is_refused(
        self, slack_server: SlackServer, token: str, code: str
    ) -> None:
        """The bearer token is checked: invalid_auth or not_authed, as Slack answers."""
        web = WebClient(token=token or None, base_url=slack_server.url, retry_handlers=[])
        with pytest.raises(SlackApiError) as caught:
            web.chat_postMessage(channel="#general", text="hi")
        assert caught.value.response["error"] == code
        assert slack_server.posted() == []

    def test_recordings_never_hold_the_token(self, slack_server: SlackServer) -> None:
        """Recorded requests drop the Authorization header but say whether it was right."""
        client(slack_server).chat_postMessage(channel="#general", text="hi")
        request = slack_server.calls("chat.postMessage")[0]
        assert request.authorized is True
        assert "authorization" not in {k.lower() for k in request.headers}
        assert slack_server.token not in repr(slack_server.requests)


class TestMessages:
    def test_post_permalink_history_and_replies(self, slack_server: SlackServer) -> None:
        """A posted message (with metadata) is found by history and replies, and linkable."""
        web = client(slack_server)
        meta = {"event_type": "test_event", "event_payload": {"key": "k1"}}
        parent = web.chat_postMessage(channel="#maia-incidents", text="parent", metadata=meta)
        assert parent["channel"] == "C0CRYSTAL01"
        web.chat_postMessage(channel="C0CRYSTAL01", text="reply", thread_ts=parent["ts"])
        link = web.chat_getPermalink(channel="C0CRYSTAL01", message_ts=parent["ts"])
        assert link["permalink"].endswith("/archives/C0CRYSTAL01/p" + parent["ts"].replace(".", ""))
        history = web.conversations_history(channel="C0CRYSTAL01", include_all_metadata=True)
        assert [m["text"] for m in history["messages"]] == ["parent"]  # replies stay in threads
        assert history["messages"][0]["metadata"] == meta
        bare = web.conversations_history(channel="C0CRYSTAL01")
        assert "metadata" not in bare["messages"][0]
        replies = web.conversations_replies(channel="C0CRYSTAL01", ts=parent["ts"])
        assert [m["text"] for m in replies["messages"]] == ["parent", "reply"]

    def test_channels_are_listed_and_unknown_ones_not_found(
        self, slack_server: SlackServer
    ) -> None:
        """conversations.list pages with a cursor; an unknown channel is channel_not_found."""
        web = client(slack_server)
        first = web.conversations_list(limit=2)
        rest = web.conversations_list(limit=2, cursor=first["response_metadata"]["next_cursor"])
        names = [c["name"] for c in [*first["channels"], *rest["channels"]]]
        assert sorted(names) == ["general", "maia-incidents", "maia-staging"]
        assert web.conversations_info(channel="C0CRYSTAL03")["channel"]["name"] == "general"
        with pytest.raises(SlackApiError, match="channel_not_found"):
            web.chat_postMessage(channel="#nowhere", text="hi")

    def test_form_and_json_bodies_are_both_recorded(self, slack_server: SlackServer) -> None:
        """slack_sdk sends some methods as forms and others as JSON; both are parsed."""
        web = client(slack_server)
        web.chat_postMessage(channel="#general", text="json body")
        web.conversations_info(channel="C0CRYSTAL03")
        posted, info = (
            slack_server.calls("chat.postMessage")[0],
            slack_server.calls("conversations.info")[0],
        )
        assert posted.headers["Content-Type"].startswith("application/json")
        assert posted.body["text"] == "json body"
        assert info.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
        assert info.body["channel"] == "C0CRYSTAL03"


class TestFaults:
    def test_429_carries_retry_after(self, slack_server: SlackServer) -> None:
        """A rate limit is HTTP 429 with Retry-After and error ratelimited, then normal again."""
        slack_server.fail("chat.postMessage", status=429, retry_after=7)
        web = client(slack_server)
        with pytest.raises(SlackApiError) as caught:
            web.chat_postMessage(channel="#general", text="hi")
        response = caught.value.response
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert response["error"] == "ratelimited"
        assert web.chat_postMessage(channel="#general", text="hi")["ok"] is True

    def test_500_and_error_codes(self, slack_server: SlackServer) -> None:
        """`fail` answers a 500 or any Slack error code, for as many calls as asked."""
        slack_server.fail("chat.postMessage", status=500, times=2)
        slack_server.fail("conversations.info", error="missing_scope")
        web = client(slack_server)
        for _ in range(2):
            with pytest.raises(SlackApiError) as caught:
                web.chat_postMessage(channel="#general", text="hi")
            assert caught.value.response.status_code == 500
        with pytest.raises(SlackApiError, match="missing_scope"):
            web.conversations_info(channel="C0CRYSTAL03")
        assert web.chat_postMessage(channel="#general", text="third")["ok"] is True
        assert [m.text for m in slack_server.posted()] == ["third"]

    def test_after_effect_posts_then_fails(self, slack_server: SlackServer) -> None:
        """`after_effect` is the ambiguous failure: the message is there, the answer is a 500."""
        slack_server.fail("chat.postMessage", status=500, after_effect=True)
        with pytest.raises(SlackApiError):
            client(slack_server).chat_postMessage(channel="#general", text="landed")
        assert [m.text for m in slack_server.posted("#general")] == ["landed"]

    def test_drop_closes_the_connection_without_an_answer(self, slack_server: SlackServer) -> None:
        """`drop` looks like a reset connection to the client."""
        slack_server.fail("auth.test", drop=True)
        with pytest.raises(ConnectionResetError):  # http.client.RemoteDisconnected
            client(slack_server).auth_test()
        assert slack_server.calls("auth.test")[0].error == "dropped"


class TestFiles:
    def test_files_upload_v2_flow(self, slack_server: SlackServer) -> None:
        """getUploadURLExternal, the upload to the returned URL, completeUploadExternal."""
        web = client(slack_server)
        parent = web.chat_postMessage(channel="#maia-incidents", text="incident")
        done = web.files_upload_v2(
            channel="C0CRYSTAL01",
            thread_ts=parent["ts"],
            filename="incident.md",
            content=b"# Incident\n",
            title="Incident document",
            initial_comment="the write-up",
        )
        assert [r.method for r in slack_server.requests[1:]] == [
            "files.getUploadURLExternal",
            "upload",
            "files.completeUploadExternal",
        ]
        uploaded = slack_server.files[done["file"]["id"]]
        assert (uploaded.content, uploaded.title) == (b"# Incident\n", "Incident document")
        assert (uploaded.channel, uploaded.thread_ts) == ("C0CRYSTAL01", parent["ts"])
        upload = slack_server.calls("upload")[0]
        assert upload.authorized is False  # the URL itself is the credential, as on Slack
        assert upload.files == {uploaded.id: b"# Incident\n"}

    def test_an_upload_url_needs_its_secret(self, slack_server: SlackServer) -> None:
        """The upload URL refuses a request without the secret it was issued with."""
        issued = client(slack_server).files_getUploadURLExternal(filename="a.txt", length=3)
        bare = issued["upload_url"].split("?")[0]
        request = urllib.request.Request(bare, data=b"abc", method="POST")  # noqa: S310 - loopback
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)  # noqa: S310 - loopback test server
        caught.value.close()
        assert caught.value.code == 404


def test_context_manager_closes_the_port() -> None:
    """After `with`, the port no longer accepts connections (no leaked sockets)."""
    with SlackServer() as server:
        port = server.port
        assert client(server).auth_test()["ok"] is True
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass
