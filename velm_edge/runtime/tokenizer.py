"""Word-level caption tokenizer shared by the converter (encode) and the device (decode).

``vocab.txt`` holds one token per line; the line number is the token id.  The four special
tokens always come first, in this order: ``<pad> <start> <end> <unk>``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from velm_edge.errors import OptionError

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def normalize(text: str) -> list[str]:
    """Lower-case, drop punctuation, split into words ("A dog's ball!" -> [a, dog's, ball])."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


@dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.tokens[:4]) != SPECIALS:
            raise OptionError(f"a vocabulary must start with {SPECIALS}, got {tuple(self.tokens[:4])}")
        if len(set(self.tokens)) != len(self.tokens):
            dup = [t for t, n in Counter(self.tokens).items() if n > 1]
            raise OptionError(f"duplicate tokens in vocabulary: {dup[:5]}")
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.tokens)})

    pad_id = 0
    start_id = 1
    end_id = 2
    unk_id = 3

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1, max_size: int | None = None) -> Vocab:
        """Vocabulary of the words seen at least ``min_count`` times, most frequent first.

        ``max_size`` caps the total size including the four special tokens; ties in frequency are
        broken alphabetically so the same captions always give the same ids.
        """
        if min_count < 1:
            raise OptionError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < len(SPECIALS) + 1:
            raise OptionError(f"max_size must be at least {len(SPECIALS) + 1}, got {max_size}")
        counts = Counter(w for c in captions for w in normalize(c))
        words = sorted((w for w, n in counts.items() if n >= min_count and w not in SPECIALS),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max_size - len(SPECIALS)]
        if not words:
            raise OptionError(f"no word occurs at least {min_count} times: cannot build a vocabulary")
        return cls(SPECIALS + tuple(words))

    def id(self, token: str) -> int:
        return self._ids.get(token, self.unk_id)  # type: ignore[attr-defined]

    def encode(self, caption: str, max_length: int | None = None) -> list[int]:
        """[<start>, words..., <end>], padded with <pad> (or cut, keeping <end>) to max_length."""
        ids = [self.start_id] + [self.id(w) for w in normalize(caption)] + [self.end_id]
        if max_length is not None:
            if max_length < 2:
                raise OptionError(f"max_length must be >= 2, got {max_length}")
            if len(ids) > max_length:
                ids = ids[: max_length - 1] + [self.end_id]
            ids += [self.pad_id] * (max_length - len(ids))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Words up to the first <end>; <start> and <pad> are skipped."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i in (self.pad_id, self.start_id):
                continue
            words.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return " ".join(words)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_text(), encoding="utf-8")

    def to_text(self) -> str:
        return "\n".join(self.tokens) + "\n"

    @classmethod
    def from_text(cls, text: str, source: str = "vocab.txt") -> Vocab:
        tokens = tuple(text.splitlines())
        if any(not t.strip() or t != t.strip() for t in tokens):
            raise OptionError(f"{source}: empty line or surrounding spaces in the vocabulary")
        try:
            return cls(tokens)
        except ValueError as e:
            raise OptionError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        return cls.from_text(Path(path).read_text(encoding="utf-8"), source=str(path))
