import pytest
from transformers import AutoTokenizer

from runners.data.examples import Example, batches, encode
from runners.data.synthetic_nli import SyntheticNLIParams, vocabulary
from runners.data.tokenizer import build_word_tokenizer

WORDS = ["the", "doctor", "saw", "lawyer", "danced"]


@pytest.fixture(scope="module")
def tok():
    return build_word_tokenizer(WORDS)


def test_special_and_word_ids(tok):
    specials = [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id]
    assert specials == [0, 1, 2, 3, 4]
    assert len(tok) == 5 + len(WORDS)
    assert tok.convert_tokens_to_ids(["the", "doctor", "danced"]) == [5, 6, 9]
    # lower-casing normaliser, unknown words map to [UNK]
    assert tok("The DOCTOR zebra")["input_ids"] == [2, 5, 6, 1, 3]


def test_pair_layout_and_segment_ids(tok):
    enc = tok("the doctor saw the lawyer", "the lawyer danced")
    assert enc["input_ids"] == [2, 5, 6, 7, 5, 8, 3, 5, 8, 9, 3]
    assert enc["token_type_ids"] == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert enc["attention_mask"] == [1] * 11


def test_batch_pairs_with_truncation(tok):
    enc = tok(
        ["the doctor saw the lawyer", "the doctor"],
        ["the lawyer danced", "danced"],
        truncation=True,
        max_length=8,
        padding=False,
    )
    assert enc["input_ids"] == [[2, 5, 6, 7, 3, 5, 8, 3], [2, 5, 6, 3, 9, 3]]
    assert enc["token_type_ids"] == [[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1]]


def test_save_load_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    a, b = ["The doctor saw the lawyer", "a zebra"], ["the lawyer danced", "the doctor"]
    for kw in ({}, {"truncation": True, "max_length": 6}):
        assert again(a, b, **kw)["input_ids"] == tok(a, b, **kw)["input_ids"]
        assert again(a, b, **kw)["token_type_ids"] == tok(a, b, **kw)["token_type_ids"]
    assert again.get_vocab() == tok.get_vocab()
    assert (again.pad_token_id, again.unk_token_id, again.cls_token_id, again.sep_token_id) == (0, 1, 2, 3)


def test_every_task_word_is_known():
    words = vocabulary(SyntheticNLIParams())
    tok = build_word_tokenizer(words)
    ids = tok.convert_tokens_to_ids(words)
    assert ids == list(range(5, 5 + len(words)))
    assert tok(" ".join(words), add_special_tokens=False)["input_ids"] == ids
    assert tok.unk_token_id not in ids


def test_duplicates_and_bad_words():
    tok = build_word_tokenizer(["the", "The", "doctor"])
    assert len(tok) == 7 and tok.convert_tokens_to_ids("doctor") == 6
    for bad in (["two words"], ["don't"], ["[SEP]"]):
        with pytest.raises(ValueError):
            build_word_tokenizer(bad)


def test_works_with_dynamic_padding(tok):
    exs = [Example("the doctor danced", "the doctor", 0), Example("the lawyer saw the doctor", "the lawyer", 1)]
    enc = encode(tok, exs, max_length=32)
    (batch,) = batches(enc, batch_size=2, pad_id=tok.pad_token_id)
    assert batch.input_ids.tolist() == [[2, 5, 6, 9, 3, 5, 6, 3, 0, 0], [2, 5, 8, 7, 5, 6, 3, 5, 8, 3]]
    assert batch.token_type_ids.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]]
    assert batch.attention_mask.tolist()[0] == [1] * 8 + [0, 0]


def test_batches_under_a_token_budget_keep_every_row_once_and_their_order():
    """max_tokens (the CPU's forward budget) ends a batch before rows x its longest row would pass the budget; every
    row comes once, in order, and a row longer than the budget makes a batch of its own."""
    from runners.data.examples import batch_count

    lengths = [2, 3, 3, 4, 6, 6, 9, 12]
    enc = [{"input_ids": [7] * n, "token_type_ids": [0] * n, "label": 0, "subcase": None} for n in lengths]
    out = list(batches(enc, batch_size=4, pad_id=0, max_tokens=12))
    assert [b.indices.tolist() for b in out] == [[0, 1, 2], [3, 4], [5], [6], [7]]
    assert all(b.input_ids.numel() <= 12 for b in out)
    assert [b.input_ids.shape for b in out][0] == (3, 3)
    assert batch_count(enc, 4, max_tokens=12) == 5
    assert [b.indices.tolist() for b in batches(enc, batch_size=4, pad_id=0)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert batch_count(enc, 4) == 2
    assert [b.indices.tolist() for b in batches(enc, 8, 0, max_tokens=95)] == [[0, 1, 2, 3, 4, 5, 6], [7]]
