"""The parity check's tunable options, defined once for both sides of the SSH boundary.

Each option is a command-line flag of ``python -m verify.parity`` (this side, on the host, without
pyinfra or deploys/) and a ``verify_*`` setting of the deploy (deploys/core/settings.py takes its
default and doc from here; deploys/triton/verify_run.py builds the flags with :func:`argv`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def at_least_one(text: str) -> int:
    """A whole number ≥ 1 (argparse type): 0 timed requests would leave nothing to take a p50 of."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


@dataclass(frozen=True)
class Option:
    name: str  # argparse dest; the flag is --name-with-dashes
    setting: str  # the deploy's setting
    type: Any  # how the host program parses the flag (a type, or a function like at_least_one)
    default: Any
    doc: str
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("device", "verify_device", str, "auto", "Local ONNX Runtime device: auto (CUDA on GPU hosts when usable), cpu or cuda.", ("auto", "cpu", "cuda")),
    Option("min_cosine", "verify_min_cosine", float, 0.9999, "Lowest accepted cosine between Triton and local ONNX Runtime embeddings."),
    Option("max_abs_diff", "verify_max_abs_diff", float, 1e-3, "Largest accepted absolute difference of any embedding component."),
    Option("norm_tolerance", "verify_norm_tolerance", float, 1e-3, "Largest accepted distance of an embedding's L2 norm from 1."),
    Option("max_length", "verify_max_length", int, 2048, "Tokens per sample text (longer samples are truncated; EmbeddingGemma reads 2048)."),
    Option("latency_iterations", "verify_latency_iterations", at_least_one, 20, "Timed requests per latency measurement (batch 1 and the max batch)."),
    Option("timeout", "verify_timeout_s", float, 60, "Seconds the check waits for Triton and the model to be ready before failing."),
)  # fmt: skip

# The model's attention window for the long samples (parity's --window default): the deploy passes
# model_sliding_window in the environment, which verify code of any age accepts.
WINDOW_ENV = "VERIFY_WINDOW"

BY_NAME = {option.name: option for option in OPTIONS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option to the host program's parser."""
    for option in OPTIONS:
        parser.add_argument(option.flag, type=option.type, default=option.default, choices=option.choices, help=option.doc)


def argv(values: Mapping[str, Any]) -> list[str]:
    """The flags for ``values`` (option name → value), in OPTIONS order, as the parser reads them back."""
    args: list[str] = []
    for option in OPTIONS:
        value = values[option.name]
        args += [option.flag, repr(value) if isinstance(value, float) else str(value)]
    return args
