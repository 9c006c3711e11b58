"""Models and training: load pre-trained models and tokenizers, fine-tune (cached by fine-tune
fingerprint), evaluate per set and subcase, and resolve the run's device and precision."""

from runners.training.cache import Finetuned, get_finetuned, pad_id, pretrained
from runners.training.device import DeviceError, precision, resolve_device
from runners.training.evaluate import EncodedSet, EvalResult, evaluate
from runners.training.finetune import finetune

__all__ = [
    "Finetuned",
    "get_finetuned",
    "pad_id",
    "pretrained",
    "DeviceError",
    "precision",
    "resolve_device",
    "EncodedSet",
    "EvalResult",
    "evaluate",
    "finetune",
]
