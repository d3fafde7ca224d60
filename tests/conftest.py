"""Fixtures shared by every test layer: a workspace with its own state dir and runbooks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crystal_runbook import service, testing

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Cli:
    """Runs the installed `crystal-runbook` console script in a temporary workspace."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / ".crystal"

    @property
    def runbooks(self) -> Path:
        return self.root / "runbooks"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRYSTAL_")}
        env.update(
            CRYSTAL_STATE_DIR=str(self.state),
            CRYSTAL_ACTION_MODULES="crystal_runbook.testing",
            CRYSTAL_ACTOR="tester",
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        )
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        return [str(BIN / "crystal-runbook"), *args]

    def __call__(
        self, *args: str, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.root,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "inventory").mkdir()
    return Cli(tmp_path)


@pytest.fixture
def write_runbook(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write ``runbooks/<name>.yaml`` from an indented literal."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / "runbooks" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[service.Workspace]:
    """An in-process service layer with the fake actions and a recording sink."""
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    (tmp_path / "inventory").mkdir(exist_ok=True)
    ws = service.Workspace(
        state_dir=tmp_path / ".crystal",
        inventory_dir=tmp_path / "inventory",
        runbooks_dir=tmp_path / "runbooks",
        actor="tester",
        sink=testing.RecordingSink(),
        action_modules=("crystal_runbook.testing",),
    )
    yield ws
    ws.close()
