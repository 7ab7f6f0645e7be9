"""How well the recogniser's word probability separates wrong words from right ones, on the shared
English clips with transcripts: the measurement behind ``UNSURE_WORD_PROBABILITY``.

    python scripts/measure_asr_gate.py [--shared ../shared] [--json out.json]

Each recognised word is matched to the reference transcript by a word-level edit-distance alignment
(the aligner's word form: lower case, numbers spelled out); a word is "wrong" when it was substituted or
inserted. For each threshold: the share of wrong words it marks unsure (so they force no closure), the
share of right words it gives up, and the same for the words holding /p b m/ (what a wrong word costs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BILABIAL_LETTERS = ("p", "b", "m")


def _label(ref: list[str], hyp: list[str]) -> list[bool]:
    """For each hypothesis word: True when the alignment matches it to the same reference word."""
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    ok = [False] * m
    i, j = n, m
    while i > 0 and j > 0:
        if d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            ok[j - 1] = ref[i - 1] == hyp[j - 1]
            i, j = i - 1, j - 1
        elif d[i][j] == d[i][j - 1] + 1:
            j -= 1
        else:
            i -= 1
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from motion_server.audio.io import load_audio
    from motion_server.evaluation.wer import words as norm
    from motion_server.transcribe import Recogniser

    manifest = json.loads((args.shared / "data" / "speech" / "MANIFEST.json").read_text())
    clips = [c for c in manifest["clips"] if c.get("language") == "en" and c.get("transcript")]
    rec = Recogniser()
    scored: list[tuple[float, bool, bool]] = []  # (probability, right, holds a bilabial)
    for c in clips:
        audio = load_audio(args.shared / "data" / "speech" / c["file"], sr=16000)
        tr = rec.transcribe(audio, 16000)
        # one entry per normalised token, carrying its recognised word's probability
        toks = [(t, w.probability) for w in tr.words for t in norm(w.text)]
        ok = _label(norm(c["transcript"]), [t for t, _ in toks])
        scored += [(p, r, any(ch in t for ch in BILABIAL_LETTERS)) for (t, p), r in zip(toks, ok, strict=True)]
    rows = []
    for th in (0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6):
        def share(sel, want_right, bil_only=False):
            pool = [s for s in scored if s[1] == want_right and (s[2] or not bil_only)]
            return (sum(1 for s in pool if sel(s)) / len(pool)) if pool else None
        unsure = lambda s, th=th: s[0] < th  # noqa: E731
        rows.append({"threshold": th, "wrong_marked": share(unsure, False), "right_lost": share(unsure, True),
                     "wrong_bilabial_words_marked": share(unsure, False, True),
                     "right_bilabial_words_lost": share(unsure, True, True)})
    n_wrong = sum(1 for s in scored if not s[1])
    print(f"{len(clips)} clips, {len(scored)} recognised words, {n_wrong} wrong")
    print("threshold  wrong marked  right lost  wrong /p b m/ words marked  right /p b m/ words lost")
    for r in rows:
        f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"{r['threshold']:9.2f}  {f(r['wrong_marked']):>12}  {f(r['right_lost']):>10}  "
              f"{f(r['wrong_bilabial_words_marked']):>26}  {f(r['right_bilabial_words_lost']):>24}")
    if args.json:
        args.json.write_text(json.dumps({"clips": len(clips), "words": len(scored), "wrong": n_wrong, "rows": rows},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
