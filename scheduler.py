"""The opsdesk process entry point, and the composition root: the one place that knows both app/
and agents/. It hands the agents registry to the CLI, which hands it to the schedule and the
`agents run` command. `opsdesk ...` (pyproject's console script) is `main`; `python scheduler.py`
is `opsdesk run` (API + scheduler + executor in one process).
"""

from __future__ import annotations

import sys

from agents import REGISTRY
from app.cli import main as cli_main


def main(argv: list[str] | None = None) -> None:
    cli_main(argv, agents=REGISTRY)


if __name__ == "__main__":
    main(["run", *sys.argv[1:]])
