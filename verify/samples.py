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


# Long documents of about 300, 600, 1,200 and 2,000 tokens (EmbeddingGemma's tokenizer: roughly 4.5
# characters of this English prose a token): past the model's ±256-token attention window, where an
# export without the window drifts (docs/models.md, "Long inputs"). A smaller tokenizer (the sandbox's)
# makes more tokens of the same text; the longest is then truncated at the max length like d-long-max.
# The reports give each sample's real token count.
_LONG_SENTENCES = (
    "Sliding-window attention lets each token look at its neighbours within a fixed distance. ",
    "Every sixth layer of the model attends to the whole text, so distant parts still meet. ",
    "A served graph that drops the window agrees on short inputs and drifts on long ones. ",
    "Verification therefore embeds long documents as well as short queries and titles. ",
    "Padding to a common length must not change any embedding, whatever the batch holds. ",
    "The same text through HTTP, gRPC and the gateway must give the same vector each time. ",
)
LONG_TOKENS = (300, 600, 1200, 2000)


def _long_text(tokens: int) -> str:
    """About ``tokens`` tokens of varied prose (whole sentences, cycled)."""
    text, i = "", 0
    while len(text) < tokens * 4.5:
        text += _LONG_SENTENCES[i % len(_LONG_SENTENCES)]
        i += 1
    return text.strip()


@dataclass(frozen=True)
class Sample:
    """One text: ``kind`` is query or document; ``text`` already carries its task prefix."""

    id: str
    kind: str
    text: str


def samples(long_repeats: int = 120) -> list[Sample]:
    """The parity samples, in a fixed order: short ones, then long documents of about 300 to 2,000
    tokens (past the attention window), and last one longer than any max length."""
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
        *(Sample(f"d-long-{n}", "document", document_text(_long_text(n), title="Window")) for n in LONG_TOKENS),
        Sample("d-long-max", "document", document_text(_LONG_PARAGRAPH * long_repeats, title="Long")),
    ]
