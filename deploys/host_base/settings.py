"""The host base's settings: GPU and preflight, Docker, the NVIDIA toolkit, the registry login.
Each setting is declared once, here (the machinery: deploys/core/tunables.py)."""

from __future__ import annotations

from deploys.core.tunables import Setting, _batch_sizes, _bool, _choice, _env_map, _fingerprint, _float, _gpu, _int, _str_list, _text

# The apt repositories' signing keys (primary-key fingerprints), as their vendors publish them:
# Docker's "Docker Release (CE deb)" key (docs.docker.com's install pages) and NVIDIA's
# libnvidia-container key (the gpgkey its repository serves; apt names it DDCAE044F796ECB0).
DOCKER_KEY_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
NVIDIA_TOOLKIT_KEY_FINGERPRINT = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
# NVIDIA's CUDA repository key (3bf863cc.pub, "cudatools <cudatools@nvidia.com>", the key cuda-keyring
# installs since the 2022 rotation); the driver step refuses any other key with one line.
NVIDIA_CUDA_KEY_FINGERPRINT = "EB693B3035CD5710E231E123A4B469963BF863CC"


# One line per setting, like the README's table (the formatter leaves it alone).
# fmt: off
class HostBaseSettings:
    # -- host and GPU --
    gpu = Setting("auto", 'GPU host? true, false or "auto" (auto: true when nvidia-smi lists a GPU).', "bool | auto", _gpu)
    preflight_min_free_gib = Setting(25, "Free disk (GiB) needed under Docker's data root and triton_dir on GPU hosts that must pull the image (image, model, runtimes).", "int", _int(1, 10_000))
    preflight_min_free_gib_cpu = Setting(5, "Free disk (GiB) needed on CPU hosts that must pull the image (smaller images).", "int", _int(1, 10_000))
    preflight_margin_gib = Setting(2, "On a host that already has the image: free disk (GiB) needed beyond the model files this run adds (a converged host needs only this).", "int", _int(0, 10_000))
    nvidia_min_driver = Setting(575, "Minimum NVIDIA driver branch for the pinned image (Triton 25.05 needs CUDA 12.9: 575).", "int", _int(400, 10_000))
    nvidia_datacenter_compat_branches = Setting([470, 525, 535, 545, 560, 565, 570], "Older driver branches accepted on data-centre GPUs via CUDA forward compatibility.", "list[int]", _batch_sizes)
    nvidia_min_compute_capability = Setting(7.5, "Minimum GPU compute capability (Triton 25.05 needs 7.5).", "float", _float(5.0, 20.0))
    # -- the NVIDIA driver (deploys/host_base/driver.py: the policy; docs/driver.md) --
    nvidia_driver = Setting("install", "The driver step: install (the pinned branch where no NVIDIA driver is installed; a loaded, new-enough driver is left alone), manage (the deploy owns the driver: replaces a too-old one, follows nvidia_driver_branch), never (no driver operations).", "str", _choice("install", "manage", "never"))
    nvidia_driver_branch = Setting(580, "NVIDIA driver branch the driver step installs (580: long-term branch to 2028; ≥ nvidia_min_driver). Changing it moves held packages only with nvidia_driver: manage.", "int", _int(400, 10_000))
    nvidia_driver_open = Setting(True, "Install the open kernel modules (every GPU Triton 25.05 supports runs them; Blackwell and Grace Hopper need them).", "bool", _bool)
    nvidia_cuda_apt_url = Setting("https://developer.download.nvidia.com/compute/cuda/repos", "NVIDIA's CUDA apt repository base (Debian GPU hosts' driver); /debian<major>/x86_64/ is appended.", "str", _text(r"https?://\S+", "an http(s) URL"))
    nvidia_cuda_key_fingerprint = Setting(NVIDIA_CUDA_KEY_FINGERPRINT, "Fingerprint NVIDIA's CUDA repository key (<url>/debian<major>/x86_64/3bf863cc.pub) must have; checked on the host before it is installed.", "str", _fingerprint)
    reboot_without_front_door = Setting(False, "deploys/reboot.py may reboot Triton hosts of a fleet without a front door (clients then see the host go away).", "bool", _bool)
    reboot_command = Setting("reboot", "What deploys/reboot.py runs to reboot a host (detached). The sandbox's systemd containers use a userspace reboot instead (tests/sandbox).", "str", _text(r"\S.*", "a shell command"))
    reboot_timeout_s = Setting(900, "Seconds deploys/reboot.py waits for a rebooted host to answer again with a new boot; past it the roll stops with one line.", "int", _int(30, 7200))
    # -- Docker --
    docker_source = Setting("distro", "Where Docker comes from: distro (docker.io + compose v2 plugin) or docker-ce (Docker's apt repo).", "str", _choice("distro", "docker-ce"))
    docker_ce_version = Setting("", 'docker-ce version pin for apt (e.g. "5:28.3.3-1~ubuntu.24.04~noble"); empty: latest.', "str", _text(r"[A-Za-z0-9.:~+\-]*", "an apt version string or empty"))
    docker_ce_apt_url = Setting("https://download.docker.com/linux", "Docker apt repository base URL (override for a mirror); /<distro> is appended.", "str", _text(r"https?://\S+", "an http(s) URL"))
    docker_ce_key_fingerprint = Setting(DOCKER_KEY_FINGERPRINT, "Fingerprint the Docker apt key (<docker_ce_apt_url>/<distro>/gpg) must have; checked on the host before it is installed.", "str", _fingerprint)
    docker_log_max_size = Setting("10m", "json-file log rotation: size of one log file.", "str", _text(r"[0-9]+[kmg]", "a size such as 10m"))
    docker_log_max_file = Setting(3, "json-file log rotation: number of files kept.", "int", _int(1, 100))
    docker_registry_mirrors = Setting([], "daemon.json registry-mirrors.", "list[str]", _str_list)
    docker_insecure_registries = Setting([], "daemon.json insecure-registries (host:port).", "list[str]", _str_list)
    docker_http_proxy = Setting("", "daemon.json proxies.http-proxy for image pulls.", "str", _text(r"(https?://\S+)?", "an http(s) URL or empty"))
    docker_https_proxy = Setting("", "daemon.json proxies.https-proxy for image pulls.", "str", _text(r"(https?://\S+)?", "an http(s) URL or empty"))
    docker_no_proxy = Setting("", "daemon.json proxies.no-proxy (comma separated).", "str", _text(r"\S*", "a comma-separated host list or empty"))
    docker_service_env = Setting({}, "Extra environment for docker.service (systemd drop-in), e.g. for Docker-in-container hosts.", "dict[str, str]", _env_map)
    docker_pull_timeout_s = Setting(3600, "Seconds `docker pull` of triton_image may take (the GPU image is ~15 GB); past it the registry step fails that host with one line.", "int", _int(60, 86_400))
    # -- NVIDIA Container Toolkit --
    nvidia_toolkit_version = Setting("1.17.8-1", "nvidia-container-toolkit apt version pin.", "str", _text(r"[0-9][A-Za-z0-9.:~+\-]*", "an apt version such as 1.17.8-1"))
    nvidia_toolkit_apt_url = Setting("https://nvidia.github.io/libnvidia-container", "NVIDIA container toolkit apt repository base URL (override for a mirror).", "str", _text(r"https?://\S+", "an http(s) URL"))
    nvidia_toolkit_key_fingerprint = Setting(NVIDIA_TOOLKIT_KEY_FINGERPRINT, "Fingerprint the NVIDIA toolkit apt key (<nvidia_toolkit_apt_url>/gpgkey) must have; checked on the host before it is installed.", "str", _fingerprint)
    # -- registry --
    registry_host = Setting("nvcr.io", "Registry that serves triton_image; docker login target.", "str", _text(r"[a-z0-9.\-]+(:[0-9]+)?", "a registry host[:port]"))
    registry_username = Setting("$oauthtoken", "Registry user ($oauthtoken for NGC API keys).", "str", _text(r"\S+", "a non-empty user name"))
    registry_auth = Setting("vault", "Registry credentials: vault (ngc_api_key, or registries[registry_host] in secrets_file; NGC_API_KEY overrides) or none (anonymous pulls, e.g. a local mirror).", "str", _choice("vault", "none"))
    registry_logout_after_pull = Setting(False, "Log out after the image is pulled: no credential left on disk.", "bool", _bool)
# fmt: on
