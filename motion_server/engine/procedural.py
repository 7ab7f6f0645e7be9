"""ProceduralEngine: phones (aligned to a transcript, or recognised) -> the procedural performer.

The non-neural baseline and the fallback that needs no checkpoint. Style presets are emotion presets:
``"happy"`` (intensity 2), or ``"happy:1"`` / ``"happy:3"`` for subtle / strong.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from motion_server import __version__
from motion_server.performer import EMOTIONS, INTENSITIES, EmotionPreset, emotion_preset, mix_presets, perform
from motion_server.phones import Phone
from rig_mapping import FaceMotion

from .base import CancelToken, GenerateOptions, ProgressFn, check_audio
from .styles import DEFAULT_LEVEL, split_level

log = logging.getLogger(__name__)


def preset_names() -> list[str]:
    return [e for e in EMOTIONS] + [f"{e}:{i}" for e in EMOTIONS for i in INTENSITIES]


def parse_preset(style: str | None) -> tuple[str, int]:
    """``"sad"`` -> ("sad", 2); ``"sad:3"`` -> ("sad", 3); None -> ("neutral", 2). Clear error otherwise."""
    if style is None or style == "":
        return "neutral", DEFAULT_LEVEL
    name, level = split_level(style)
    if name not in EMOTIONS or (level is not None and level not in INTENSITIES):
        raise ValueError(
            f"the procedural engine has no style {style!r}: use an emotion preset ({', '.join(EMOTIONS)}), "
            "optionally with an intensity 1-3 like 'happy:3'; reference clips need --engine diffusion"
        )
    return name, int(level or DEFAULT_LEVEL)


class ProceduralEngine:
    """Engine protocol implementation around :func:`motion_server.performer.perform`."""

    name = "procedural"
    reads_phones = True  # a transcript replaces phone recognition by forced alignment

    def __init__(self, **_: Any) -> None:
        # model= / device= are accepted and ignored so callers can build any engine the same way
        pass

    def _preset(self, options: GenerateOptions) -> EmotionPreset:
        preset = emotion_preset(*parse_preset(options.style))
        if options.style_mix is not None:
            other, t = options.style_mix
            if not 0.0 <= float(t) <= 1.0:
                raise ValueError(f"style_mix weight must be in [0, 1], got {t}")
            preset = mix_presets(preset, emotion_preset(*parse_preset(other)), float(t))
        return preset

    def phones(self, audio: np.ndarray, sr: int, transcript: str | None, cancel: CancelToken | None = None,
               progress: Callable[[float], None] | None = None) -> tuple[list[Phone], str]:
        """(phones, how they were obtained: "aligned" | "recognised" | "recognised (alignment failed)")."""
        from motion_server.align import AlignError, align_transcript, recognise_phones

        check = cancel.check if cancel is not None else None
        if transcript and transcript.strip():
            try:
                return align_transcript(audio, sr, transcript, check, progress), "aligned"
            except AlignError as exc:
                log.warning("%s; recognising phones from the audio instead", exc)
                return recognise_phones(audio, sr, check, progress), "recognised (alignment failed)"
        return recognise_phones(audio, sr, check, progress), "recognised"

    def generate(
        self,
        audio: np.ndarray,
        sr: int,
        options: GenerateOptions | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> FaceMotion:
        options = options or GenerateOptions()
        x = check_audio(audio, sr)
        options.check()  # the option table's limits, as through the protocol and the command line
        if options.style_reference is not None:
            raise ValueError("the procedural engine cannot follow a reference clip; use --engine diffusion "
                             "or a preset style (" + ", ".join(EMOTIONS) + ")")
        if options.intensity < 0 or options.head_motion < 0:
            raise ValueError("intensity and head_motion must be >= 0")
        preset = self._preset(options)  # validate before the slow part
        emotion, level = parse_preset(options.style)

        def report(f: float, stage: str) -> None:
            if progress is not None:
                progress(f, stage)

        report(0.0, "align")
        if cancel is not None:
            cancel.check()
        if options.phones is not None:  # aligned by the pipeline
            phones, source = list(options.phones), "aligned"
        else:
            phones, source = self.phones(x, sr, options.transcript, cancel, lambda f: report(0.7 * f, "align"))
        report(0.7, "perform")
        if cancel is not None:
            cancel.check()
        motion = perform(
            phones, x, sr, emotion=preset, intensity=level, rng=int(options.seed), fps=options.fps,
            blink_rate=options.blink_rate, head_motion=options.head_motion, expressiveness=options.intensity,
        )
        report(1.0, "done")
        meta = dict(motion.meta)
        meta.update({
            "model": "procedural", "version": __version__, "seed": int(options.seed), "sample_rate": int(sr),
            "style": f"{emotion}:{level}", "emotion": emotion, "phones": source,
            "n_speech_phones": sum(p.symbol != "SIL" for p in phones),
        })
        if options.style_mix is not None:
            meta["style_mix"] = [options.style_mix[0], float(options.style_mix[1])]
        return motion.replace(meta=meta)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name, "device": "cpu", "model": "procedural performer", "version": __version__,
            "styles": preset_names(),
            "options": ["style", "style_mix", "intensity", "head_motion", "blink_rate", "seed", "fps", "transcript"],
        }
