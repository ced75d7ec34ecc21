"""Tests of the local embeddings model skip on a machine without the `local` extra, but fail in CI
(the CI environment variable set): there a skip would hide that the paraphrase tests never ran."""

from __future__ import annotations

from integrations.embeddings import local_extra_installed
from tests.ci import skip_or_fail

INSTALL_HINT = "pip install torch==2.13.0, then pip install -e '.[local]'"


def require_local_extra() -> None:
    if local_extra_installed():
        return
    skip_or_fail(f"the `local` extra is not installed: {INSTALL_HINT}")
