"""What users type is text: never Slack markup, never a secret, never a terminal command
(issue 17, point 4). The shipped rollback against the sandbox, with the local Slack server."""

from __future__ import annotations

import json
import sqlite3

import pytest

from crystal_runbook.testing.slack_server import SlackServer
from tests.integration.kube.conftest import Cluster, cluster

__all__ = ["cluster"]

pytestmark = pytest.mark.integration

# each secret shape the redactor must mask in free text: (name, as typed, what must not leak)
SECRET_SHAPES = [
    ("password= pair", "db password=hunter2hunter", "hunter2hunter"),
    ("passwd: pair", "passwd: s3cr3tPassw0rd", "s3cr3tPassw0rd"),
    ("secret= pair", "secret=Zx9q8w7e6r5t", "Zx9q8w7e6r5t"),
    ("token= pair", "token=abcdef123456ghij", "abcdef123456ghij"),
    ("AWS access key id", "key AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    (
        "private key block",
        "-----BEGIN RSA PRIVATE KEY----- MIIEowIBAAKCAQEA1234567890abcdef -----END RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA1234567890abcdef",
    ),
    (
        "JWT",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("GitHub token", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
    ("GitLab token", "glpat-xY12zW34vU56tS78rQ90", "glpat-xY12zW34vU56tS78rQ90"),
    ("high-entropy api_key", "api_key: 9f8e7d6c5b4a39281706f5e4d3c2b1a0", "9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
]  # fake secrets for the test


@pytest.fixture
def channel(cluster: Cluster) -> Cluster:
    services = cluster.root / "inventory" / "services.yaml"
    services.write_text(
        services.read_text().replace(
            "        health_url:", "        slack_channel: '#maia-incidents'\n        health_url:"
        )
    )
    return cluster


def everything_written(cluster: Cluster) -> dict[str, str]:
    """The journal, outbox and documents as text, by where they live."""
    db = cluster.state / "journal.db"
    with sqlite3.connect(db) as conn:
        rows = [
            json.dumps(row)
            for table in ("runs", "steps", "events")
            for row in conn.execute(f"SELECT * FROM {table}")  # noqa: S608 - constant table names
        ]
    outbox = "".join(p.read_text() for p in (cluster.state / "outbox").rglob("*.json"))
    documents = "".join(
        p.read_text() for p in (cluster.state / "incidents").iterdir() if p.suffix in (".md", ".json")
    )
    return {"journal": "\n".join(rows), "outbox": outbox, "documents": documents}


class TestSecretsInFreeText:
    """A reason full of secrets is masked wherever it is written or shown."""

    def test_every_shape_is_masked_everywhere(self, channel: Cluster) -> None:
        """Journal, outbox, documents, console and -o json: none of the secrets appears."""
        reason = " ; ".join(typed for _, typed, _ in SECRET_SHAPES)
        done = channel.cli("rollback", "maia", "--reason", reason, "-o", "json")
        assert done.returncode == 0, done.stderr
        places = {**everything_written(channel), "console": done.stdout + done.stderr}
        leaks = {
            name: [where for where, text in places.items() if secret in text]
            for name, _, secret in SECRET_SHAPES
        }
        assert leaks == {name: [] for name, _, _ in SECRET_SHAPES}
        assert "*****" in places["journal"]
        assert "db password=*****" in places["documents"]

    def test_every_shape_is_masked_in_slack_bodies(
        self, channel: Cluster, slack_server: SlackServer
    ) -> None:
        """What reaches chat.postMessage is masked too."""
        reason = " ; ".join(typed for _, typed, _ in SECRET_SHAPES)
        done = channel.cli("rollback", "maia", "--reason", reason, **slack_server.env())
        assert done.returncode == 0, done.stderr
        bodies = json.dumps([r.body for r in slack_server.requests])
        assert [name for name, _, secret in SECRET_SHAPES if secret in bodies] == []
        assert "db password=*****" in bodies


class TestSlackMarkup:
    """User-supplied values are escaped with Slack's rules; the runbook's own markup is not."""

    def test_reason_and_actor_cannot_page_the_channel(
        self, channel: Cluster, slack_server: SlackServer
    ) -> None:
        """`<!here>`, `<!channel>` and a link in --reason and CRYSTAL_ACTOR arrive as text."""
        done = channel.cli(
            "rollback",
            "maia",
            "--reason",
            "<!here> <!channel> see <https://evil.example|this> & more",
            CRYSTAL_ACTOR="mallory <!channel>",
            **slack_server.env(),
        )
        assert done.returncode == 0, done.stderr
        announce = slack_server.posted("#maia-incidents")[0]
        assert "<!" not in announce.text
        assert "&lt;!here&gt; &lt;!channel&gt; see &lt;https://evil.example|this&gt; &amp; more" in (
            announce.text
        )
        assert "started by mallory &lt;!channel&gt;" in announce.text
        assert announce.text.startswith(":rewind: Rollback of *maia* in *sandbox*")  # markup kept


class TestControlCharacters:
    """Actor names lose their control characters; what is printed shows escapes instead."""

    def test_escape_sequences_never_reach_the_terminal(self, channel: Cluster) -> None:
        """ESC and newlines in CRYSTAL_ACTOR: stored stripped, printed without ESC."""
        actor = "mallory\x1b[2J\x1b[31m\nFAKE: rollback ok"
        done = channel.cli("rollback", "maia", CRYSTAL_ACTOR=actor)
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout + done.stderr
        runs = json.loads(channel.cli("runs", "-o", "json").stdout)
        assert runs[0]["actor"] == "mallory[2J[31mFAKE: rollback ok"
        shown = channel.cli("runs", "show", runs[0]["id"])
        assert "\x1b" not in shown.stdout + shown.stderr

