"""Render the files written on hosts from the jinja2 templates in templates/.

Every renderer is a pure function of validated :class:`~deploys.core.settings.Settings`, so the deploy
steps and the tests render exactly the same text. The Triton model config is parsed with Triton's
own ModelConfig protobuf before anything is uploaded: a broken config fails on the controller.
"""

from __future__ import annotations

import ipaddress
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from pyinfra.api.exceptions import PyinfraError

from deploys.core.repo import TEMPLATES_DIR

LABEL_PREFIX = "io.triton-embeddinggemma"
# The files the deploy writes from a parsed template are written in canonical form (below), so a
# template's comments and layout never reach a host; this line says where they come from.
MANAGED_HEADER = "# Managed by the triton-embeddinggemma pyinfra deploy: edits here are overwritten.\n"


class RenderError(PyinfraError):
    """A template rendered into something its consumer would reject (printed as one line)."""


def search_path(directory: Path) -> list[str]:
    """Where a template name is looked up: ``directory`` itself (a site's own template, e.g.
    triton_config_template), then each role's folder ``directory/<role>/`` (a template name is
    unique across roles: tests/test_layout.py), so the names stay short and the same as before."""
    return [str(directory), *(str(d) for d in sorted(directory.iterdir()) if d.is_dir())]


@lru_cache(maxsize=4)
def _environment(directory: str) -> jinja2.Environment:
    """A jinja2 environment for ``directory``: StrictUndefined, so a missing value is an error."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search_path(Path(directory))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # pbtxt/YAML/JSON/INI, not HTML
    )
    environment.filters["shquote"] = shlex.quote  # a word of a shell command (the compose file's sh -c)
    return environment


def render(template_name: str, **context: Any) -> str:
    """Render ``templates/<template_name>`` with ``context``; undefined names raise RenderError."""
    try:
        text = _environment(str(TEMPLATES_DIR)).get_template(template_name).render(**context)
    except jinja2.TemplateError as error:
        raise RenderError(f"template {template_name}: {type(error).__name__}: {error}") from None
    return text if text.endswith("\n") else text + "\n"


def canonical_yaml(text: str, source: str) -> str:
    """``text`` parsed as YAML and dumped back (keys in their order, no comments, one layout)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RenderError(f"{source} does not parse as YAML: {error}") from None
    return yaml.safe_dump(data, sort_keys=False, width=1_000_000, allow_unicode=True)


def url_host(address: str) -> str:
    """An address as the host part of a URL or a compose port mapping: IPv6 addresses need brackets."""
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


# -- monitoring (the monitoring host's Prometheus, every host's node exporter, a user's Grafana) --


# -- the registry cache (hosts of the group registry_cache) --
