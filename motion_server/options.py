"""The one table of generation options: name, type, default, range, meaning.

Every layer is built from (or tested against) this table: ``GenerateOptions`` (motion_server.engine.base),
the wire protocol's ``OPTION_TYPES`` / ``OPTION_RANGES``, the engines' range checks, the command-line
flags (``talkrig generate/animate`` and the headless Blender runner) and the Blender panel's properties.
A limit or a meaning changed here changes everywhere.

Standard library only: this module is vendored into the Blender extension next to the protocol.

``None`` as a value is never a number in disguise: it means "not chosen", and each option says what
then applies (``unset``), e.g. the checkpoint's own sampling settings or the style's own blink rate.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Product constants every layer shares (this module is the bottom of the stack and torch-free).
SAMPLE_RATE = 16000  # Hz: every engine, the recogniser and the aligner read 16 kHz mono
# what `talkrig animate`, `talkrig eval` and training read as audio (ffmpeg decodes the containers)
AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".webm",
     ".mp4", ".mkv", ".mov"}
)


@dataclass(frozen=True)
class Option:
    """One generation control.

    kind: the wire type tag ("str", "int", "num", "bool", "list"); the default None makes it nullable.
    range: inclusive hard limits (numbers only); every layer refuses values outside them.
    soft_max: where a UI slider stops by default (typing still reaches ``range``).
    unset: what applies when the value is None ("not chosen").
    ui_value: the value a UI shows once the user chooses a value for an option whose default is None.
    flag: the command-line flag, or None where the commands define their own (transcript, style_mix).
    """

    name: str
    kind: str
    default: Any
    meaning: str
    range: tuple[float, float] | None = None
    soft_max: float | None = None
    unset: str | None = None
    ui_value: Any = None
    label: str = ""
    flag: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    flag_help: str | None = None  # the CLI help where the flag inverts the option (--no-transcribe)
    choices_text: str | None = None  # how help and errors name ``choices`` too long to list
    normalize: Callable[[str], str] | None = None  # what a typed value (flag, manifest cell) means

    @property
    def wire_type(self) -> str:
        return self.kind + ("?" if self.default is None else "")

    def default_text(self) -> str:
        """How help texts and docs name the default."""
        if self.default is None:
            return self.unset or "none"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    def help(self) -> str:
        """One help text for the CLI flag, the protocol docs and the Blender tooltip."""
        parts = [self.meaning]
        if self.range is not None:
            lo, hi = self.range
            parts.append(f"range {lo:g}-{hi:g}" if hi < 1e9 else f">= {lo:g}")
        if self.choices:
            parts.append(self.choices_text or "one of " + ", ".join(self.choices))
        return f"{'; '.join(parts)} (default: {self.default_text()})"

    def check(self, value: Any) -> None:
        """ValueError naming the option and its limits when ``value`` is outside them (None passes when
        the option is nullable)."""
        if value is None:
            if self.default is not None:
                raise ValueError(f"{self.name} must be given (it has no 'unset' meaning)")
            return
        if self.range is not None:
            lo, hi = self.range
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not lo <= value <= hi:
                raise ValueError(f"{self.name} must be a number within {lo:g}..{hi:g}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"unknown {self.name} {value!r}; choose "
                             + (self.choices_text or f"one of {list(self.choices)}"))


# The diffusion engine's real limit on sampler steps (its few-step samplers gain nothing beyond it).
MAX_STEPS = 50
SAMPLER_NAMES = ("ddim", "dpm", "ancestral")
MODEL_DEFAULT = "the model's"  # the checkpoint config's "sampling" section
# the languages the recogniser (Whisper) knows, by its codes (ISO 639-1 but for jw, haw, yue)
LANGUAGE_CODES = tuple((
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr "
    "ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc "
    "pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo zh "
    "yue"
).split())


def language_code(text: str) -> str:
    """A typed language as the recogniser's code: 'EN', 'en-US' and 'en_GB' are 'en'."""
    return text.strip().lower().replace("_", "-").split("-")[0]


OPTIONS: tuple[Option, ...] = (
    Option("style", "str", None, "style preset (e.g. neutral, happy, sad:3), 'predicted', or a reference clip "
           "(.csv Live Link Face / .npz)", unset="the engine's default style", flag="--style", label="Preset"),
    Option("style_mix", "list", None, "a second style and t in 0..1: (1-t)*style + t*second",
           unset="no mix"),
    Option("guidance", "num", None, "style guidance scale: 0 = the neutral style, 1 = the chosen style, above 1 "
           "exaggerates it", range=(0.0, 100.0), soft_max=5.0, unset=MODEL_DEFAULT, ui_value=1.0,
           label="Style strength", flag="--guidance"),
    Option("intensity", "num", 1.0, "expression intensity", range=(0.0, 10.0), soft_max=2.0,
           label="Intensity", flag="--intensity"),
    Option("head_motion", "num", 1.0, "head motion amount (0 = still head)", range=(0.0, 10.0), soft_max=2.0,
           label="Head motion", flag="--head-motion"),
    Option("blink_rate", "num", None, "blinks per minute; 0 = no blinks", range=(0.0, 120.0), soft_max=60.0,
           unset="the style's own rate", ui_value=17.0, label="Blinks / min", flag="--blink-rate",
           metavar="PER_MIN"),
    Option("seed", "int", 0, "random seed; same seed + same input = same result", range=(0, 2**63 - 1),
           label="Seed", flag="--seed"),
    Option("steps", "int", None, "diffusion sampling steps", range=(1, MAX_STEPS), unset=MODEL_DEFAULT, ui_value=8,
           label="Steps", flag="--steps"),
    Option("sampler", "str", None, "diffusion sampler", unset=MODEL_DEFAULT, choices=SAMPLER_NAMES,
           flag="--sampler", metavar="NAME"),
    Option("fps", "num", 30.0, "motion frame rate", range=(1.0, 240.0), flag="--fps"),
    Option("transcript", "str", None, "what is said; aligned to the audio for exact lip closures",
           unset="recognised from the audio when transcribe is on"),
    Option("transcribe", "bool", True, "without a transcript, recognise one (Whisper) and, for English, align "
           "it to phones; off: the audio alone drives the lips", flag="--no-transcribe", label="Auto-transcribe",
           flag_help="without a transcript, do not recognise one: the audio alone drives the lips (by default "
                     "speech is recognised with Whisper and, for English, aligned to phones)"),
    Option("language", "str", None, "the language spoken: no language check before recognising; in a language "
           "without a phone aligner (all but English) nothing is recognised or aligned, a transcript included, "
           "and the audio alone drives the lips", unset="checked by Whisper on each take", flag="--language",
           metavar="CODE", choices=LANGUAGE_CODES, choices_text="a language code Whisper knows (en, de, fr, es, "
           "ja, zh, ...)", label="Language", normalize=language_code),
)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
# What the checkpoint decides when the user does not (the diffusion engine reads config.json "sampling").
MODEL_DEFAULTS = ("steps", "sampler", "guidance")


def option(name: str) -> Option:
    return BY_NAME[name]


def check_options(values: dict[str, Any]) -> None:
    """Range/choice check of the given options (ValueError on the first bad one)."""
    for name, value in values.items():
        if name in BY_NAME:
            BY_NAME[name].check(value)


def arg_type(opt: Option) -> Any:
    """An argparse ``type=`` that parses and applies the option's own limits."""
    def parse(text: str) -> Any:
        try:
            if opt.kind == "str":
                v = opt.normalize(text) if opt.normalize else text
            else:
                v = int(text) if opt.kind == "int" else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if opt.kind == 'int' else 'a number'}, "
                                             f"got {text!r}") from None
        try:
            opt.check(v)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return v

    parse.__name__ = opt.kind  # argparse names the type in its error messages
    return parse


def add_arguments(parser: Any, exclude: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> None:
    """Add a flag for every option that has one (less ``exclude``, or just ``only``) to a parser or
    argument group. Each flag's default is the table's: None where the model or style decides."""
    for opt in OPTIONS:
        if opt.flag is None or opt.name in exclude or (only is not None and opt.name not in only):
            continue
        if opt.kind == "bool":  # only transcribe: on by default, the flag switches it off
            parser.add_argument(opt.flag, dest=opt.name, action="store_false",
                                help=opt.flag_help or opt.meaning)
            continue
        kw: dict[str, Any] = {"dest": opt.name, "default": opt.default, "help": opt.help()}
        if opt.kind in ("int", "num") or opt.choices_text:
            kw["type"] = arg_type(opt)  # checked by the table (a long choice list is named, not printed)
        elif opt.choices:
            kw["choices"] = opt.choices
        if opt.metavar:
            kw["metavar"] = opt.metavar
        parser.add_argument(opt.flag, **kw)


def from_arguments(args: argparse.Namespace, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The options parsed by :func:`add_arguments`, by name (None where the user chose nothing)."""
    return {o.name: getattr(args, o.name) for o in OPTIONS
            if o.flag is not None and o.name not in exclude and hasattr(args, o.name)}
