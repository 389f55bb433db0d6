"""Settings shared by every sandbox host (see tests/sandbox). Per-sandbox paths are in inventories/sandbox.py."""

# CPU profile: the sandbox has no GPU; the stand-in Triton image runs ONNX models on CPU.
gpu = False
# Docker inside a container host: dockerd needs this before containers get a network (field notes).
docker_service_env = {"DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE": "1"}
# The model comes from the sandbox's tiny-model mirror (stand-in for the Hugging Face Hub).
model_fetch = "mirror"
model_require_lock = True  # the sandbox's lock (.sandbox/model.lock.json) records every file's sha256
# Small disks: the sandbox hosts share this machine's disk.
preflight_min_free_gib_cpu = 2
