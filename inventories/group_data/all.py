"""Fleet-wide settings (every inventory). Anything not set here takes the default from
deploys/lib/settings.py; see the README's tunables table."""

# Connect as a sudo-capable user and become root for the deploy.
_sudo = True

# SSH host keys are checked, never accepted on first contact (pyinfra's default, "accept-new",
# would trust whoever answers first): add each host's key to the known_hosts file before its first
# deploy, after comparing its fingerprint (README: First contact with a host).
ssh_strict_host_key_checking = "yes"
# ssh_known_hosts_file = "~/.ssh/known_hosts"  # pyinfra's default; point it at the fleet's own file

# The pinned model: a commit sha, never a branch.
model_repo_id = "onnx-community/embeddinggemma-300m-ONNX"
model_revision = "5090578d9565bb06545b4552f76e6bc2c93e4a66"
model_variant = "fp32"

# Triton listens on loopback only (the gateway on the same host reaches it there); binding it
# beyond loopback needs triton_bind_beyond_loopback = True as well (README: tunables).
triton_bind_address = "127.0.0.1"
