"""A word-level tokenizer built from a known vocabulary (for the embedded default task).

No tokenizer can be downloaded offline, so the embedded task ships its own: one id per word of the
generated vocabulary, BERT-style special tokens and [CLS]/[SEP] templates with segment ids, wrapped as a
`transformers` fast tokenizer so it encodes, pads, saves and reloads like any hub tokenizer.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

# Fixed ids: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, then the words in the order given.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD, UNK, CLS, SEP, MASK = SPECIAL_TOKENS


def build_word_tokenizer(words: list[str], token_types: bool = True) -> PreTrainedTokenizerFast:
    """Word-level tokenizer whose vocabulary is the special tokens followed by `words` (lower-cased).

    Each word must survive the lower-casing and whitespace/punctuation pre-tokenization as exactly one
    piece, otherwise it could never be produced by encoding text and is rejected. `token_types=False`
    leaves out segment ids (token_type_ids), for models that take none (RoBERTa, DistilBERT).
    """
    normalizer = normalizers.Lowercase()
    pre_tokenizer = pre_tokenizers.Whitespace()  # splits on spaces and isolates punctuation
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in words:
        norm = normalizer.normalize_str(word)
        pieces = [p for p, _ in pre_tokenizer.pre_tokenize_str(norm)]
        if pieces != [norm]:
            raise ValueError(f"word {word!r} is not a single token after pre-tokenization: {pieces}")
        if norm in SPECIAL_TOKENS:
            raise ValueError(f"word {word!r} collides with a special token")
        vocab.setdefault(norm, len(vocab))  # duplicates (also after lower-casing) keep their first id

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    # Segment B (and its closing [SEP]) gets token_type_id 1, as BERT expects for sentence pairs.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        cls_token=CLS,
        sep_token=SEP,
        mask_token=MASK,
        padding_side="right",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"]
        if token_types
        else ["input_ids", "attention_mask"],
    )
