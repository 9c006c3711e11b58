"""One expanded run end to end: fine-tune (or reuse), evaluate, execute the recipe with the step logger as
its callback, build controls and variants of the kept step, export, and write the run's tables."""

from runners.run.context import RunContext
from runners.run.execute import RunOutcome, execute

__all__ = ["RunContext", "RunOutcome", "execute"]
