"""The cluster's one Node, as its kubelet registers it (``kubelet_node_status.go``
``registerWithAPIServer``): Ready, with capacity, addresses and node info at v1.37."""

from __future__ import annotations

from crystal_runbook.sandbox import resources, store


def register(st: store.Store, *, name: str, address: str) -> None:
    """Create the Node unless it exists."""
    now = store.rfc3339()
    with st.lock:
        if st.get(resources.NODES, "", name) is not None:
            return
        conditions = [
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            (
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
        capacity = {
            "cpu": "2",
            "memory": "24576Mi",
            "pods": "110",
            "ephemeral-storage": "100Gi",
        }
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                },
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"podCIDR": "10.244.0.0/16", "podCIDRs": ["10.244.0.0/16"]},
            "status": {
                "capacity": capacity,
                "allocatable": dict(capacity),
                "conditions": [
                    {
                        "type": kind,
                        "status": value,
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                        "reason": reason,
                        "message": message,
                    }
                    for kind, value, reason, message in conditions
                ],
                "addresses": [
                    {"type": "InternalIP", "address": address},
                    {"type": "Hostname", "address": name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": "c2f1c5d1a1b14f0e9b1c0de5a2d1e001",
                    "systemUUID": "c2f1c5d1-a1b1-4f0e-9b1c-0de5a2d1e001",
                    "bootID": "5d7f1c2e-8a41-4d0b-bb1e-51a1b7c0d002",
                    "kernelVersion": "6.1.0-sandbox",
                    "osImage": "crystal-runbook sandbox",
                    "containerRuntimeVersion": "containerd://2.1.0",
                    "kubeletVersion": "v1.37.0",
                    "kubeProxyVersion": "",  # deprecated, no omitempty
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }
        st.create(resources.NODES, node)
