import pytest

from velm_edge.runtime.tokenizer import SPECIALS, Vocab, normalize


def test_normalize_lowercases_and_strips_punctuation():
    assert normalize("A Dog's ball, two  CATS!") == ["a", "dog's", "ball", "two", "cats"]
    assert normalize("  ...  ") == []


def test_build_orders_by_frequency_and_applies_min_count_and_max_size():
    caps = ["a red circle", "a blue circle", "a red star", "zebra"]
    v = Vocab.build(caps)
    assert v.tokens[:4] == SPECIALS
    assert v.tokens[4:7] == ("a", "circle", "red")  # counts 3, 2, 2 (tie broken alphabetically)
    assert "zebra" not in Vocab.build(caps, min_count=2).tokens
    assert len(Vocab.build(caps, max_size=6)) == 6
    with pytest.raises(ValueError, match="no word occurs at least 5 times"):
        Vocab.build(caps, min_count=5)


def test_encode_decode_round_trip_with_padding_truncation_and_unknowns():
    v = Vocab.build(["a red circle", "a blue square"])
    ids = v.encode("A red circle.", max_length=8)
    assert ids[0] == v.start_id and ids[4] == v.end_id and ids[5:] == [v.pad_id] * 3
    assert v.decode(ids) == "a red circle"
    assert v.encode("a green circle")[2] == v.unk_id
    cut = v.encode("a red circle a blue square", max_length=5)
    assert len(cut) == 5 and cut[-1] == v.end_id
    assert v.decode([v.start_id, v.id("red"), 999, v.end_id, v.id("a")]) == "red <unk>"


def test_save_and_load(tmp_path):
    v = Vocab.build(["a red circle"])
    v.save(tmp_path / "vocab.txt")
    assert Vocab.load(tmp_path / "vocab.txt") == v


@pytest.mark.parametrize("text, message", [
    ("a\nb\n", "must start with"),
    ("<pad>\n<start>\n<end>\n<unk>\nx\nx\n", "duplicate tokens"),
    ("<pad>\n<start>\n<end>\n<unk>\n\nx\n", "empty line"),
])
def test_bad_vocab_files_are_refused_with_the_file_name(tmp_path, text, message):
    p = tmp_path / "vocab.txt"
    p.write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        Vocab.load(p)
    assert str(p) in str(e.value)
