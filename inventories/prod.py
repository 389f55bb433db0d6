"""Example production fleet: GPU servers and CPU-only staging boxes.

pyinfra conventions: each list is a group; `(hostname, {data})` tuples carry host data; settings for
a whole group live in group_data/<group>.py, fleet-wide ones in group_data/all.py. Every setting is
documented in the README's tunables table (generated from deploys/lib/settings.py).

These hosts are examples (example.internal does not resolve): copy this file and put your own.
"""

gpu_servers = [
    ("gpu-01.example.internal", {"ssh_user": "ubuntu"}),
    ("gpu-02.example.internal", {"ssh_user": "ubuntu"}),
    # A host-level override: a box with two GPUs serves two model instances per GPU.
    ("gpu-03.example.internal", {"ssh_user": "ubuntu", "triton_instance_count": 2}),
]

cpu_staging = [
    ("staging-01.example.internal", {"ssh_user": "debian"}),
]

# Optional: a registry cache (README: the registry cache). The Triton hosts then pull the image
# through it, and the NGC key stays on that host.
# registry_cache = [
#     ("cache-01.example.internal", {"ssh_user": "debian", "registry_cache_listen_address": "10.0.0.7", "registry_cache_insecure": True}),
# ]
