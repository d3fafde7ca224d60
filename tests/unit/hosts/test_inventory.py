"""Ansible-style host inventories: both formats, Ansible's variable precedence, clear errors."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook import errors
from crystal_runbook.hosts import config, inventory

INI = """\
# comment
bastion ansible_host=10.0.0.1

[maia_vms]
vm1 ansible_host=127.0.0.1 ansible_port=2201 app_root=/srv/one
vm2 ansible_host=127.0.0.1 ansible_port=2202 restart_command="sudo systemctl restart maia"

[maia_vms:vars]
ansible_user=deploy
ansible_ssh_private_key_file=~/.ssh/id_ed25519
app_root=/srv/maia

[web]
vm2

[prod:children]
maia_vms
web

[prod:vars]
app_root=/srv/prod
tier=production
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


class TestIni:
    """The INI format as Ansible reads it."""

    def test_hosts_groups_and_connection_variables(self, tmp_path: Path) -> None:
        """ansible_host/port/user/key become fields; children flatten into their parents."""
        found = inventory.load(write(tmp_path, "hosts.ini", INI))
        vm1 = found.hosts["vm1"]
        assert (vm1.address, vm1.port, vm1.user) == ("127.0.0.1", 2201, "deploy")
        assert vm1.key_file == str(Path("~/.ssh/id_ed25519").expanduser())
        assert found.groups["maia_vms"] == ("vm1", "vm2")
        assert found.groups["prod"] == ("vm1", "vm2")
        assert found.groups["ungrouped"] == ("bastion",)
        assert set(found.groups["all"]) == {"bastion", "vm1", "vm2"}
        assert found.hosts["bastion"].port == 22

    def test_host_vars_beat_child_groups_beat_parents(self, tmp_path: Path) -> None:
        """Host vars win over maia_vms:vars, which win over prod:vars (its parent)."""
        found = inventory.load(write(tmp_path, "hosts.ini", INI))
        assert found.hosts["vm1"].vars["app_root"] == "/srv/one"
        assert found.hosts["vm2"].vars["app_root"] == "/srv/maia"
        assert found.hosts["vm2"].vars["tier"] == "production"
        assert found.hosts["vm2"].vars["restart_command"] == "sudo systemctl restart maia"

    def test_malformed_lines_are_reported_with_their_line(self, tmp_path: Path) -> None:
        """Each bad line is a problem at file:line; nothing half-parsed is returned."""
        path = write(tmp_path, "hosts.ini", "[g]\nvm1 novalue\nweb[01:03]\n[bad group]\n")
        with pytest.raises(errors.RunbookInvalid) as raised:
            inventory.load(path)
        lines = sorted(p.line for p in raised.value.problems)
        assert lines == [2, 3, 4]
        assert "expected key=value" in str(raised.value)
        assert "host ranges are not supported" in str(raised.value)

    def test_port_must_be_a_port(self, tmp_path: Path) -> None:
        """ansible_port=70000 is refused with the host's line."""
        with pytest.raises(errors.RunbookInvalid, match="not a TCP port"):
            inventory.load(write(tmp_path, "hosts.ini", "[g]\nvm1 ansible_port=70000\n"))

    def test_missing_file_says_how_to_get_one(self, tmp_path: Path) -> None:
        """A missing inventory names `sandbox hosts up`."""
        with pytest.raises(errors.RunbookInvalid) as raised:
            inventory.load(tmp_path / "hosts.ini")
        assert "sandbox hosts up" in str(raised.value)


class TestYaml:
    """The YAML format: all, hosts, vars, children."""

    def test_nested_groups_and_variables(self, tmp_path: Path) -> None:
        """Nested children flatten; vars apply outermost first."""
        path = write(
            tmp_path,
            "hosts.yaml",
            """\
            all:
              vars: {ansible_user: ops}
              children:
                maia_vms:
                  vars: {app_root: /srv/maia}
                  hosts:
                    vm1: {ansible_host: 10.0.0.1, ansible_port: 2222}
                    vm2:
            """,
        )
        found = inventory.load(path)
        assert found.groups["maia_vms"] == ("vm1", "vm2")
        assert found.hosts["vm1"].port == 2222
        assert found.hosts["vm2"].address == "vm2"
        assert found.hosts["vm2"].user == "ops"
        assert found.hosts["vm2"].vars["app_root"] == "/srv/maia"

    def test_unknown_keys_are_problems(self, tmp_path: Path) -> None:
        """A typo such as `host:` is reported, not ignored."""
        path = write(tmp_path, "hosts.yaml", "all:\n  children:\n    g:\n      host: {vm1: {}}\n")
        with pytest.raises(errors.RunbookInvalid, match="unknown key 'host'"):
            inventory.load(path)


class TestSelect:
    """Limits: groups and host names, and the error for a name that is neither."""

    def test_groups_and_hosts_combine_without_repeats(self, tmp_path: Path) -> None:
        """`web,vm1` gives vm2 then vm1, once each."""
        found = inventory.load(write(tmp_path, "hosts.ini", INI))
        assert [h.name for h in found.select("web,vm1,vm2")] == ["vm2", "vm1"]

    def test_unknown_group_names_the_closest(self, tmp_path: Path) -> None:
        """`maia_vmz` suggests `maia_vms` and lists the groups."""
        found = inventory.load(write(tmp_path, "hosts.ini", INI))
        with pytest.raises(errors.TargetNotFound) as raised:
            found.select("maia_vmz")
        assert "did you mean 'maia_vms'" in str(raised.value)
        assert "maia_vms, prod, web" in str(raised.value)


class TestConfig:
    """The `hosts:` block resolved to files, and the key-file checks."""

    def test_state_dir_and_relative_paths_become_absolute(self, tmp_path: Path) -> None:
        """{state_dir} expands; relative paths are the inventory directory's; default known_hosts."""
        block = config.resolve_block(
            {"group": "g", "inventory": "{state_dir}/sandbox/hosts.ini"},
            inventory_dir=tmp_path / "inventory",
            state_dir=tmp_path / "state",
        )
        assert block["inventory"] == str(tmp_path / "state" / "sandbox" / "hosts.ini")
        assert block["known_hosts"] == str(Path("~/.ssh/known_hosts").expanduser())
        default = config.resolve_block(
            {"group": "g"}, inventory_dir=tmp_path / "inventory", state_dir=tmp_path
        )
        assert default["inventory"] == str(tmp_path / "inventory" / "hosts.ini")

    def test_missing_hosts_block_says_what_to_add(self, tmp_path: Path) -> None:
        """A target without `hosts:` is a configuration error naming services.yaml."""
        with pytest.raises(errors.ConfigurationError, match="no `hosts:` group"):
            config.HostsConfig.from_target({}, env="staging", state_dir=tmp_path)

    def test_unusable_keys_are_refused_per_host(self, tmp_path: Path) -> None:
        """A missing key and a file without a private key are both named with their host."""
        garbage = tmp_path / "garbage"
        garbage.write_text("hello\n")
        hosts = [
            inventory.Host("a", "127.0.0.1", key_file=str(tmp_path / "nope")),
            inventory.Host("b", "127.0.0.1", key_file=str(garbage)),
        ]
        with pytest.raises(errors.PermanentActionError) as raised:
            config.check_key_files(hosts)
        assert "a: key file" in str(raised.value)
        assert "does not exist" in str(raised.value)
        assert "b: key file" in str(raised.value)
        assert "holds no private key" in str(raised.value)

    def test_known_hosts_must_exist_outside_sandbox(self, tmp_path: Path) -> None:
        """Without auto-add a missing known_hosts file is an error before any connection."""
        (tmp_path / "hosts.ini").write_text("[g]\nvm1\n")
        found = config.HostsConfig(
            group="g",
            inventory=tmp_path / "hosts.ini",
            known_hosts=tmp_path / "known_hosts",
            auto_add=False,
        )
        with pytest.raises(errors.PermanentActionError, match=r"known_hosts file .* cannot be read"):
            found.select(None)
        auto = config.HostsConfig("g", tmp_path / "hosts.ini", tmp_path / "known_hosts", True)
        assert [h.name for h in auto.select(None)] == ["vm1"]


class TestValidate:
    """`crystal-runbook validate` checks the host inventory like every inventory file."""

    def test_hosts_ini_in_the_inventory_directory_is_checked(self, workspace: Any) -> None:
        """A bad line in inventory/hosts.ini is a problem with its file and line."""
        from crystal_runbook import service

        path = workspace.inventory_dir / "hosts.ini"
        path.write_text("[maia_vms]\nvm1 ansible_host=10.0.0.1\nvm2 oops\n")
        checked, problems = service.catalog.validate(workspace)
        assert checked >= 1
        assert [(p.line, p.message) for p in problems if p.path.endswith("hosts.ini")] == [
            (3, "expected key=value, found 'oops'")
        ]
