"""Models and training: load pre-trained models and tokenizers, fine-tune (cached by fine-tune
fingerprint), evaluate per set and subcase, and resolve the run's device and precision.

Each name is imported from its module when first asked for (PEP 562), as in runners.queue: `subnets run` checks the
hub ids it names (runners.training.hub, huggingface_hub alone) before anything is written, and needs neither torch
nor transformers for it (~4 s of CPU to import)."""

from __future__ import annotations

from runners.lazy_names import lazy_names

_HOME = {
    "Finetuned": "runners.training.cache",
    "get_finetuned": "runners.training.cache",
    "pad_id": "runners.training.cache",
    "pretrained": "runners.training.cache",
    "DeviceError": "runners.training.device",
    "precision": "runners.training.device",
    "resolve_device": "runners.training.device",
    "EncodedSet": "runners.training.evaluate",
    "EvalResult": "runners.training.evaluate",
}
# The functions `evaluate` and `finetune` share their names with their modules, which, once imported, are what this
# package's attributes of those names are: import them from runners.training.evaluate and runners.training.finetune.

__all__ = sorted(_HOME)

__getattr__, __dir__ = lazy_names(__name__, _HOME)
