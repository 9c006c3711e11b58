"""Embedded default task: a generated NLI-like sentence-pair task with a HANS-like OOD set.

In-domain (ID) pairs reward the lexical-overlap heuristic ("a premise entails every hypothesis built from
its own words"): entailed hypotheses are reductions of the premise (all words present), non-entailed ones
swap in content words the premise lacks, and only `id_hard_fraction` of the examples are full-overlap
non-entailments (role swaps). The heuristic is therefore right on exactly 1 - id_hard_fraction of ID.
The OOD set "hans_like" follows HANS (McCoy et al. 2019): every hypothesis uses only premise words, half
entailed and half not, for each of the heuristics lexical_overlap, subsequence and constituent, so the
heuristic scores 50% on each. OOD subcases are "<heuristic>/<label name>"; ID subcases are "reduction",
"role_swap" and "new_words".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from registry.tasks import SYNTHETIC_NLI_LABELS as LABEL_NAMES
from registry.tasks import SYNTHETIC_NLI_OOD as OOD_NAME
from registry.tasks import SyntheticNLIParams
from runners.data.examples import EvalSet, Example, TaskData

ENT, NON = 0, 1
HEURISTICS = ("lexical_overlap", "subsequence", "constituent")
SUBCASES = tuple(f"{h}/{name}" for h in HEURISTICS for name in LABEL_NAMES)

NOUNS = (
    "doctor lawyer artist actor judge student teacher banker senator manager author athlete scientist secretary "
    "president professor tourist farmer dancer singer pilot nurse chef baker writer painter poet soldier sailor "
    "officer engineer architect journalist editor musician clerk guard driver merchant priest"
).split()
TRANSITIVE = tuple(
    tuple(p.split("/"))
    for p in (  # (past, past participle)
        "saw/seen knew/known chose/chosen forgot/forgotten met/met heard/heard found/found paid/paid helped/helped "
        "called/called thanked/thanked admired/admired recommended/recommended contacted/contacted avoided/avoided "
        "supported/supported mentioned/mentioned encouraged/encouraged visited/visited introduced/introduced"
    ).split()
)
INTRANSITIVE = "danced slept laughed arrived left waited smiled shouted ran swam cried resigned".split()
ADJECTIVES = "tall happy old young famous quiet clever angry brave tired rich polite".split()
PREPOSITIONS = ("near", "behind", "beside")
CERTAIN_ADVERBS = ("certainly", "clearly", "definitely", "obviously")  # "ADV S" entails S
HEDGE_ADVERBS = ("probably", "maybe", "perhaps", "supposedly")  # "ADV S" does not entail S
FACTIVE = ("realized", "noticed", "learned", "remembered")  # "X V that S" entails S
NONFACTIVE = ("believed", "thought", "hoped", "claimed")  # "X V that S" does not
ENTAILING_CONJ = ("and", "because")  # "S1 CONJ S2" entails S1 and S2
NONENTAILING_CONJ = ("if", "unless", "or")  # entails neither
FUNCTION_WORDS = ("the", "who", "was", "by", "that")


@dataclass(frozen=True)
class NP:
    noun: str
    adj: str | None = None
    mod: tuple | None = None  # ("pp", prep, noun) | ("rc", (past, participle), noun) | ("and", None, noun)

    def words(self) -> list[str]:
        out = ["the", self.noun] if self.adj is None else ["the", self.adj, self.noun]
        if self.mod is None:
            return out
        kind, x, noun = self.mod
        return out + {"pp": [x], "rc": ["who", x and x[0]], "and": ["and"]}[kind] + ["the", noun]


@dataclass(frozen=True)
class Clause:
    subj: NP
    verb: tuple | str  # (past, participle) when transitive, a past form when intransitive
    obj: NP | None = None
    passive: bool = False

    def words(self) -> list[str]:
        if self.obj is None:
            return self.subj.words() + [self.verb]
        if self.passive:
            return self.obj.words() + ["was", self.verb[1], "by"] + self.subj.words()
        return self.subj.words() + [self.verb[0]] + self.obj.words()


def _lexicon(p: SyntheticNLIParams) -> tuple[list, list, list, list]:
    return (
        NOUNS[: p.n_nouns],
        list(TRANSITIVE[: p.n_transitive]),
        INTRANSITIVE[: p.n_intransitive],
        ADJECTIVES[: p.n_adjectives],
    )


def vocabulary(params: SyntheticNLIParams) -> list[str]:
    """Every word `generate` can emit with these params, sorted."""
    nouns, verbs, vi, adjs = _lexicon(params)
    words = {*nouns, *vi, *adjs, *(form for v in verbs for form in v)}
    for group in (
        PREPOSITIONS,
        CERTAIN_ADVERBS,
        HEDGE_ADVERBS,
        FACTIVE,
        NONFACTIVE,
        ENTAILING_CONJ,
        NONENTAILING_CONJ,
        FUNCTION_WORDS,
    ):
        words.update(group)
    return sorted(words)


def overlap_heuristic(premise: str, hypothesis: str) -> int:
    """The shallow heuristic the task is built around: entailment iff every hypothesis word is in the premise."""
    return ENT if set(hypothesis.split()) <= set(premise.split()) else NON


class _Gen:
    """Sentence building blocks over one lexicon and one RNG stream."""

    def __init__(self, params: SyntheticNLIParams, rng: random.Random):
        self.p, self.rng = params, rng
        self.nouns, self.verbs, self.vi, self.adjs = _lexicon(params)
        self.past, self.participles = {v[0] for v in self.verbs}, {v[1] for v in self.verbs}

    def pool(self, k: int = 7) -> list[str]:
        return self.rng.sample(self.nouns, k)  # distinct nouns, so a role swap always changes the meaning

    def adj(self) -> str | None:
        return self.rng.choice(self.adjs) if self.rng.random() < self.p.adjective_prob else None

    def np(self, pool: list[str], mod_kinds: tuple = ()) -> NP:
        noun, mod = pool.pop(), None
        if mod_kinds and self.rng.random() < self.p.modifier_prob:
            kind = self.rng.choice(mod_kinds)
            mod = (kind, self.modifier_head(kind), pool.pop())
        return NP(noun, self.adj(), mod)

    def modifier_head(self, kind: str):
        return {
            "pp": lambda: self.rng.choice(PREPOSITIONS),
            "rc": lambda: self.rng.choice(self.verbs),
            "and": lambda: None,
        }[kind]()

    def clause(self, pool, subj_mods=(), obj_mods=(), transitive=0.7, passive=0.0) -> Clause:
        subj = self.np(pool, subj_mods)
        if self.rng.random() >= transitive:
            return Clause(subj, self.rng.choice(self.vi))
        return Clause(subj, self.rng.choice(self.verbs), self.np(pool, obj_mods), self.rng.random() < passive)

    # --- ID: entailment-preserving reductions, full-overlap role swaps, new-word negatives -------------
    def reduce_np(self, np: NP) -> NP:
        adj = np.adj if self.rng.random() < 0.5 else None
        if np.mod is not None and np.mod[0] == "and" and self.rng.random() < 0.5:
            return NP(np.mod[2])  # "the A and the B V ..." entails "the B V ..."
        return NP(np.noun, adj, np.mod if self.rng.random() < 0.4 else None)

    def reduce(self, c: Clause) -> Clause:
        return replace(c, subj=self.reduce_np(c.subj), obj=None if c.obj is None else self.reduce_np(c.obj))

    @staticmethod
    def facts(c: Clause) -> list[Clause]:
        """Clauses entailed by relative clauses inside `c` ("the A who saw the B ..." => "the A saw the B")."""
        nps = [c.subj] + ([c.obj] if c.obj is not None else [])
        return [Clause(NP(n.noun), n.mod[1], NP(n.mod[2])) for n in nps if n.mod is not None and n.mod[0] == "rc"]

    @staticmethod
    def swap(c: Clause) -> Clause | None:
        """Same words, subject and object exchanged: not entailed."""
        return None if c.obj is None else replace(c, subj=NP(c.obj.noun, c.obj.adj), obj=NP(c.subj.noun, c.subj.adj))

    def perturb(self, hyp: list[str], premise: list[str]) -> list[str] | None:
        """Replace content words (at least one; each with new_word_prob) by words absent from the premise."""
        present, out = set(premise), list(hyp)
        slots = [
            i
            for i, w in enumerate(out)
            if w in self.nouns or w in self.vi or w in self.adjs or w in self.past or w in self.participles
        ]
        self.rng.shuffle(slots)
        for k, i in enumerate(slots):
            if k > 0 and self.rng.random() >= self.p.new_word_prob:
                continue
            w = out[i]
            if w in self.nouns or w in self.adjs or w in self.vi:
                cands = self.nouns if w in self.nouns else self.adjs if w in self.adjs else self.vi
            else:  # a transitive verb form: a participle right after "was", a past form elsewhere
                cands = [v[1] if out[i - 1] == "was" else v[0] for v in self.verbs]
            fresh = [c for c in cands if c not in present and c not in out]
            if fresh:
                out[i] = self.rng.choice(fresh)
        fresh_adjs = [a for a in self.adjs if a not in present]
        if fresh_adjs and self.rng.random() < 0.2:  # an added adjective is new information too
            nouns = [i for i, w in enumerate(out) if w in self.nouns and out[i - 1] == "the"]
            if nouns:
                out.insert(self.rng.choice(nouns), self.rng.choice(fresh_adjs))
        return None if set(out) <= present else out  # None: no new word was possible, the caller retries

    def id_frame(self) -> tuple[list[str], list[list[str]], list[list[str]]]:
        """A premise with its entailed (reduction) hypotheses and its full-overlap non-entailed ones."""
        r, pool, rng, single = self.rng.random(), self.pool(), self.rng, self.p.single_clause_prob
        if r < single:  # one clause whose noun phrases may carry PPs, relative clauses or a conjunct
            c = self.clause(pool, ("pp", "rc", "and"), ("pp", "rc"), passive=0.25)
            facts = self.facts(c)
            ent = [self.reduce(c).words(), self.reduce(c).words()] + [self.reduce(f).words() for f in facts]
            return c.words(), ent, [s.words() for s in map(self.swap, [c, *facts]) if s is not None]
        if r < single + (1 - single) / 2:  # two clauses joined by a conjunction (other frames: 1/4 each)
            conj, c1, c2 = rng.choice(ENTAILING_CONJ + NONENTAILING_CONJ), self.clause(pool), self.clause(pool)
            s1, s2 = self.swap(c1), self.swap(c2)
            join = lambda a, b: a.words() + [conj] + b.words()  # noqa: E731
            ent = [join(self.reduce(c1), self.reduce(c2))]
            hard = ([join(s1, c2)] if s1 else []) + ([join(c1, s2)] if s2 else [])
            if conj in ENTAILING_CONJ:
                ent += [self.reduce(c1).words(), self.reduce(c2).words()]
                hard += [s.words() for s in (s1, s2) if s is not None]
            return join(c1, c2), ent, hard
        if r < single + 3 * (1 - single) / 4:  # sentence adverb
            adv, c = rng.choice(CERTAIN_ADVERBS + HEDGE_ADVERBS), self.clause(pool, passive=0.2)
            s = self.swap(c)
            ent, hard = [[adv] + self.reduce(c).words()], [[adv] + s.words()] if s else []
            if adv in CERTAIN_ADVERBS:
                ent.append(self.reduce(c).words())
                hard += [s.words()] if s else []
            return [adv] + c.words(), ent, hard
        # a clause embedded under an attitude verb
        verb, holder, c = rng.choice(FACTIVE + NONFACTIVE), self.np(pool), self.clause(pool)
        s = self.swap(c)
        emb = lambda h, x: h.words() + [verb, "that"] + x.words()  # noqa: E731
        ent = [emb(self.reduce_np(holder), self.reduce(c))]
        # exchanging the holder and the embedded subject keeps every word but not the meaning
        hard = [emb(NP(c.subj.noun), replace(c, subj=NP(holder.noun)))] + ([emb(holder, s)] if s else [])
        if verb in FACTIVE:
            ent.append(self.reduce(c).words())
            hard += [s.words()] if s else []
        return emb(holder, c), ent, hard

    # --- OOD: HANS-like pairs, every hypothesis word comes from the premise ---------------------------
    def ood_pair(self, heuristic: str, entailed: bool) -> tuple[list[str], list[str]]:
        rng, pool, pick = self.rng, self.pool(), self.rng.randrange(3)
        if heuristic == "lexical_overlap":  # hypotheses are never contiguous pieces of the premise
            if pick == 0:  # drop the subject's adjective / swap subject and object
                c = Clause(
                    NP(pool.pop(), rng.choice(self.adjs)),
                    rng.choice(self.verbs),
                    NP(pool.pop(), self.adj()),
                    rng.random() < 0.3,
                )
                return c.words(), (replace(c, subj=NP(c.subj.noun)) if entailed else self.swap(c)).words()
            n1, n2, n3 = pool.pop(), pool.pop(), pool.pop()
            v1, v2 = rng.choice(self.verbs), rng.choice(self.verbs)
            if pick == 1:  # "the A near the B saw the C"
                c = Clause(NP(n1, self.adj(), ("pp", rng.choice(PREPOSITIONS), n2)), v2, NP(n3))
                hyps = (
                    [Clause(NP(n1, c.subj.adj), v2, NP(n3))]
                    if entailed
                    else [Clause(NP(n3), v2, NP(n2)), Clause(NP(n2), v2, NP(n1))]
                )
            else:  # "the A who saw the B helped the C"
                c = Clause(NP(n1, self.adj(), ("rc", v1, n2)), v2, NP(n3))
                hyps = (
                    [Clause(NP(n1), v2, NP(n3)), Clause(NP(n1), v1, NP(n2))]
                    if entailed
                    else [Clause(NP(n2), v1, NP(n1)), Clause(NP(n3), v2, NP(n1))]
                )
            return c.words(), rng.choice(hyps).words()
        if heuristic == "subsequence":  # hypotheses are contiguous pieces of the premise, not constituents
            if entailed and pick == 2:  # "the A and the B saw the C" -> "the B saw the C"
                c, n2 = self.clause(pool, transitive=0.5), pool.pop()
                return replace(c, subj=replace(c.subj, mod=("and", None, n2))).words(), replace(c, subj=NP(n2)).words()
            if entailed:  # "the A saw the B near the C" -> "the A saw the B" (also "who saw the C")
                c, kind = self.clause(pool, transitive=1.0), ("pp", "rc")[pick]
                full = replace(c, obj=replace(c.obj, mod=(kind, self.modifier_head(kind), pool.pop())))
                return full.words(), c.words()
            # "the A near the B danced" -> "the B danced"; "the A who saw the B danced" -> "the B danced"
            c, kind = self.clause(pool, transitive=0.5), rng.choice(("pp", "rc"))
            n2 = pool.pop()
            premise = replace(c, subj=replace(c.subj, mod=(kind, self.modifier_head(kind), n2)))
            return premise.words(), replace(c, subj=NP(n2)).words()
        # constituent: the hypothesis is a whole clause of the premise
        c1, c2 = self.clause(pool, transitive=0.5), self.clause(pool, transitive=0.5)
        if pick == 0:  # "S1 and S2" -> S1 or S2 / "S1 if S2" -> S1 or S2
            conj = rng.choice(ENTAILING_CONJ if entailed else NONENTAILING_CONJ)
            return c1.words() + [conj] + c2.words(), rng.choice((c1, c2)).words()
        if pick == 1:  # "certainly S" -> S / "probably S" -> S
            return [rng.choice(CERTAIN_ADVERBS if entailed else HEDGE_ADVERBS)] + c1.words(), c1.words()
        verb = rng.choice(FACTIVE if entailed else NONFACTIVE)  # "the A realized that S" -> S
        return self.np(pool).words() + [verb, "that"] + c1.words(), c1.words()


def _add(out: list[Example], seen: set, premise: list[str], hyp: list[str], label: int, subcase: str) -> bool:
    key = (" ".join(premise), " ".join(hyp))
    if key in seen:
        return False
    seen.add(key)
    out.append(Example(key[0], key[1], label, subcase))
    return True


def _retry(make, what: str) -> None:
    for _ in range(1000):
        if make():
            return
    raise RuntimeError(f"synthetic_nli: cannot find a new unique {what} pair; enlarge the vocabulary")


def _id_examples(g: _Gen, n: int, hard_fraction: float, seen: set) -> list[Example]:
    # Exact counts, not sampled: half entailed, round(hard_fraction * n) role swaps, the rest new-word negatives.
    n_ent = n // 2
    n_hard = min(round(hard_fraction * n), n - n_ent)
    kinds = ["reduction"] * n_ent + ["role_swap"] * n_hard + ["new_words"] * (n - n_ent - n_hard)
    g.rng.shuffle(kinds)
    out: list[Example] = []
    for kind in kinds:

        def make() -> bool:
            premise, ent, hard = g.id_frame()
            if kind == "role_swap":
                return bool(hard) and _add(out, seen, premise, g.rng.choice(hard), NON, kind)
            hyp = g.rng.choice(ent)
            if kind == "reduction":
                return _add(out, seen, premise, hyp, ENT, kind)
            new = g.perturb(hyp, premise)
            return new is not None and _add(out, seen, premise, new, NON, kind)

        _retry(make, "in-domain")
    return out


def _ood_examples(g: _Gen, n_per_subcase: int, seen: set) -> list[Example]:
    out: list[Example] = []
    for subcase in SUBCASES:
        heuristic, label_name = subcase.split("/")
        label = LABEL_NAMES.index(label_name)
        for _ in range(n_per_subcase):
            _retry(lambda: _add(out, seen, *g.ood_pair(heuristic, label == ENT), label, subcase), subcase)
    return out


def generate(params: SyntheticNLIParams, seed: int) -> TaskData:
    """Deterministic in (params, seed); no (premise, hypothesis) pair occurs twice across all splits."""

    def stream(split: str) -> _Gen:  # one independent RNG stream per split (string seeds hash stably)
        return _Gen(params, random.Random(f"synthetic_nli/{seed}/{split}"))

    seen: set[tuple[str, str]] = set()
    train = _id_examples(stream("train"), params.n_train, params.id_hard_fraction, seen)
    id_eval = _id_examples(stream("id_eval"), params.n_id_eval, params.id_hard_fraction, seen)
    ood = _ood_examples(stream("ood"), params.n_ood_per_subcase, seen)
    return TaskData(
        train=train,
        id_eval=EvalSet("id", "id", id_eval),
        ood=[EvalSet(OOD_NAME, "ood", ood)],
        label_names=list(LABEL_NAMES),
    )
