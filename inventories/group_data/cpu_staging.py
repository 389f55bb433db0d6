"""CPU-only staging boxes: same image and model, KIND_CPU instances, no NVIDIA toolkit."""

gpu = False
triton_max_batch_size = 4
triton_preferred_batch_sizes = [4]
# Debian 12 ships only compose v1: take Docker's own packages there.
docker_source = "docker-ce"
