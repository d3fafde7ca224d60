"""scripts/install-debs.sh installs packages without starting or enabling their services.

Run with stand-ins for `dpkg`, `apt-get` and `sudo` on PATH and DEBS_ROOT in a temporary
directory: what the script does to policy-rc.d and to systemd's directory is observed there.
"""

from __future__ import annotations

import os
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "install-debs.sh"

FAKE_DPKG = """\
#!/usr/bin/env bash
# -s PKG: installed unless listed in $FAKE_MISSING; -L PKG: the files the package ships
case "$1" in
-s) for m in $FAKE_MISSING; do [ "$m" = "$2" ] && exit 1; done; exit 0 ;;
-L) echo "/usr/bin/$2"; echo "/lib/systemd/system/$2.service"; echo "/etc/init.d/$2" ;;
esac
"""

FAKE_APT = """\
#!/usr/bin/env bash
# records its arguments and, at install, what policy-rc.d said; enables each package's unit
echo "apt-get $*" >> "$FAKE_LOG"
if [ "$1" = install ]; then
    if [ -e "$DEBS_ROOT/usr/sbin/policy-rc.d" ]; then
        echo "policy during install: $(tail -n1 "$DEBS_ROOT/usr/sbin/policy-rc.d")" >> "$FAKE_LOG"
    else
        echo "policy during install: none" >> "$FAKE_LOG"
    fi
    for pkg in "$@"; do
        case "$pkg" in -*|install) continue ;; esac
        mkdir -p "$DEBS_ROOT/etc/systemd/system/multi-user.target.wants"
        ln -sf "/lib/systemd/system/$pkg.service" \
            "$DEBS_ROOT/etc/systemd/system/multi-user.target.wants/$pkg.service"
    done
    [ -n "${FAKE_FAIL:-}" ] && exit 100
fi
exit 0
"""

FAKE_SUDO = """\
#!/usr/bin/env bash
exec "$@"
"""


def run(tmp_path: Path, *packages: str, missing: str, fail: bool = False) -> tuple[int, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("dpkg", FAKE_DPKG), ("apt-get", FAKE_APT), ("sudo", FAKE_SUDO)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    log = tmp_path / "log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "DEBS_ROOT": str(tmp_path / "root"),
        "FAKE_MISSING": missing,
        "FAKE_LOG": str(log),
        "FAKE_FAIL": "1" if fail else "",
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), *packages], env=env, capture_output=True, text=True, check=False
    )
    return done.returncode, log.read_text() if log.exists() else ""


class TestInstallDebs:
    def test_services_are_masked_and_the_policy_is_removed_again(self, tmp_path: Path) -> None:
        """No policy-rc.d before: one denies starts during the install and is gone after;
        each new package's unit is masked and no longer wanted by any target."""
        code, log = run(tmp_path, "prometheus", "postgresql", "openssh-server",
                        missing="prometheus openssh-server")
        assert code == 0, log
        assert "apt-get install -y -qq --no-install-recommends prometheus openssh-server" in log
        assert "policy during install: exit 101" in log
        root = tmp_path / "root"
        assert not (root / "usr" / "sbin" / "policy-rc.d").exists()
        units = root / "etc" / "systemd" / "system"
        for pkg in ("prometheus", "openssh-server"):
            masked = units / f"{pkg}.service"
            assert masked.is_symlink()
            assert os.readlink(masked) == "/dev/null"
        assert list((units / "multi-user.target.wants").iterdir()) == []
        assert not (units / "postgresql.service").exists()  # already installed: left alone

    def test_a_policy_that_was_there_is_kept_as_found(self, tmp_path: Path) -> None:
        """An existing policy-rc.d is neither replaced nor removed, and keeps its mode."""
        policy = tmp_path / "root" / "usr" / "sbin" / "policy-rc.d"
        policy.parent.mkdir(parents=True)
        original = textwrap.dedent("""\
            #!/bin/sh
            # the machine's own
            exit 101
            """)
        policy.write_text(original)
        policy.chmod(0o750)
        code, log = run(tmp_path, "prometheus", missing="prometheus")
        assert code == 0, log
        assert policy.read_text() == original
        assert stat.S_IMODE(policy.stat().st_mode) == 0o750

    def test_a_failed_install_still_removes_its_policy(self, tmp_path: Path) -> None:
        """apt-get fails: the script fails too, and leaves no policy-rc.d of its own behind."""
        code, log = run(tmp_path, "prometheus", missing="prometheus", fail=True)
        assert code != 0
        assert "policy during install: exit 101" in log
        assert not (tmp_path / "root" / "usr" / "sbin" / "policy-rc.d").exists()

    @pytest.mark.parametrize("packages", [("prometheus", "postgresql")])
    def test_nothing_missing_installs_nothing(self, tmp_path: Path, packages: tuple[str, ...]) -> None:
        """Every package present: apt-get is not even called, nothing is written."""
        code, log = run(tmp_path, *packages, missing="")
        assert code == 0
        assert log == ""
        assert not (tmp_path / "root").exists()
