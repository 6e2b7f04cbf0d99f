"""Calibration data for int8 conversion, recorded while the float model really captions images.

The vision graph is calibrated on dataset images.  The language graph is calibrated on the inputs it
sees while decoding: (embedding, feature, state) at every step of every calibration image, both
teacher-forced along the reference caption and free-running along the model's own greedy caption.
Random states give wrong ranges (PITFALLS.md).  Each vocabulary row is also fed once, so the
embedding input's range covers every token the device can look up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from velm_convert.model import Velm


@dataclass
class Trajectories:
    embedding: np.ndarray  # (N, E) float32
    feature: np.ndarray  # (N, F)
    state: np.ndarray  # (N, S)
    teacher_forced: int  # samples from teacher-forced steps
    free_running: int  # samples from greedy decoding
    vocab_rows: int  # samples that feed one embedding row each

    def __len__(self) -> int:
        return len(self.embedding)

    def summary(self) -> dict:
        return {"samples": len(self), "teacher_forced": self.teacher_forced, "free_running": self.free_running,
                "vocab_rows": self.vocab_rows}


def record(velm: Velm, images, captions: list[list[str]], progress=None) -> Trajectories:
    """Run the float decoder over float images (N,H,W,3) in [0,1] (or {"image", "detected"} for a decoder trained
    on detections) and record every step's inputs."""
    table = velm.embedding_table
    vocab, steps = velm.vocab, velm.config.steps
    feats, states0 = velm.encode_images(images)
    rows: dict[str, list[np.ndarray]] = {"embedding": [], "feature": [], "state": []}

    def keep(tokens: np.ndarray, state: np.ndarray, active: np.ndarray) -> int:
        rows["embedding"].append(table[tokens[active]])
        rows["feature"].append(feats[active])
        rows["state"].append(state[active])
        return int(active.sum())

    def advance(tokens: np.ndarray, state: np.ndarray):
        out = velm.step({"embedding": table[tokens], "feature": feats, "state": state}, training=False)
        return np.asarray(out["logits"]), np.asarray(out["state"])

    # teacher forcing along the first reference caption: inputs <start> w1 ... wn
    seqs = np.array([vocab.encode(caps[0], velm.config.max_length) for caps in captions], np.int64)
    state, teacher = states0, 0
    for t in range(steps):
        tokens = seqs[:, t]
        active = (tokens != vocab.pad_id) & (tokens != vocab.end_id)  # <end> is never fed back
        if not active.any():
            break
        teacher += keep(tokens, state, active)
        _, state = advance(tokens, state)
        if progress:
            progress.update(1)
    # free running: the model's own greedy caption, up to and including the step that emits <end>
    tokens, state, done, free = np.full(len(captions), vocab.start_id), states0, np.zeros(len(captions), bool), 0
    for _ in range(steps):
        free += keep(tokens, state, ~done)
        logits, state = advance(tokens, state)
        tokens = logits.argmax(-1)
        done |= tokens == vocab.end_id
        if done.all():
            break
        if progress:
            progress.update(1)
    # every vocabulary row once, beside recorded features and states
    pick = np.random.default_rng(0).integers(0, sum(len(r) for r in rows["feature"]), len(table))
    feature_all, state_all = np.concatenate(rows["feature"]), np.concatenate(rows["state"])
    rows["embedding"].append(table)
    rows["feature"].append(feature_all[pick])
    rows["state"].append(state_all[pick])
    return Trajectories(*(np.concatenate(rows[k]).astype(np.float32) for k in ("embedding", "feature", "state")),
                        teacher_forced=teacher, free_running=free, vocab_rows=len(table))


def language_samples(traj: Trajectories, max_samples: int, seed: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Representative dataset for the language graph: batch-1 dicts keyed by input name.
    The vocabulary rows (at the end) are always kept; the trajectory steps are subsampled."""
    n_steps = len(traj) - traj.vocab_rows
    budget = max(0, max_samples - traj.vocab_rows)
    steps = np.sort(np.random.default_rng(seed).permutation(n_steps)[:budget])
    for i in np.concatenate([steps, np.arange(n_steps, len(traj))]):
        yield {"embedding": traj.embedding[i:i + 1], "feature": traj.feature[i:i + 1], "state": traj.state[i:i + 1]}


def vision_samples(images) -> Iterator[dict[str, np.ndarray]]:
    """Representative dataset for the vision graph: float images (N,H,W,3) in [0,1] (or {"image", "detected"}),
    one at a time."""
    inputs = images if isinstance(images, dict) else {"image": images}
    for i in range(len(inputs["image"])):
        yield {k: v[i:i + 1] for k, v in inputs.items()}
