"""Practice hosts: real OpenSSH servers on loopback, for `ssh.run` and `ansible.playbook`.

`crystal-runbook sandbox hosts up [--count 5]` starts one ``sshd`` per host on a free
loopback port, as the current user (no root, no system service), each with its own
generated host key and a Capistrano-style release tree of the practice service::

    <state>/sandbox/hosts.ini          the inventory (group maia_vms), for both actions
    <state>/sandbox/known_hosts        the hosts' keys, so keys are checked, not trusted
    <state>/sandbox/hosts/client_ed25519   the client key (authorized on every host)
    <state>/sandbox/hosts/vm1/         sshd_config, host key, pid, log, and the service:
        maia/releases/{1.4.0,1.4.1,1.4.2}/   1.4.2 is a bad build (releases/1.4.2/BAD)
        maia/current -> releases/1.4.2       the bad release is live
        maia/.crystal-running                the release the service runs
        bin/restart, bin/health              the service's restart and health commands
        restarts, restarts.log               how often it was restarted (and into what)

`sandbox hosts down` stops the servers (found by their PID files). The shipped inventory's
`vms` environment points at these files through ``{state_dir}``, so `crystal-runbook
rollback maia --env vms --yes` rolls the practice hosts back to 1.4.1.

This package is separate from ``crystal_runbook.sandbox`` (the Kubernetes API emulator):
the two share only the ``<state>/sandbox/`` directory.
"""

from __future__ import annotations

from crystal_runbook.hostsandbox.lifecycle import (
    DEFAULT_COUNT,
    GROUP,
    PracticeHost,
    PracticeHosts,
    down,
    running,
    up,
)

__all__ = ["DEFAULT_COUNT", "GROUP", "PracticeHost", "PracticeHosts", "down", "running", "up"]
