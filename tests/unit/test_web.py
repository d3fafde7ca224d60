"""The process's one HTTP client: shared by every caller, made again after a close."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from crystal_runbook import web


class TestSharedClient:
    """Every caller gets the same client until it is closed."""

    def test_one_client_until_closed(self) -> None:
        """Two calls share one client; after `close` the next call makes a new, open one."""
        first = web.client()
        assert web.client() is first
        web.close()
        assert first.is_closed
        second = web.client()
        assert second is not first
        assert not second.is_closed

    def test_closed_at_exit(self) -> None:
        """A process that used the client closes it when it exits (no unclosed sockets)."""
        code = textwrap.dedent(
            """
            import atexit
            from crystal_runbook import web
            clients = []
            atexit.register(lambda: print("closed" if clients[0].is_closed else "open"))
            clients.append(web.client())  # its close is registered later, so it runs first
            """
        )
        done = subprocess.run(
            [sys.executable, "-W", "error", "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert done.stdout.strip() == "closed"

    def test_httpx_comes_without_its_command_line(self) -> None:
        """The client is made without loading httpx's CLI (click, rich, pygments)."""
        code = textwrap.dedent(
            """
            import sys
            from crystal_runbook import web
            web.client().close()
            print(sorted({m.split(".")[0] for m in sys.modules} & {"click", "rich", "pygments"}))
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert done.stdout.strip() == "[]"
