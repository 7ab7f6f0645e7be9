"""How much of the performer's emotion can be heard in a synthetic corpus's audio?

A ceiling check for the style predictor (which must guess the emotion from audio alone): fit plain
classifiers on clip-level audio features (log-mel statistics, and explicit prosody: pitch level/range,
voicing, loudness range, onset rate, length) of the train split, and score them on the test split's
held-out voices. If these reach little above chance, no audio-only style prior can do much better on
that corpus; the fix is in the data (stronger or real emotional speech), not the model.

    python scripts/probe_corpus_emotion.py CORPUS [--train 700] [--test 150]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np


def prosody(audio: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    f0, voiced, _ = librosa.pyin(audio, fmin=60, fmax=500, sr=sr, frame_length=1024)
    f0 = f0[np.isfinite(f0)]
    lf = np.log(f0) if len(f0) else np.zeros(1)
    lr = np.log(librosa.feature.rms(y=audio)[0] + 1e-5)
    onset = librosa.onset.onset_strength(y=audio, sr=sr)
    return np.array([lf.mean(), lf.std(), np.percentile(lf, 90) - np.percentile(lf, 10), voiced.mean(),
                     lr.std(), np.percentile(lr, 90) - np.percentile(lr, 10), onset.mean(), len(audio) / sr])


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from tqdm import tqdm

    from motion_server.model.config import load_config
    from motion_server.model.features import make_features
    from motion_server.synth.corpus import CorpusReader

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--train", type=int, default=700, help="train-split clips to fit on")
    ap.add_argument("--test", type=int, default=150, help="held-out-voice test clips to score")
    args = ap.parse_args()
    fe = make_features(load_config("default")["features"], 30.0)
    test = CorpusReader(args.corpus, "test")
    held = set(test.manifest["splits"]["test_voices"] or [])

    def collect(reader: CorpusReader, n: int, voices: set[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        stats, pros, labels = [], [], []
        bar = tqdm(total=n, desc=f"{reader.split} features", unit="clip")
        for u in reader:
            if voices and u.voice not in voices:
                continue
            stats.append(fe.clip_stats(u.audio))
            pros.append(prosody(np.asarray(u.audio, np.float32), int(u.sr)))
            labels.append(u.emotion)
            bar.update()
            if len(labels) >= n:
                break
        bar.close()
        return np.array(stats), np.array(pros), labels

    s_tr, p_tr, y_tr = collect(CorpusReader(args.corpus, "train"), args.train, None)
    s_te, p_te, y_te = collect(test, args.test, held)
    majority = Counter(y_tr).most_common(1)[0][0]
    out = {"corpus": str(args.corpus), "train_clips": len(y_tr), "test_clips": len(y_te),
           "held_out_voices": sorted(held), "classes": len(set(y_tr)),
           "majority_class": majority, "majority_accuracy": round(float(np.mean([y == majority for y in y_te])), 3)}
    for name, a, b in (("logmel_stats", s_tr, s_te), ("prosody", p_tr, p_te),
                       ("both", np.hstack([s_tr, p_tr]), np.hstack([s_te, p_te]))):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5)).fit(a, y_tr)
        out[f"accuracy_{name}"] = round(float(np.mean(clf.predict(b) == np.array(y_te))), 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
