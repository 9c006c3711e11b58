from collections import Counter

import pytest
from pydantic import ValidationError

from runners.data.examples import TaskData
from runners.data.synthetic_nli import (
    LABEL_NAMES,
    SUBCASES,
    SyntheticNLIParams,
    generate,
    overlap_heuristic,
    vocabulary,
)

SMALL = SyntheticNLIParams(n_train=600, n_id_eval=301, n_ood_per_subcase=40)


@pytest.fixture(scope="module")
def small() -> TaskData:
    return generate(SMALL, seed=7)


@pytest.fixture(scope="module")
def default() -> TaskData:
    return generate(SyntheticNLIParams(), seed=0)


def _pairs(examples):
    return [(e.text_a, e.text_b, e.label, e.subcase) for e in examples]


def _contiguous(premise: str, hypothesis: str) -> bool:
    p, h = premise.split(), hypothesis.split()
    return any(p[i : i + len(h)] == h for i in range(len(p) - len(h) + 1))


def test_params_are_strict_bounded_and_frozen():
    with pytest.raises(ValidationError):
        SyntheticNLIParams(n_train="100")  # strict: no coercion from str
    with pytest.raises(ValidationError):
        SyntheticNLIParams(n_trian=100)  # extra fields forbidden
    with pytest.raises(ValidationError):
        SyntheticNLIParams(id_hard_fraction=0.6)  # above 0.5 the heuristic would be wrong on most ID data
    with pytest.raises(ValidationError):
        SyntheticNLIParams(n_nouns=1000)
    with pytest.raises(ValidationError):
        SMALL.n_train = 5
    assert all(f.description for f in SyntheticNLIParams.model_fields.values())


def test_deterministic_per_seed(small):
    again = generate(SMALL, seed=7)
    for a, b in zip(
        [small.train, small.id_eval.examples, small.ood[0].examples],
        [again.train, again.id_eval.examples, again.ood[0].examples],
    ):
        assert _pairs(a) == _pairs(b)
    other = generate(SMALL, seed=8)
    assert _pairs(other.train) != _pairs(small.train)
    assert _pairs(other.ood[0].examples) != _pairs(small.ood[0].examples)
    # each split has its own RNG stream: resizing the OOD set leaves the ID splits untouched
    fewer_ood = generate(SMALL.model_copy(update={"n_ood_per_subcase": 5}), seed=7)
    assert _pairs(fewer_ood.train) == _pairs(small.train)
    assert _pairs(fewer_ood.id_eval.examples) == _pairs(small.id_eval.examples)


def test_sizes_labels_and_balance(small):
    assert small.label_names == LABEL_NAMES == ["entailment", "non_entailment"]
    assert small.num_labels == 2
    assert len(small.train) == 600 and len(small.id_eval.examples) == 301
    assert (small.id_eval.name, small.id_eval.kind) == ("id", "id")
    for exs in (small.train, small.id_eval.examples):
        n = len(exs)
        labels = Counter(e.label for e in exs)
        assert labels[0] == n // 2 and labels[1] == n - n // 2
        kinds = Counter(e.subcase for e in exs)
        assert kinds["role_swap"] == round(0.1 * n)
        assert kinds["reduction"] == labels[0]
    (ood,) = small.ood
    assert (ood.name, ood.kind) == ("hans_like", "ood")
    assert Counter(e.subcase for e in ood.examples) == {s: 40 for s in SUBCASES}
    assert set(SUBCASES) == {f"{h}/{l}" for h in ("lexical_overlap", "subsequence", "constituent") for l in LABEL_NAMES}
    for e in ood.examples:
        assert e.label == LABEL_NAMES.index(e.subcase.split("/")[1])


def test_no_duplicate_pairs_anywhere(default):
    keys = [(e.text_a, e.text_b) for s in (default.train, *[x.examples for x in default.eval_sets]) for e in s]
    assert len(keys) == len(set(keys)) == 16000 + 1000 + 6 * 200


def test_text_is_lowercase_words_from_the_vocabulary(default):
    vocab = vocabulary(SyntheticNLIParams())
    assert vocab == sorted(set(vocab)) and vocab == vocabulary(SyntheticNLIParams())
    used = {w for s in default.eval_sets for e in s.examples for w in f"{e.text_a} {e.text_b}".split()}
    used |= {w for e in default.train for w in f"{e.text_a} {e.text_b}".split()}
    assert used == set(vocab)  # nothing outside the vocabulary, and no dead vocabulary at default sizes
    assert all(w.isalpha() and w.islower() for w in vocab)
    smaller = vocabulary(SyntheticNLIParams(n_nouns=10))
    assert set(smaller) < set(vocab) and "doctor" in smaller


def test_ood_hypotheses_use_only_premise_words(small):
    for e in small.ood[0].examples:
        assert set(e.text_b.split()) <= set(e.text_a.split()), e


def test_ood_heuristics_have_their_hans_structure(small):
    # subsequence and constituent hypotheses are contiguous spans of the premise; lexical_overlap ones never are
    for e in small.ood[0].examples:
        assert _contiguous(e.text_a, e.text_b) == (not e.subcase.startswith("lexical_overlap")), e
        assert e.text_a != e.text_b


def _heuristic_accuracy(examples):
    return sum(overlap_heuristic(e.text_a, e.text_b) == e.label for e in examples) / len(examples)


@pytest.mark.parametrize("hard", [0.0, 0.1, 0.25, 0.5])
def test_overlap_heuristic_is_right_in_domain_except_on_hard_examples(hard):
    params = SMALL.model_copy(update={"id_hard_fraction": hard})
    data = generate(params, seed=1)
    for exs in (data.train, data.id_eval.examples):
        # Counts are exact (not sampled), so the only slack is rounding hard * n to an integer: 0.5 / n.
        assert abs(_heuristic_accuracy(exs) - (1 - hard)) <= 0.5 / len(exs) + 1e-12
        # and it is wrong exactly on the full-overlap non-entailments
        wrong = {e.subcase for e in exs if overlap_heuristic(e.text_a, e.text_b) != e.label}
        assert wrong <= {"role_swap"}


def test_overlap_heuristic_is_at_chance_on_every_ood_heuristic(default):
    (ood,) = default.ood
    for heuristic in ("lexical_overlap", "subsequence", "constituent"):
        exs = [e for e in ood.examples if e.subcase.startswith(heuristic + "/")]
        assert len(exs) == 400
        assert _heuristic_accuracy(exs) == 0.5  # it says "entailment" everywhere: overlap is full


def test_known_examples_read_correctly(default):
    (ood,) = default.ood
    by_case = {s: [e for e in ood.examples if e.subcase == s] for s in SUBCASES}
    # constituent/entailment hypotheses follow "and", "because", a certain adverb or a factive verb
    for e in by_case["constituent/entailment"]:
        assert {
            "and",
            "because",
            "certainly",
            "clearly",
            "definitely",
            "obviously",
            "realized",
            "noticed",
            "learned",
            "remembered",
        } & set(e.text_a.split())
    for e in by_case["constituent/non_entailment"]:
        assert {
            "if",
            "unless",
            "or",
            "probably",
            "maybe",
            "perhaps",
            "supposedly",
            "believed",
            "thought",
            "hoped",
            "claimed",
        } & set(e.text_a.split())
    # in-domain new-word negatives really contain a word the premise lacks
    for e in default.id_eval.examples:
        if e.subcase == "new_words":
            assert set(e.text_b.split()) - set(e.text_a.split())


def test_tiny_vocabulary_still_generates():
    params = SyntheticNLIParams(
        n_train=200, n_id_eval=50, n_ood_per_subcase=10, n_nouns=8, n_transitive=4, n_intransitive=3, n_adjectives=2
    )
    data = generate(params, seed=0)
    assert len(data.train) == 200 and len(data.ood[0].examples) == 60
