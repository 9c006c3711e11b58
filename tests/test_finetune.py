"""Fine-tuning: deterministic on CPU given the seed; the schedule warms up then decays linearly."""
from __future__ import annotations

import torch

from runners.data.examples import encode
from runners.training.finetune import finetune, linear_schedule
from runners.training.models import load_pretrained
from runners.tracking.progress import Progress
from runners.data.synthetic_nli import SyntheticNLIParams, generate, vocabulary
from runners.data.tokenizer import build_word_tokenizer
from registry.schema import FinetuneSpec, ModelSpec


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
