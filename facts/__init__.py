"""Custom pyinfra facts for this deploy: read-only commands, pure parsing, defaults when absent.

- ``facts.gpu``: ``NvidiaGpus`` (nvidia-smi inventory), ``is_datacenter_gpu``.
- ``facts.docker``: ``DockerDaemonJson``, ``DockerRuntimes``, ``DockerImageId``, ``DockerImages``,
  ``DockerContainer``, ``DockerRegistryAuth`` (+ ``registry_auth_digest``), ``UrlCredentialsDigest``,
  ``DockerComposeVersion``.
- ``facts.disk``: ``FreeDiskBytes``, ``DirectoryBytes``.
- ``facts.triton``: ``TritonHealth``, ``TritonModelConfig``, ``TritonReleases``, ``TritonReleaseImages``.
- ``facts.registry_cache``: ``RegistryCacheWarm``.
- ``facts.apt``: ``AptPackageVersion``, ``AptAvailableVersions``, ``AptKeyFingerprints``.

From the CLI: ``pyinfra @local fact facts.gpu.NvidiaGpus`` (run from the repository root).
"""
