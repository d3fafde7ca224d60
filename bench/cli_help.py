"""`crystal-runbook --help` wall time beside `kubectl --help` (target: 150 ms here).

Run: .venv/bin/python bench/cli_help.py
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from _timing import measure, row, run_command

BIN = Path(sys.executable).parent


def main() -> None:
    ours = str(BIN / "crystal-runbook")
    kubectl = str(BIN / "kubectl") if (BIN / "kubectl").exists() else shutil.which("kubectl")
    print("--help wall time (process start to exit), 20 runs each")
    row("crystal-runbook --help", measure(run_command([ours, "--help"]), repeat=20))
    row("crystal-runbook run --help", measure(run_command([ours, "run", "--help"]), repeat=20))
    row(
        "python -c pass (interpreter floor)",
        measure(run_command([sys.executable, "-c", "pass"]), repeat=20),
    )
    if kubectl:
        row("kubectl --help (peer)", measure(run_command([kubectl, "--help"]), repeat=20))


if __name__ == "__main__":
    main()
