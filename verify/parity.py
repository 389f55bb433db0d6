"""Parity check: Triton (HTTP and gRPC) against local ONNX Runtime on the same model files.

Run on the host that serves the model::

    python -m verify.parity --model-dir /opt/triton-embeddinggemma/models/embeddinggemma/1 \\
        --tokenizer-dir /opt/triton-embeddinggemma/tokenizer \\
        --url 127.0.0.1:6000 --grpc-url 127.0.0.1:6001 --report parity.json

It embeds the fixed samples of verify/samples.py (queries and documents with their task prefixes,
several scripts, one text longer than the max length) and checks, per sample:

- Triton vs local ONNX Runtime, each protocol: cosine ≥ --min-cosine, max |Δ| ≤ --max-abs-diff;
- L2 norm within --norm-tolerance of 1, and every value finite (NaN/inf fail);
- batch invariance: the sample inside a right-padded batch vs alone (same thresholds);
- Matryoshka 512/256/128: truncated and re-normalised, Triton vs local (same thresholds);
- with --gateway-url: the embeddings gateway (embeddings_gateway/app.py, OpenAI's POST /v1/embeddings) on
  the same sample texts (sent with ``input_type: none``: they carry their prompts already), at every
  Matryoshka dimension, ``float`` and ``base64``: each vector vs the local embedding truncated and
  re-normalised (same thresholds), float and base64 bit-identical, ``usage.prompt_tokens`` equal to
  the local tokenizer's count.

It also measures latency (p50/p95, batch 1 and the max batch) and, when NVML is available, GPU
memory before and after. One JSON report (fields: the README's "Report fields"). Exit status: 0 pass,
1 mismatch (the message names the worst sample; also a gateway that is down, not ready within
--timeout or refuses the key: the rest of the report stays), 2 error (Triton unreachable or not
ready within --timeout, wrong model contract, missing files).

By concern: verify/checks.py (the verdicts, pure), verify/probes.py (latency, GPU memory, digests,
padded batches), verify/api_probe.py (the embeddings API's answers over HTTP); this module runs
them in order and is the CLI.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from verify import options
from verify.api_probe import check_gateway_endpoint
from verify.checks import Evaluation, Thresholds, evaluate, verdict_message
from verify.client import EmbeddingError, TextEncoder, TritonBackend
from verify.probes import batches, embed_alone, embed_batched, file_digests, gpu_snapshot, percentiles, time_calls
from verify.samples import WINDOW, samples

REPORT_VERSION = 2  # 2: the gateway section, samples[].gateway, failures of check "gateway"
EXIT_PASS, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2
PROTOCOLS = ("http", "grpc")
LATENCY_SAMPLE = "q-short-en"  # batch 1
LATENCY_BATCH_SAMPLE = "d-medium"  # the max batch: copies of a mid-length document


def run(args: argparse.Namespace) -> tuple[dict[str, Any], Evaluation]:
    """Everything but the exit status: returns (report, evaluation). Raises EmbeddingError."""
    limits = Thresholds(args.min_cosine, args.max_abs_diff, args.norm_tolerance)
    encoder = TextEncoder(args.tokenizer_dir, max_length=args.max_length)
    sample_list = samples(args.window)
    texts = [s.text for s in sample_list]
    id_lists = encoder.encode(texts)
    lengths = [len(ids) for ids in id_lists]
    urls = {"http": args.url, "grpc": args.grpc_url}
    servers = {
        p: TritonBackend(urls[p], model_name=args.model_name, protocol=p, timeout_s=args.request_timeout, key_file=args.triton_key_file)
        for p in PROTOCOLS
        if urls[p]
    }
    if not servers:
        raise EmbeddingError("give --url and/or --grpc-url")
    first = next(iter(servers.values()))
    first.wait_ready(args.timeout)
    first.check_contract()
    for backend in servers.values():
        backend.wait_ready(args.timeout)
    server_max_batch = first.max_batch_size()
    max_batch = min(args.max_batch or server_max_batch or 1, server_max_batch or 1)

    gpu_before = gpu_snapshot()
    started = time.monotonic()
    triton = {p: embed_alone(b, encoder, id_lists) for p, b in servers.items()}
    groups = batches(sample_list, lengths, max_batch, encoder.max_length)
    protocol, backend = next(iter(servers.items()))
    batched = {f"{protocol}-batch": embed_batched(backend, encoder, id_lists, groups)}
    index = {s.id: i for i, s in enumerate(sample_list)}
    single = encoder.pad([id_lists[index[LATENCY_SAMPLE]]])
    full = encoder.pad([id_lists[index[LATENCY_BATCH_SAMPLE]]] * max_batch)
    latency = {
        "protocol": protocol,
        "batch_1": {
            **percentiles(time_calls(lambda: backend.infer(*single), args.latency_iterations)),
            "batch_size": 1,
            "seq_len": int(single[0].shape[1]),
        },
        "batch_max": {
            **percentiles(time_calls(lambda: backend.infer(*full), args.latency_iterations)),
            "batch_size": max_batch,
            "seq_len": int(full[0].shape[1]),
        },
    }
    gpu_after = gpu_snapshot()
    triton_seconds = time.monotonic() - started

    local_backend = _local_backend(args)
    local = embed_alone(local_backend, encoder, id_lists)
    evaluation = evaluate([s.id for s in sample_list], local, triton, batched, limits)
    for row, sample, count in zip(evaluation.rows, sample_list, lengths, strict=True):
        row.update({"kind": sample.kind, "tokens": count, "at_max_length": count >= encoder.max_length})
    gateway, through_gateway = check_gateway_endpoint(args, sample_list, encoder, id_lists, local, local_backend, limits)
    evaluation.failures += through_gateway.failures
    if gateway["checked"]:
        for row, gateway_row in zip(evaluation.rows, through_gateway.rows, strict=True):
            row["gateway"] = gateway_row

    model_files = file_digests(args.model_dir, [args.model_file, args.model_file + "_data"]) if not args.no_hash else {}
    report = {
        "report_version": REPORT_VERSION,
        "verdict": "fail" if evaluation.failures else "pass",
        "message": verdict_message(evaluation, gateway),
        "created_unix": int(time.time()),
        "host": platform.node(),
        "thresholds": asdict(limits),
        "summary": evaluation.summary,
        "failures": [asdict(f) for f in evaluation.failures],
        "samples": evaluation.rows,
        "server": {
            "http_url": args.url,
            "grpc_url": args.grpc_url,
            "model_name": args.model_name,
            "version": first.server_version(),
            "max_batch_size": server_max_batch,
            "seconds": round(triton_seconds, 3),
        },
        "local": {"provider": local_backend.provider, "onnxruntime": local_backend.version, "device": args.device},
        "model": {
            "dir": str(args.model_dir),
            "files": model_files,
            "graph": args.model_file,
            "sha256": model_files.get(args.model_file + "_data") or model_files.get(args.model_file),
        },
        "tokenizer": {
            "dir": str(args.tokenizer_dir),
            "max_length": encoder.max_length,
            "sha256": file_digests(args.tokenizer_dir, ["tokenizer.json"]).get("tokenizer.json"),
        },
        "window": args.window,  # the long samples' lengths follow it (verify/samples.py)
        "gateway": gateway,
        "latency": latency,
        "gpu": {"before": gpu_before, "after": gpu_after},
        # Triton's embedding of every sample (first protocol, alone): the fleet compares these across hosts.
        "embeddings": {
            s.id: [round(float(x), 7) if math.isfinite(x) else None for x in triton[protocol][i]] for i, s in enumerate(sample_list)
        },
    }
    for backend in servers.values():
        backend.close()
    return report, evaluation


def _local_backend(args: argparse.Namespace) -> Any:
    from verify.local import LocalBackend  # needs onnxruntime; the client module does not

    return LocalBackend(Path(args.model_dir), device=args.device, threads=args.threads, model_file=args.model_file)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verify.parity", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", required=True, type=Path, help="directory with model.onnx (+ model.onnx_data) that Triton serves")
    p.add_argument("--model-file", default="model.onnx", help="graph file name in --model-dir (q8: model_quantized.onnx)")
    p.add_argument("--tokenizer-dir", required=True, type=Path, help="directory with tokenizer.json (+ tokenizer_config.json)")
    p.add_argument("--url", default="127.0.0.1:6000", help="Triton HTTP host:port ('' to skip HTTP)")
    p.add_argument("--grpc-url", default="127.0.0.1:6001", help="Triton gRPC host:port ('' to skip gRPC)")
    p.add_argument(
        "--triton-key-file", default="", help="file holding Triton's restricted-API key (model config, repository index); '' = none sent"
    )
    p.add_argument("--model-name", default="embeddinggemma")
    options.add_arguments(p)  # device, thresholds, max length, latency iterations, timeout
    p.add_argument(
        "--window",
        type=int,
        # From the environment too: the deploy sets it for verify code of any age (an older one ignores
        # the variable, where an unknown flag would fail a roll's check).
        default=int(os.environ.get(options.WINDOW_ENV) or WINDOW),
        help=f"the model's attention window |i - j|: the long samples are sized past it (default: ${options.WINDOW_ENV} or {WINDOW})",
    )
    p.add_argument("--threads", type=int, default=0, help="local ONNX Runtime intra-op threads (0: its default)")
    p.add_argument("--max-batch", type=int, default=0, help="batch size for the batch checks and latency (0: the server's max_batch_size)")
    p.add_argument("--request-timeout", type=float, default=300.0, help="seconds per request")
    p.add_argument("--report", type=Path, help="write the JSON report here ('-': stdout)")
    p.add_argument("--no-hash", action="store_true", help="skip hashing the model files")
    g = p.add_argument_group("embeddings gateway (embeddings_gateway/app.py)")
    g.add_argument("--gateway-url", default="", help="the gateway's base URL, e.g. http://127.0.0.1:6080 ('': not checked)")
    g.add_argument("--gateway-key-file", default="", help="file holding the gateway's bearer key ('': no Authorization header)")
    g.add_argument(
        "--gateway-max-tokens", type=int, default=0, help="the gateway's max_tokens: where it truncates (0: the same as --max-length)"
    )
    g.add_argument(
        "--gateway-no-truncate", action="store_true", help="the gateway refuses longer inputs: samples over max tokens are not sent"
    )
    g.add_argument("--gateway-max-inputs", type=int, default=256, help="inputs per request (at most the gateway's max_inputs)")
    return p


def write_report(report: dict[str, Any], destination: Path | None) -> None:
    if destination is None:
        return
    text = json.dumps(report, indent=None, separators=(",", ":"), allow_nan=False) + "\n"
    if str(destination) == "-":
        sys.stdout.write(text)
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    say = sys.stderr if str(args.report) == "-" else sys.stdout
    try:
        report, evaluation = run(args)
    except EmbeddingError as error:
        message = f"parity ERROR: {error}"
        write_report(
            {
                "report_version": REPORT_VERSION,
                "verdict": "error",
                "message": message,
                "created_unix": int(time.time()),
                "host": platform.node(),
            },
            args.report,
        )
        print(message, file=sys.stderr)
        return EXIT_ERROR
    write_report(report, args.report)
    summary = report["summary"]
    print(
        f"latency {report['latency']['protocol']}: batch 1 p50 {report['latency']['batch_1']['p50_ms']} ms, "
        f"batch {report['latency']['batch_max']['batch_size']} p50 {report['latency']['batch_max']['p50_ms']} ms; "
        f"local {report['local']['provider']}; min cosine {summary['min_cosine']}, max abs diff {summary['max_abs_diff']}",
        file=say,
    )
    print(report["message"], file=say if not evaluation.failures else sys.stderr)
    return EXIT_MISMATCH if evaluation.failures else EXIT_PASS


if __name__ == "__main__":
    sys.exit(main())
