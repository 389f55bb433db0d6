"""The fixed sample texts of the parity check: queries and documents, short and long, several scripts.

Sample ids are stable: reports and the fleet table compare the same id across hosts and runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from verify.client import document_text, query_text

# Filler for the long document: repeated until the tokenizer truncates it at the max length.
_LONG_PARAGRAPH = (
    "Triton Inference Server batches requests of equal shape, so clients pad every text of a batch "
    "to one length. The embedding model reads at most two thousand and forty-eight tokens; longer "
    "documents are truncated. Verification compares the served model with a local run of the very "
    "same ONNX graph, sample by sample, over HTTP and gRPC, alone and inside padded batches. "
)


# Long documents of about 300, 600, 1,200 and 2,000 tokens for EmbeddingGemma's ±256-token attention window
# (its tokenizer: roughly 4.5 characters of this English prose a token): past the window, where an export
# without the window drifts (docs/models.md, "Long inputs"). The lengths scale with the served model's
# window (``samples(window=...)``, the deploy's model_sliding_window): the same multiples of a smaller
# window are shorter texts, so a small model (the sandbox's, window 8) is checked past its window without
# paying for thousands of tokens through every layer on every run. A smaller tokenizer (the sandbox's)
# makes more tokens of the same text. The reports give each sample's real token count.
_LONG_SENTENCES = (
    "Sliding-window attention lets each token look at its neighbours within a fixed distance. ",
    "Every sixth layer of the model attends to the whole text, so distant parts still meet. ",
    "A served graph that drops the window agrees on short inputs and drifts on long ones. ",
    "Verification therefore embeds long documents as well as short queries and titles. ",
    "Padding to a common length must not change any embedding, whatever the batch holds. ",
    "The same text through HTTP, gRPC and the gateway must give the same vector each time. ",
)
LONG_TOKENS = (300, 600, 1200, 2000)  # at WINDOW; ×window/WINDOW for another window
WINDOW = 256  # EmbeddingGemma's largest attended distance |i - j| in a sliding layer


def long_tokens(window: int = WINDOW) -> tuple[int, ...]:
    """The long samples' token counts for a model attending |i - j| ≤ ``window``: LONG_TOKENS scaled,
    rounded up (each still past the window: 300/256 > 1)."""
    return tuple(-(-n * window // WINDOW) for n in LONG_TOKENS)


def _long_text(tokens: int) -> str:
    """About ``tokens`` tokens of varied prose: the sentences cycled, cut after the word that reaches
    the length (so the short texts of a small window differ from each other too)."""
    words = " ".join(_LONG_SENTENCES).split()
    text, i = "", 0
    while len(text) < tokens * 4.5:
        text += (" " if text else "") + words[i % len(words)]
        i += 1
    return text


@dataclass(frozen=True)
class Sample:
    """One text: ``kind`` is query or document; ``text`` already carries its task prefix; ``long``: a
    document past the attention window (the gateway is asked for it at one dimension and encoding)."""

    id: str
    kind: str
    text: str
    long: bool = False


def samples(window: int = WINDOW, long_repeats: int = 120) -> list[Sample]:
    """The parity samples, in a fixed order: short ones, then long documents past the attention
    window (about 300 to 2,000 tokens for ``window`` 256: :func:`long_tokens`), and last one longer
    than any max length. Ids name the long ones by their token count (d-long-300 .. d-long-2000)."""
    return [
        Sample("q-short-en", "query", query_text("What is Triton?")),
        Sample("q-empty", "query", query_text("")),
        Sample("q-code", "query", query_text("function that pads token ids to a common length", task="code retrieval")),
        Sample("q-de", "query", query_text("Wie funktioniert die Straßenbahn in Köln über die Brücke?")),
        Sample("q-ja", "query", query_text("東京で一番おいしいラーメンはどこですか？")),
        Sample("q-emoji", "query", query_text("rocket 🚀 vs check ✓ — what do they mean?", task="sentence similarity")),
        Sample("d-no-title", "document", document_text("Triton serves models over HTTP and gRPC and reports Prometheus metrics.")),
        Sample(
            "d-title",
            "document",
            document_text("Truncate to 512, 256 or 128 components and normalise again.", title="Matryoshka embeddings"),
        ),
        Sample("d-ar", "document", document_text("البحث الدلالي يعمل مع النصوص العربية أيضا", title="بحث")),
        Sample("d-ru", "document", document_text("Поиск документов по смыслу работает на любом языке, даже с ошибками.")),
        Sample("d-medium", "document", document_text(_LONG_PARAGRAPH * 2, title="Padding")),
        *(Sample(f"d-long-{n}", "document", document_text(_long_text(n), title="Window"), long=True) for n in long_tokens(window)),
        Sample("d-long-max", "document", document_text(_LONG_PARAGRAPH * long_repeats, title="Long"), long=True),
    ]
