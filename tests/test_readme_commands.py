"""The README's two fresh-machine commands stay true: CI runs exactly the test command, and the main-job
command names files that exist in the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _fresh_machine_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands for a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    commands = _fresh_machine_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in c for c in commands), "each fresh-machine command is one line"
    ci = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.lstrip().startswith("#")]
    assert ci[-1] == commands[1], "the last line of .ci/run must be the README's test command"
    assert not [ln for ln in ci if "pytest" in ln or "setup.sh" in ln][:-1], ".ci/run runs nothing else"


def test_main_job_command_uses_shipped_files_and_never_overwrites_unasked() -> None:
    main_job = _fresh_machine_commands()[0]
    assert main_job.startswith("bash scripts/setup.sh && ")
    argv = shlex.split(main_job.split("&&", 1)[1])
    assert argv[:2] == [".venv/bin/talkrig", "animate"]
    clip = REPO / argv[2]
    assert clip.is_file(), f"the README's example clip {argv[2]} is not in the repository"
    # Idempotent: a second run replaces its own outputs only because the command says so.
    assert "--overwrite" in argv and "--out" in argv and "--render" in argv
