"""GET /memory/search over real HTTP (uvicorn on 127.0.0.1), and `opsdesk memory ...` in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from app.core.database import Database
from app.core.settings import Settings
from app.memory.models import MemoryItem
from app.memory.store import MemoryStore
from app.web import create_app
from integrations.embeddings import EmbeddingSpec
from tests.cli_support import database_env, run
from tests.conftest import API_TOKEN, make_settings
from tests.live_server import serve
from tests.memory_fakes import WordTopicEmbedder

DOCS = [
    MemoryItem(
        kind="kb_article",
        source="file",
        source_id="shipping.md",
        title="Shipping",
        content="Orders ship within two business days.",
    ),
    MemoryItem(
        kind="kb_article",
        source="file",
        source_id="refunds.md",
        title="Refunds",
        content="We refund <unused> items within 30 days.",
    ),
    MemoryItem(kind="ticket", source="hubspot", source_id="42", content="Where is my refund? Order 1001."),
]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url=database_url, opsdesk_data_dir=tmp_path, embeddings_provider="none")


@pytest.fixture
def api(settings: Settings, db: Database) -> Iterator[httpx.Client]:
    MemoryStore(db, settings).upsert(DOCS)
    with (
        serve(create_app(settings, db)) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30) as client,
    ):
        yield client


def test_search_answers_ranked_results_with_highlights(api: httpx.Client) -> None:
    response = api.get("/memory/search", params={"q": "refund", "mode": "fts"})
    assert response.status_code == 200
    body = response.json()
    assert body["mode"] == "fts" and body["fts_query"] == "'refund'"
    assert {hit["source_id"] for hit in body["results"]} == {"refunds.md", "42"}
    hit = next(hit for hit in body["results"] if hit["source_id"] == "refunds.md")
    assert "<mark>refund</mark> &lt;unused&gt; items within 30 days" in hit["snippet"]
    assert set(hit) >= {
        "id",
        "kind",
        "source",
        "source_id",
        "title",
        "snippet",
        "score",
        "fts_rank",
        "vector_rank",
        "similarity",
        "occurred_at",
        "metadata",
    }
    assert hit["fts_rank"] in (1, 2) and hit["vector_rank"] is None and hit["content"] is None


def test_filters_and_content(api: httpx.Client) -> None:
    body = api.get("/memory/search", params={"q": "refund", "kind": "ticket,note", "content": "true"}).json()
    assert [(hit["source_id"], hit["content"]) for hit in body["results"]] == [
        ("42", "Where is my refund? Order 1001.")
    ]
    repeated = api.get("/memory/search", params=[("q", "refund"), ("kind", "ticket"), ("kind", "kb_article")])
    assert len(repeated.json()["results"]) == 2
    assert api.get("/memory/search", params={"q": "refund", "since": "2999-01-01"}).json()["results"] == []


def test_without_embeddings_hybrid_says_it_fell_back_and_vector_is_refused(api: httpx.Client) -> None:
    body = api.get("/memory/search", params={"q": "refund"}).json()
    assert (body["requested_mode"], body["mode"]) == ("hybrid", "fts")
    assert any("EMBEDDINGS_PROVIDER is none" in notice for notice in body["notices"])
    refused = api.get("/memory/search", params={"q": "refund", "mode": "vector"})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "vector_search_unavailable" and "EMBEDDINGS_PROVIDER is none" in error["message"]
    assert error["request_id"]
    nothing = api.get("/memory/search", params={"q": "zeppelin"}).json()
    assert nothing["results"] == [] and any("no memory contains these words" in n for n in nothing["notices"])


def test_the_token_is_required(api: httpx.Client) -> None:
    url = f"{api.base_url}/memory/search"
    missing = httpx.get(url, params={"q": "refund"})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(url, params={"q": "refund"}, headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "wrong API token"


@pytest.mark.parametrize(
    "params",
    [
        {"q": "refund", "mode": "semantic"},
        {"q": "refund", "limit": "0"},
        {"q": "refund", "limit": "101"},
        {"q": "refund", "limit": "ten"},
        {"q": ""},
        {},
        {"q": "x" * 1001},
        {"q": "refund", "kind": "Not A Kind"},
        {"q": "refund", "since": "yesterday"},
    ],
)
def test_bad_parameters_are_422_and_change_nothing(api: httpx.Client, params: dict[str, str]) -> None:
    response = api.get("/memory/search", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"


def test_vector_and_hybrid_over_http(settings: Settings, db: Database) -> None:
    fake = WordTopicEmbedder()
    db.call("configure_memory", model=fake.spec.name, dimension=fake.spec.dimension, reset=False)
    store = MemoryStore(db, settings, embedder=fake)
    store.upsert(DOCS)
    store.embed_pending()
    app = create_app(settings, db)
    app.state.memory = store  # the router's store, here with the deterministic embedder
    with serve(app) as url:
        body = httpx.get(
            f"{url}/memory/search",
            params={"q": "courier parcel", "mode": "vector"},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        ).json()
    assert body["mode"] == "vector" and body["embeddings"] == "local/word-topics"
    assert body["results"][0]["source_id"] == "shipping.md" and body["results"][0]["vector_rank"] == 1


def test_while_the_vector_index_is_made_search_and_healthz_say_so(
    database_url: str,
    tmp_path: Path,
    db: Database,
    sql: psycopg.Connection,
) -> None:
    fake = WordTopicEmbedder()
    settings = make_settings(
        database_url=database_url,
        opsdesk_data_dir=tmp_path,
        embeddings_provider="openai",
        openai_api_key="sk-test-0123456789",
        embeddings_model="word-topics",
        embeddings_dimension=fake.spec.dimension,
    )
    fake.spec = EmbeddingSpec("openai", "word-topics", fake.spec.dimension)
    db.call("configure_memory", model=fake.spec.name, dimension=fake.spec.dimension, reset=False)
    store = MemoryStore(db, settings, embedder=fake)
    store.upsert(DOCS)
    store.embed_pending()
    sql.execute("drop index memory_embedding_hnsw")  # as an interrupted build left it
    app = create_app(settings, db)
    app.state.memory = store
    with serve(app) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"}) as api:
        assert httpx.get(f"{url}/healthz").json()["memory"] == {"vector_search": "building"}
        detailed = api.get("/healthz").json()
        assert detailed["status"] == "ok" and detailed["memory"]["missing_indexes"] == ["memory_embedding_hnsw"]
        body = api.get("/memory/search", params={"q": "refund"}).json()
        assert (body["requested_mode"], body["mode"]) == ("hybrid", "fts") and body["results"]
        assert any("vector index is being made" in notice for notice in body["notices"])
        refused = api.get("/memory/search", params={"q": "courier parcel", "mode": "vector"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "vector_index_building"

        assert store.maintain_indexes().state == "done"
        assert httpx.get(f"{url}/healthz").json()["memory"] == {"vector_search": "ready"}
        assert api.get("/memory/search", params={"q": "courier parcel", "mode": "vector"}).json()["mode"] == "vector"


# --- the CLI -------------------------------------------------------------------------------------
@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> pytest.MonkeyPatch:
    return database_env(monkeypatch, tmp_path, database_url)


def test_cli_imports_then_searches_as_a_table(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "returns.md").write_text("# Returns\n\nReturn [bold]anything[/bold] within 30 days for a refund.\n")
    assert run("memory", "import", str(folder)) == 0
    assert "1 created" in capsys.readouterr().out
    assert run("memory", "import", str(folder)) == 0
    assert "1 unchanged" in capsys.readouterr().out

    assert run("memory", "search", "refunds") == 0
    out = capsys.readouterr().out
    assert "returns.md" in out and "Returns" in out and "fts (asked hybrid)" in out
    assert "[bold]anything[/bold]" in out  # stored text is shown, never read as Rich markup
    assert "EMBEDDINGS_PROVIDER is none" in out

    assert run("memory", "search", "refund", "--mode", "vector") == 4
    assert "vector_search_unavailable" in capsys.readouterr().err
    assert run("memory", "status") == 0
    assert "kb_article" in capsys.readouterr().out


def test_cli_prune_and_reindex_refusal(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("memory", "prune") == 0
    assert "nothing is past its retention" in capsys.readouterr().out
    assert run("memory", "reindex", "--yes") == 2
    assert "EMBEDDINGS_PROVIDER is none" in capsys.readouterr().err


def test_cli_reindex_embeds_everything_and_a_new_model_is_refused_until_then(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "shipping.md").write_text("# Shipping\n\nOrders ship within two business days.\n")
    (folder / "refunds.md").write_text("# Refunds\n\nUnused items are refunded within 30 days.\n")
    assert run("memory", "import", str(folder)) == 0  # EMBEDDINGS_PROVIDER=none: stored, not embedded
    env.setenv("EMBEDDINGS_PROVIDER", "local")
    assert run("memory", "reindex", "--yes") == 0
    out = capsys.readouterr().out
    assert "re-embedding with local/all-MiniLM-L6-v2-int8 (384 dimensions)" in out and "2 row(s) embedded" in out
    assert run("memory", "search", "how long does delivery take", "--mode", "vector", "--json") == 0
    assert '"source_id": "shipping.md"' in capsys.readouterr().out.split('"results"')[1].split("}")[0]

    env.setenv("EMBEDDINGS_PROVIDER", "openai")
    env.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    assert run("memory", "status") == 2
    err = capsys.readouterr().err
    assert "embeddings_mismatch" in err and "opsdesk memory reindex" in err
