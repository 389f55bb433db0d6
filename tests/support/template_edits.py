"""Harmless edits of the Triton templates (a comment reworded, lines re-indented or spaced): what
must leave every release id, every file on a host and every running container as they are."""

from __future__ import annotations

import shutil
from pathlib import Path

EDITS = {
    "triton/config.pbtxt.j2": [
        (
            "# With max_batch_size > 0 the batch dimension is implicit: [-1] means [batch, seq].",
            "# Reworded: max_batch_size > 0 makes the batch dimension implicit ([-1] is [batch, seq]).\n\n",
        ),
        ('  { name: "input_ids"', '        {   name:   "input_ids"'),
        ("    count: {{ s.triton_instance_count }}", "\t count:    {{ s.triton_instance_count }}   # reworded comment"),
    ],
    "triton/docker-compose.yml.j2": [
        ("    # Shared memory and ulimits as NVIDIA recommends for Triton containers.", "    # Reworded: NVIDIA's shm and ulimits.\n"),
        (
            '      test: ["CMD", "curl", "-fsS", "http://localhost:8000/v2/health/ready"]',
            '      test:   [ "CMD",   "curl", "-fsS",\n              "http://localhost:8000/v2/health/ready" ]   # re-flowed',
        ),
        ("      interval: 15s", "      interval:        15s"),
    ],
}


def edited(name: str, text: str) -> str:
    """``text`` of template ``name`` (its path under templates/) with its harmless edits (each must apply)."""
    for old, new in EDITS[name]:
        assert old in text, f"{name}: {old!r} is not in the template any more; update tests/support/template_edits.py"
        text = text.replace(old, new)
    return text


def edit_copy(templates: Path, into: Path) -> Path:
    """A copy of the ``templates`` directory in ``into`` with the harmless edits applied."""
    shutil.copytree(templates, into, dirs_exist_ok=True)
    for name in EDITS:
        (into / name).write_text(edited(name, (templates / name).read_text(encoding="utf-8")), encoding="utf-8")
    return into
