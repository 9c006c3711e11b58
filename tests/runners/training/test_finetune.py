"""Fine-tuning: deterministic on CPU given the seed; the schedule warms up then decays linearly."""

from __future__ import annotations

import torch

from registry.schema import FinetuneSpec, ModelSpec
from runners.data.examples import encode
from runners.data.synthetic_nli import SyntheticNLIParams, generate, vocabulary
from runners.data.tokenizer import build_word_tokenizer
from runners.tracking.progress import Progress
from runners.training.finetune import finetune, linear_schedule
from runners.training.models import load_pretrained


def _train(seed: int):
    params = SyntheticNLIParams(n_train=96, n_id_eval=8, n_ood_per_subcase=2)
    tok = build_word_tokenizer(vocabulary(params))
    rows = encode(tok, generate(params, 0).train, 48)
    model = load_pretrained(ModelSpec(name="micro-bert"), ".", 2, len(tok), seed)
    spec = FinetuneSpec(epochs=1.0, lr=1e-3, batch_size=16)
    history = finetune(model, rows, spec, seed, tok.pad_token_id, Progress(enabled=False), log_every=2)
    return model.state_dict(), history


def test_finetuning_is_deterministic_given_the_seed():
    a, ha = _train(0)
    b, hb = _train(0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ha.loss == hb.loss and ha.steps == 6
    c, _ = _train(1)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_linear_warmup_then_decay():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_schedule(opt, warmup=4, total=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4:] == [1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]


def test_a_fine_tuning_killed_after_an_epoch_resumes_bit_identical(tmp_path):
    """Stopped during epoch 3 (after the epoch-2 checkpoint), resumed in a fresh model: the same weights,
    loss curve and per-epoch records as an uninterrupted run; epochs 1-2 are not recomputed."""
    from runners.training.finetune import Checkpoint

    params = SyntheticNLIParams(n_train=96, n_id_eval=8, n_ood_per_subcase=2)
    tok = build_word_tokenizer(vocabulary(params))
    rows = encode(tok, generate(params, 0).train, 48)
    spec = FinetuneSpec(epochs=3.5, lr=1e-3, batch_size=16, warmup_ratio=0.2)

    def run(checkpoint=None, stop_at=None):
        model = load_pretrained(ModelSpec(name="micro-bert"), ".", 2, len(tok), 0)
        epochs = []

        def on_epoch(e):
            if e == stop_at:
                raise KeyboardInterrupt  # a kill right before this epoch's checkpoint is written
            epochs.append(e)

        ck = (
            Checkpoint(checkpoint, extra=lambda: list(epochs), restore=lambda saved: epochs.extend(saved))
            if checkpoint
            else None
        )
        history = finetune(
            model,
            rows,
            spec,
            0,
            tok.pad_token_id,
            Progress(enabled=False),
            on_epoch=on_epoch,
            log_every=2,
            checkpoint=ck,
        )
        return model.state_dict(), history, epochs

    whole, h_whole, e_whole = run()
    path = tmp_path / "ft.checkpoint.pt"
    try:
        run(path, stop_at=3)
    except KeyboardInterrupt:
        pass
    assert path.exists() and torch.load(path, weights_only=True)["epoch"] == 2
    resumed, h_resumed, e_resumed = run(path)
    assert h_resumed.resumed_epoch == 2
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert h_resumed.loss == h_whole.loss and h_resumed.steps == h_whole.steps == 21  # ceil(3.5 x 6)
    assert e_resumed == e_whole == [1, 2, 3, 4]


def test_length_grouped_batches_cut_padding_and_keep_every_example():
    from runners.training.finetune import length_grouped

    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 120, (2000,), generator=gen).tolist()
    order = torch.randperm(2000, generator=gen).tolist()
    grouped = length_grouped(order, lengths, 16, torch.Generator().manual_seed(1))
    assert sorted(grouped) == list(range(2000))  # a permutation: every example once per epoch

    def padding(o):  # padded tokens / real tokens over the epoch's batches
        batches = [o[k : k + 16] for k in range(0, len(o), 16)]
        return sum(16 * max(lengths[i] for i in b) for b in batches) / sum(lengths)

    assert padding(order) > 1.8 and padding(grouped) < 1.1
    widths = [max(lengths[i] for i in grouped[k : k + 16]) for k in range(0, 2000, 16)]
    assert widths != sorted(widths, reverse=True)  # batches shuffled, not longest first
    assert grouped == length_grouped(order, lengths, 16, torch.Generator().manual_seed(1))  # deterministic


def test_length_grouping_is_part_of_the_fingerprint_only_when_on(tmp_path):
    from registry.loader import load_runs
    from tests.conftest import tiny_toml

    (tmp_path / "a.toml").write_text(tiny_toml())
    (tmp_path / "b.toml").write_text(
        tiny_toml().replace("[defaults.finetune]", "[defaults.finetune]\nlength_grouped = true")
    )
    plain, grouped = load_runs(tmp_path / "a.toml")[0], load_runs(tmp_path / "b.toml")[0]
    # runs declared before the option keep their fingerprint
    assert "length_grouped" not in plain.identity()["finetune"]
    assert grouped.identity()["finetune"]["length_grouped"] is True
    assert grouped.finetune_fingerprint != plain.finetune_fingerprint
