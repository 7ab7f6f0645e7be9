"""Every command the README and the `talkrig <command> --help` texts show is run, as written, by a test.

The README's two fresh-machine commands stay true: CI runs exactly the test command, and the main-job
command names files that exist in the repository. Every other command in the README's fenced blocks and
every `talkrig ...` line of a subcommand's --help runs in a fresh folder under tmp_path with a deadline and
must exit 0 and write the outputs it names. What a command reads is the shipped example: the files it
names under examples/ are the repository's, and placeholder inputs (speech.wav, takes/, hero.blend, ...)
are made from examples/hello_flite.flac (and the demo head) before it runs. Only two things are rewritten:
addresses (a free loopback port for 5557, the folder for an ipc socket, the folder for ``~``), so the
examples cannot collide with a real server, and the training recipe's sizes (SCALE), so it runs in CI.
Commands that cannot run here are listed in NOT_RUN with the reason.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from motion_server_helpers import free_port
from waiting import RAY_LOCK_S, machine_lock, wait_until

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
HELLO = REPO / "examples" / "hello_flite.flac"  # 1.4 s: the placeholder recordings are made from it
COMMAND_S = 900.0  # a hang guard per command, far beyond what any example takes

# Shown commands that are not run here, and why (a test checks that every other command is run).
FRESH_MACHINE = "bash scripts/setup.sh"  # the two commands above; CI runs them, tests below check them
NOT_RUN = {
    "blender ": "needs the Blender application (the tests use the bpy wheel) and installs into the user's "
                "Blender profile; test_blender_extension installs the built zip into a fresh profile",
    ".venv/bin/python scripts/build_extension.py": "downloads every platform's wheels from PyPI; "
                                                   "test_blender_extension builds the Linux zip",
}
# The training recipe's sizes, scaled down so it runs in CI; every other flag and path runs as written.
SCALE = {
    "synth": {"--hours": "0.005"},
    "train": {"--config": "tiny", "--steps": "2", "--threads": "1"},
    "eval": {"--limit": "1"},
}
OUTPUT_FLAGS = ("--out", "--render", "--json", "--report", "--save-profile")
WRITERS = ("animate", "generate", "plot")  # with no output flag they still write their default file


# -- what the README and the help texts show ---------------------------------------------------------------

@dataclass
class Example:
    where: str  # "README.md, ## The motion server" or "talkrig animate --help"
    lang: str  # "bash" (one command per line) or "python" (one program)
    lines: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return re.sub(r"[^\w]+", "_", self.where).strip("_")


def _readme_blocks() -> list[Example]:
    blocks: list[Example] = []
    heading, fence = "", None
    for line in README.read_text(encoding="utf-8").splitlines():
        if fence is None and line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif fence is None and line.startswith("```"):
            fence = Example(f"README.md, {heading}", line[3:].strip() or "bash")
        elif fence is not None and line.startswith("```"):
            blocks.append(fence)
            fence = None
        elif fence is not None:
            fence.lines.append(line)
    # identical headings (two blocks in one section) get a number
    seen: dict[str, int] = {}
    for b in blocks:
        seen[b.where] = seen.get(b.where, 0) + 1
        if seen[b.where] > 1:
            b.where += f" ({seen[b.where]})"
    return blocks


def readme_examples() -> list[Example]:
    out = []
    for b in _readme_blocks():
        if b.lang == "python":
            out.append(Example(b.where, "python", ["\n".join(b.lines)]))
        elif b.lang in ("bash", "sh", "shell", "console"):
            cmds = [ln.strip() for ln in b.lines if ln.strip() and not ln.strip().startswith("#")]
            runnable = [c for c in cmds if not c.startswith(FRESH_MACHINE) and not _not_run(c)]
            if runnable:
                out.append(Example(b.where, "bash", runnable))
    return out


def _not_run(line: str) -> str | None:
    return next((why for start, why in NOT_RUN.items() if line.startswith(start)), None)


def inline_help_commands() -> list[str]:
    """`python -m MODULE ... --help` written inline in the README (the headless Blender runner's, ...)."""
    spans = re.findall(r"`([^`\n]+)`", README.read_text(encoding="utf-8"))
    return sorted({s for s in spans if re.fullmatch(r"python -m [\w.]+(\s+\S+)*\s+--help", s)})


def help_examples() -> list[Example]:
    from motion_server.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for name, parser in sorted(sub.choices.items()):
        lines = [ln.strip() for ln in parser.format_help().splitlines() if re.match(r"\s+talkrig ", ln)]
        # a help example may end with what it writes, in brackets: "...  (curves/a.glb, curves/b.glb)"
        lines = [re.sub(r"\s{2,}\(.*\)$", "", ln) for ln in lines]
        if lines:
            out.append(Example(f"talkrig {name} --help", "bash", lines))
    return out


EXAMPLES = readme_examples() + help_examples()


# -- the inputs the examples name ---------------------------------------------------------------------------

def _wav(dest: Path) -> None:
    import soundfile as sf

    x, sr = sf.read(HELLO, dtype="float32")
    sf.write(dest, x, sr)


def _m4a(dest: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (scripts/setup.sh installs it): an example reads an .m4a file")
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(HELLO), "-c:a", "aac", str(dest)], check=True, timeout=120)


def _folder(dest: Path) -> None:
    dest.mkdir()
    for stem in ("line_one", "line_two"):
        shutil.copy(HELLO, dest / f"{stem}.flac")
        shutil.copy(HELLO.with_suffix(".txt"), dest / f"{stem}.txt")


def _manifest(dest: Path) -> None:
    _folder(dest.parent / "lines")
    dest.write_text("audio,style\nlines/line_one.flac,happy\nlines/line_two.flac,\n", encoding="utf-8")


def _motion_csv(dest: Path) -> None:
    from motion_server.audio import load_audio
    from motion_server.engine import GenerateOptions, create_engine
    from rig_mapping.formats import save_motion

    audio = load_audio(HELLO, sr=16000)
    save_motion(create_engine("energy").generate(audio, 16000, GenerateOptions(seed=1)), dest)


def _shape_names(dest: Path) -> None:
    from rig_mapping.arkit import ARKIT_NAMES

    dest.write_text("\n".join(n[0].upper() + n[1:] for n in ARKIT_NAMES) + "\n", encoding="utf-8")


def _bone_names(dest: Path) -> None:
    dest.write_text("root\nneck\nhead\njaw\n", encoding="utf-8")


def _blend(dest: Path) -> None:
    pytest.importorskip("bpy", reason="an example reads a .blend character: the bpy wheel builds it")
    code = ("import sys, bpy\nfrom blender_addon.core.demo_head import build_demo_head\n"
            "bpy.ops.wm.read_factory_settings(use_empty=True)\nbuild_demo_head()\n"
            "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1])\n")
    r = subprocess.run([sys.executable, "-c", code, str(dest)], cwd=REPO, env=_env(), capture_output=True,
                       text=True, timeout=COMMAND_S)
    assert r.returncode == 0 and dest.is_file(), r.stderr[-3000:]


PLACEHOLDERS = {
    ".wav": _wav, ".m4a": _m4a, ".blend": _blend, "/": _folder,
    "lines.csv": _manifest, "take.csv": _motion_csv, "shapes.txt": _shape_names,
    "my_shape_keys.txt": _shape_names, "bones.txt": _bone_names, "my_bones.txt": _bone_names,
}


def _make_input(ws: Path, arg: str) -> None:
    """Make the placeholder an example reads, unless it exists (examples/..., or an earlier line's output)."""
    path = ws / arg
    if path.exists() or arg.startswith("-") or "{" in arg:
        return
    if arg == "jfk.flac":  # the shipped clip, named as if it were in the current folder
        shutil.copy(REPO / "examples" / "jfk.flac", path)
        return
    maker = PLACEHOLDERS.get(arg) or PLACEHOLDERS.get("/" if arg.endswith("/") else path.suffix)
    if maker is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        maker(path)


# -- rewriting addresses and sizes --------------------------------------------------------------------------

class Addresses:
    """A free loopback port for every host:port an example names (two hosts on one port get two ports,
    as they would conflict on one machine), the example's folder for ipc sockets and for ``~``."""

    def __init__(self, ws: Path) -> None:
        self.ws = ws
        self.ports: dict[tuple[str, str], int] = {}

    def tcp(self, host: str, port: str) -> str:
        new = self.ports.setdefault((host, port), free_port())
        return f"tcp://{host}:{new}"

    def rewrite(self, text: str) -> str:
        text = re.sub(r"tcp://(127\.0\.0\.1|0\.0\.0\.0|\*|localhost):(\d+)", lambda m: self.tcp(*m.groups()), text)
        text = re.sub(r"ipc:///\S*?([\w.-]+\.sock)\b", lambda m: f"ipc://{self.ws}/{m.group(1)}", text)
        return re.sub(r"(^|\s)~/", lambda m: f"{m.group(1)}{self.ws}/", text)

    def default_bind(self) -> str:
        from motion_server.client import DEFAULT_ADDRESS

        return self.rewrite(DEFAULT_ADDRESS)


def _segments(line: str) -> list[list[str]]:
    """One shell line -> the argv of each command joined by ``&&`` (comments dropped)."""
    argvs: list[list[str]] = [[]]
    for tok in shlex.split(line, comments=True):
        if tok == "&&":
            argvs.append([])
        else:
            argvs[-1].append(tok)
    out = []
    for argv in argvs:
        while argv and argv[0] == "time":
            argv = argv[1:]
        if argv and argv[0].endswith("/talkrig"):
            argv = ["talkrig", *argv[1:]]
        out.append(argv)
    return out


def _scaled(argv: list[str]) -> list[str]:
    sizes = SCALE.get(argv[1], {}) if len(argv) > 1 and argv[0] == "talkrig" else {}
    argv = list(argv)
    for flag, value in sizes.items():
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _command(argv: list[str]) -> list[str]:
    """`talkrig ...` as the installed console script runs it (python -m motion_server is its entry point),
    with this checkout's code; `python ...` with this interpreter."""
    if argv[0] == "talkrig":
        return [sys.executable, "-m", "motion_server", *argv[1:]]
    if argv[0] in ("python", "python3", ".venv/bin/python"):
        return [sys.executable, *argv[1:]]
    return argv


# -- servers the examples start or talk to ------------------------------------------------------------------

class Servers:
    def __init__(self, ws: Path, addresses: Addresses) -> None:
        self.ws, self.addresses = ws, addresses
        self.running: dict[str, subprocess.Popen] = {}  # connect address -> process

    def start(self, argv: list[str], shown: str) -> None:
        from motion_server.client_process import connect_address

        if "--bind" not in argv:
            argv = [*argv, "--bind", self.addresses.default_bind()]
        bind = argv[argv.index("--bind") + 1]
        key = None
        if "--curve-secret" in argv:
            key = (self.ws / argv[argv.index("--curve-secret") + 1]).with_suffix(".key")  # keygen's public half
        log = self.ws / f"server-{len(self.running)}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen(_command(argv), cwd=self.ws, env=_env(), stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        address = connect_address(bind)
        self.running[address] = proc
        status = _wait_answering(proc, address, key, log, shown)
        if "--engine" in argv:
            assert status["engine"] == argv[argv.index("--engine") + 1], status

    def ensure(self, address: str) -> None:
        """A client example needs a server at ``address``: the block's own, else `talkrig serve --bind`."""
        if address not in self.running:
            self.start(["talkrig", "serve", "--bind", address], f"talkrig serve --bind {address}")

    def stop(self) -> None:
        for proc in self.running.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(30)


def _wait_answering(proc: subprocess.Popen, address: str, key: Path | None, log: Path, shown: str) -> dict:
    from motion_server.client import MotionClient
    from motion_server.protocol import ServerUnavailable

    def answers() -> dict | None:
        if proc.poll() is not None:
            pytest.fail(f"`{shown}` exited with code {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with MotionClient(address, timeout_s=1.0, retries=1, server_public_key=key) as c:
            try:
                return c.status()  # waits up to 1 s on the socket for the answer
            except ServerUnavailable:
                return None

    return wait_until(answers, COMMAND_S, f"`{shown}` to answer at {address}", interval=0)


# -- running one example ------------------------------------------------------------------------------------

def _outputs(argv: list[str]) -> list[str]:
    if argv[:2] == ["talkrig", "keygen"]:
        return [a for a in argv[2:] if not a.startswith("-")][:1]
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in OUTPUT_FLAGS]


def _inputs(argv: list[str]) -> list[str]:
    outs = {i + 1 for i, a in enumerate(argv[:-1]) if a in OUTPUT_FLAGS}
    return [a for i, a in enumerate(argv[2:], start=2) if i not in outs and not a.startswith("-")]


def _files(ws: Path) -> set[Path]:
    return {p for p in ws.rglob("*") if p.is_file()}


def _check_outputs(ws: Path, argv: list[str], before: set[Path], shown: str) -> None:
    named = _outputs(argv)
    for out in named:
        if "{stem}" in out:
            assert list(ws.glob(out.replace("{stem}", "*"))), f"`{shown}` wrote nothing matching {out}"
        elif out.endswith("/"):
            assert (ws / out).is_dir() and any((ws / out).iterdir()), f"`{shown}` wrote nothing into {out}"
        else:
            assert (ws / out).exists(), f"`{shown}` did not write {out}"
    if not named and len(argv) > 1 and argv[1] in WRITERS:
        assert _files(ws) - before, f"`{shown}` wrote no file"


def _run(argv: list[str], ws: Path, shown: str) -> None:
    before = _files(ws)
    try:
        r = subprocess.run(_command(argv), cwd=ws, env=_env(), capture_output=True, text=True,
                           timeout=COMMAND_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{shown}` was still running after {COMMAND_S:g} s")
    assert r.returncode == 0, f"`{shown}` exited with {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    _check_outputs(ws, argv, before, shown)


def run_example(example: Example, ws: Path) -> None:
    ws.mkdir()
    shutil.copytree(REPO / "examples", ws / "examples")
    addresses = Addresses(ws)
    servers = Servers(ws, addresses)
    try:
        for shown in example.lines:
            text = addresses.rewrite(shown)
            if example.lang == "python":
                for addr in re.findall(r"(?:tcp|ipc)://[^\s'\"]+", text):
                    servers.ensure(addr)
                for name in re.findall(r"[\"']([\w./-]+\.(?:wav|flac|m4a))[\"']", text):
                    _make_input(ws, name)
                (ws / "example.py").write_text(text, encoding="utf-8")
                _run(["python", "example.py"], ws, "the README's Python example")
                continue
            for argv in _segments(text):
                argv = _scaled(argv)
                if argv[:2] == ["talkrig", "serve"]:
                    servers.start(argv, shown)
                    continue
                if argv[0] == "talkrig" and len(argv) > 2 and argv[1] == "animate" and "--ray" in argv:
                    pytest.importorskip("ray", reason="--ray needs the optional extra: pip install 'talkrig[ray]'")
                if "--server" in argv:
                    servers.ensure(argv[argv.index("--server") + 1])
                for arg in _inputs(argv):
                    _make_input(ws, arg)
                if "--ray" in argv:  # 'auto' joins any Ray cluster on this machine: not another test's
                    with machine_lock("ray", RAY_LOCK_S, "the Ray cluster another test file holds"):
                        _run(argv, ws, shown)
                    continue
                _run(argv, ws, shown)
    finally:
        servers.stop()


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_the_example_runs_and_writes_what_it_names(example: Example, tmp_path: Path) -> None:
    run_example(example, tmp_path / "ws")


@pytest.mark.parametrize("shown", inline_help_commands())
def test_an_inline_help_command_runs(shown: str, tmp_path: Path) -> None:
    _run(shlex.split(shown), tmp_path, shown)


def test_every_shown_command_is_run_or_says_why_not() -> None:
    shown = [ln.strip() for b in _readme_blocks() if b.lang in ("bash", "sh", "shell", "console")
             for ln in b.lines if ln.strip() and not ln.strip().startswith("#")]
    for line in shown:
        argv0 = _segments(line)[0][0]
        assert argv0 == "talkrig" or line.startswith(FRESH_MACHINE) or _not_run(line), (
            f"the README shows `{line}`: run it here or say in NOT_RUN why not")
    # the parsers found what they should: the README's examples and the commands' help examples
    assert any(e.lang == "python" for e in EXAMPLES) and len(EXAMPLES) > 8
    assert {e.where for e in help_examples()} >= {"talkrig animate --help", "talkrig generate --help",
                                                   "talkrig plot --help"}


# -- the two fresh-machine commands -------------------------------------------------------------------------

def _fresh_machine_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
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
