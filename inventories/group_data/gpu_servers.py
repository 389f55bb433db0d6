"""GPU servers: the NGC image on NVIDIA GPUs."""

gpu = True
triton_image = "nvcr.io/nvidia/tritonserver:25.05-py3"
triton_max_batch_size = 8
triton_preferred_batch_sizes = [4, 8]
triton_max_queue_delay_us = 100
triton_instance_count = 1
nvidia_toolkit_version = "1.17.8-1"
docker_source = "distro"
