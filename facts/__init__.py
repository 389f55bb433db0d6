"""Custom pyinfra facts for this deploy: read-only commands, pure parsing, defaults when absent.

- ``facts.gpu``: ``NvidiaGpus`` (nvidia-smi inventory), ``is_datacenter_gpu``.
- ``facts.docker``: ``DockerDaemonJson``, ``DockerRuntimes``, ``DockerImageId``,
  ``DockerContainer``, ``DockerRegistryAuth`` (+ ``registry_auth_digest``), ``UrlCredentialsDigest``,
  ``DockerComposeVersion``.
- ``facts.disk``: ``FreeDiskBytes``.
- ``facts.triton``: ``TritonHealth``, ``TritonModelConfig``.
- ``facts.apt``: ``AptPackageVersion``, ``AptAvailableVersions``.

From the CLI: ``pyinfra @local fact facts.gpu.NvidiaGpus`` (run from the repository root).
"""
