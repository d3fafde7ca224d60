"""The hosts adapter: virtual machines reached over SSH (fabric) and Ansible (ansible-runner).

The two host actions (`ssh.run`, `ansible.playbook`) never import each other; what they
share lives here, one module per job:

- ``inventory``: Ansible-style inventories (`hosts.ini` or `hosts.yaml`): groups, hosts and
  their ``ansible_host``/``ansible_port``/``ansible_user``/key file, with file:line errors;
- ``config``: the service's `hosts:` block resolved to files (inventory, known_hosts) and the
  host-key policy of the environment (keys are added automatically only in `sandbox`);
- ``ssh``: fabric connections with that policy, and paramiko errors translated into
  ``crystal_runbook.errors``; ``shell``: one long-lived shell per host that runs a step's
  commands; ``fanout`` runs one function on many hosts, bounded;
- ``ansible``: one ansible-runner run with its home, artifacts and SSH settings under the
  state directory, its events streamed, its per-host stats and diffs as values.

fabric and ansible_runner are imported inside functions only, so importing this package
costs nothing at `--help` time.
"""
