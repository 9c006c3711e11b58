"""Structured L0 pruning of heads and MLPs ("The Heuristic Core", Bhaskar, Friedman, Chen, ACL 2024).

One hard-concrete gate (Louizos, Welling, Kingma 2018) per attention head and per MLP block; every model
weight is frozen. For each declared target sparsity t (ascending), fresh log-alphas are trained with

    KL(p_full || p_gated) + lambda1 (t_k - s) + lambda2 (t_k - s)^2

p_full: the frozen full model's predictions on the step's batch: looked up, per example, in the table the run
computes once per fine-tuned model (ctx.teacher, runners.pruning.teacher: eval mode, no dropout, frozen weights, so
they never change), or, without one, one no_grad forward with all gates at 1 per step;
s = 1 - mean_u P(z_u != 0), the expected unit sparsity (heads and MLPs count equally); t_k rises linearly
from 0 to t over the warm-up, then stays; lambda1, lambda2 start at 0 and are trained by gradient ascent
(Adam, maximize=True), log-alphas by descent. Gated-off units output their training mean (mean ablation).

Schedule, the paper's MNLI rule (scripts/pruning/prune-all-mnli.sh: warm-up 6500 + 50 T steps, total
warm-up + 6 T, T = target in percent, 128 examples a step) times `schedule_scale`:
    warmup(t) = round(scale * (warmup_base + warmup_per_target * t))
    total(t)  = warmup(t) + round(scale * settle_per_target * t)
With t a fraction, the defaults 6500 / 5000 / 600 are the paper's rule at scale 1; the default scale
0.05 (325 + 250 t warm-up steps) suits the embedded CPU demo. Higher targets get longer warm-ups, so the
target rises at a similar pace (~ t / warmup per step) whatever t is.

Final mask (top-k): the round(t N) units with the lowest log-alpha are pruned (N = heads + MLPs, ties:
lower index first). Not the deterministic-gate threshold (log-alpha > 0 for a symmetric stretch): the
declared target is the x-axis of the effective-size curve, and subnetworks at one target must be of one
size to be compared across seeds; the Lagrangian holds only the *expected* sparsity near t. The threshold
rule's sparsity is logged next to it (extra["threshold_unit_sparsity"]): a gap says training was short.

One pass for all targets: the subnetworks of a run share every weight and differ only in their gates, so `run`
trains them side by side (L0Stack, `train_together`): each step's batch is repeated once per subnetwork, each
copy gated by its own sampled gates (per-example gates), one forward and one backward for all (on the CPU in
passes that keep each activation under 32 MiB and a pass's activations saved for the backward under 256 MiB,
a slice of a member's rows where one member is more: CPU_PASS_ELEMENTS, CPU_PASS_BYTES). Each keeps its own
log-alphas, multipliers, optimisers, noise generator and schedule (one whose steps are done leaves the stack), so
it trains as it would alone (`train_target`, the reference) up to the order of float sums.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from registry.methods import L0Params as Params
from runners.pruning.gates import Gates, attach, geometry, sparsity
from runners.pruning.recipe import PruneContext, PruneStep, keeps_id

EPS = 1e-6  # u is drawn from [EPS, 1 - EPS] so log(u) and log(1 - u) stay finite
# L0's passes change shape every step (rows x lengths x subnetworks): with glibc's own rule their freed activations
# pile up on the heap, so a run of it maps its blocks of 1 MiB and up while it prunes (runners.training.memory)
BOUNDED_HEAP = True


# ---- the hard-concrete distribution --------------------------------------------------------------


def p_nonzero(log_alpha: torch.Tensor, temperature: float, left: float, right: float) -> torch.Tensor:
    """P(z != 0) of each hard-concrete gate (Louizos et al. 2018, eq. 12): the expected L0 norm."""
    return torch.sigmoid(log_alpha - temperature * math.log(-left / right))


def sample_gates(
    log_alpha: torch.Tensor, u: torch.Tensor, temperature: float, left: float, right: float
) -> torch.Tensor:
    """Hard-concrete samples from uniform noise u: stretched binary concrete, clamped to [0, 1]."""
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / temperature)
    return (s * (right - left) + left).clamp(0.0, 1.0)


def deterministic_gates(log_alpha: torch.Tensor, left: float, right: float) -> torch.Tensor:
    """The test-time gate of Louizos et al.: clamp(sigmoid(log_alpha) (r - l) + l, 0, 1)."""
    return (torch.sigmoid(log_alpha) * (right - left) + left).clamp(0.0, 1.0)


def target_at(step: int, warmup: int, target: float) -> float:
    """The sparsity target at `step` (0-based): linear from 0 to `target` over `warmup` steps, then flat."""
    return target * min(1.0, step / warmup) if warmup > 0 else target


def lagrangian(expected: torch.Tensor, target: float, lambdas: torch.Tensor) -> torch.Tensor:
    """lambda1 (t - s) + lambda2 (t - s)^2: minimised over log-alphas, maximised over the lambdas."""
    gap = target - expected
    return lambdas[0] * gap + lambdas[1] * gap * gap


def schedule(p: Params, target: float) -> tuple[int, int]:
    """(warm-up steps, total steps) for one target; see the module docstring."""
    warmup = max(1, round(p.schedule_scale * (p.warmup_base + p.warmup_per_target * target)))
    return warmup, warmup + round(p.schedule_scale * p.settle_per_target * target)


# ---- training ------------------------------------------------------------------------------------


class L0Trainer:
    """The gate parameters of one target, the multipliers and their optimisers; `step` is the hot path.

    `gates` must be attached to `model` (runners.pruning.gates.attach): each step assigns to it the all-ones
    tensors (the teacher, when the step is not given its predictions: every hooked layer is skipped) and then the
    sampled gates (student)."""

    def __init__(self, model: torch.nn.Module, gates: Gates, p: Params, generator: torch.Generator):
        g = geometry(model)
        self.model, self.gates, self.p, self.generator = model, gates, p, generator
        self.device = gates.head.device
        self.n_heads = g.layers * g.heads
        self.head_shape = (g.layers, g.heads)
        # one vector for all units (heads then MLPs): one sample, one sigmoid, one optimiser tensor
        self.log_alpha = torch.full(
            (self.n_heads + g.layers,), p.init_log_alpha, device=self.device, requires_grad=True
        )
        self.lambdas = torch.zeros(2, device=self.device, requires_grad=True)
        self.opt = torch.optim.Adam([self.log_alpha], lr=p.lr)
        self.opt_lambda = torch.optim.Adam([self.lambdas], lr=p.lambda_lr, maximize=True)
        self.ones_head = torch.ones(self.head_shape, device=self.device)
        self.ones_mlp = torch.ones(g.layers, device=self.device)

    def split(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(heads (..., L, H), MLPs (..., L)) of unit vectors (..., N): one vector, or a stack of them."""
        return t[..., : self.n_heads].unflatten(-1, self.head_shape), t[..., self.n_heads :]

    def expected_sparsity(self) -> torch.Tensor:
        p = self.p
        return 1 - p_nonzero(self.log_alpha, p.temperature, p.stretch_left, p.stretch_right).mean()

    def sample(self) -> torch.Tensor:
        """This step's hard-concrete gates (N,), from one draw of this trainer's generator."""
        p = self.p
        u = torch.rand(self.log_alpha.shape, generator=self.generator, device=self.device) * (1 - 2 * EPS) + EPS
        return sample_gates(self.log_alpha, u, p.temperature, p.stretch_left, p.stretch_right)

    def objective(self, kl: torch.Tensor, target: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(KL + Lagrangian, expected sparsity): what this trainer's parameters descend (log-alphas) or ascend."""
        expected = self.expected_sparsity()
        return kl + lagrangian(expected, target, self.lambdas), expected

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.opt_lambda.zero_grad(set_to_none=True)

    def update(self) -> None:
        """One Adam step of the log-alphas (descent) and of the multipliers (ascent), on their gradients."""
        self.opt.step()
        self.opt_lambda.step()

    def step(
        self, inputs: dict[str, torch.Tensor], target: float, teacher: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One update on one batch; returns (KL, expected sparsity), detached (no host sync). `teacher`: the
        full model's float32 log-probabilities on the batch's rows (from the cache); None: computed here."""
        g = self.gates
        if teacher is None:
            g.head, g.mlp = self.ones_head, self.ones_mlp
            with torch.no_grad():
                teacher = F.log_softmax(self.model(**inputs).logits.float(), dim=-1)
        g.head, g.mlp = self.split(self.sample())
        student = F.log_softmax(self.model(**inputs).logits.float(), dim=-1)
        kl = F.kl_div(student, teacher, reduction="batchmean", log_target=True)
        loss, expected = self.objective(kl, target)
        self.zero_grad()
        loss.backward()
        self.update()
        return kl.detach(), expected.detach()

    def final_keep(self, target: float) -> torch.Tensor:
        """Bool keep-vector: all but the round(target N) units with the lowest log-alpha."""
        la = self.log_alpha.detach()
        keep = torch.ones_like(la, dtype=torch.bool)
        keep[torch.sort(la, stable=True).indices[: round(target * la.numel())]] = False
        return keep


# On the CPU, the most activation elements (float32) of one kind that one pass of a stack may hold: 32 MiB, glibc's
# ceiling for heap blocks; a larger block is mapped afresh from the OS on every allocation and its pages faulted in
# on every step, which costs more than the pass saves (measured: +14% CPU time for 8 MiniLM subnetworks in one pass)
CPU_PASS_ELEMENTS = 2**23
# On the CPU, the most bytes of activations one pass keeps for its backward (an estimate, see `_row_bytes`): a
# worker's peak memory is then its imports, the model and this, not the batch times the subnetworks (MiniLM at batch
# 16 x 128 tokens keeps ~20 MB a row: a worker grew past 3 GB with 2 subnetworks a pass, and glibc kept it)
CPU_PASS_BYTES = 256 * 2**20


class L0Stack:
    """Many L0Trainers of one model (their subnetworks) trained side by side: one forward and one backward a step.

    The step's batch of n examples is repeated once per member (member k's copy: rows k n to (k + 1) n - 1) and
    member k's sampled gates act on its copy only (per-example gates on the shared `gates`, attached to `model`).
    The loss is the sum of the members' losses (each its KL against the same teacher rows, plus its Lagrangian).
    A member's loss depends on its own parameters only (its gates touch its copy only, and an encoder never mixes
    examples), so the gradient of the sum is, member by member, the gradient of its own loss: each member (its
    generator, log-alphas, multipliers and Adams) takes the step it would take alone, up to the order of float
    sums (the KL gradient of a gate is summed over one copy here, over the whole batch alone).

    On a GPU a step is one pass. On the CPU it runs in passes that keep each activation within CPU_PASS_ELEMENTS and
    all of a pass's saved activations within CPU_PASS_BYTES: several members a pass for a small model, or one member
    over a slice of the batch's rows at a time (gradients summed over the slices: the same step, as with gradient
    accumulation) where one member's whole batch would hold more."""

    def __init__(self, model: torch.nn.Module, gates: Gates):
        self.geometry = geometry(model)
        self.model, self.gates = model, gates
        self.device = gates.head.device
        self.ones_head = torch.ones(self.geometry.layers, self.geometry.heads, device=self.device)
        self.ones_mlp = torch.ones(self.geometry.layers, device=self.device)

    def _row_bytes(self, tokens: int) -> int:
        """About the bytes a row's activations keep for the backward: per token and layer ~10 hidden-wide tensors
        (projections, residuals, norms), 2 intermediate-wide (the MLP before and after its activation) and the
        attention scores and probabilities (2 x heads x tokens), float32. Measured: ~2/3 of it for MiniLM."""
        g = self.geometry
        return tokens * g.layers * (10 * g.hidden + 2 * g.intermediate + 2 * g.heads * tokens) * 4

    def rows_per_pass(self, batch: int, tokens: int, members: int) -> int:
        """How many rows (member copies of batch rows) one pass holds for a batch of (batch, tokens)."""
        if self.device.type != "cpu":
            return batch * members
        g = self.geometry
        widest = tokens * max(g.intermediate, g.heads * tokens)  # a row's MLP, or attention, activation
        return max(1, min(batch * members, CPU_PASS_ELEMENTS // widest, CPU_PASS_BYTES // self._row_bytes(tokens)))

    def passes(self, members: int, batch: int, tokens: int) -> list[tuple[range, int, int]]:
        """The passes of one step: (members, first row, end row), each member's rows covered once."""
        rows = self.rows_per_pass(batch, tokens, members)
        if rows >= batch:  # whole copies: several members a pass
            size = rows // batch
            return [(range(i, min(i + size, members)), 0, batch) for i in range(0, members, size)]
        slices = -(-batch // rows)
        width = -(-batch // slices)  # even slices: 16 rows at most 12 a pass is 8 + 8, not 12 + 4
        return [(range(k, k + 1), a, min(a + width, batch)) for k in range(members) for a in range(0, batch, width)]

    def step(
        self,
        members: Sequence[L0Trainer],
        targets: Sequence[float],
        inputs: dict[str, torch.Tensor],
        teacher: torch.Tensor | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One update of every member on one batch, member k at target `targets[k]`; returns each member's (KL,
        expected sparsity), detached. `teacher`: as L0Trainer.step's, shared by all members (None: computed once)."""
        if teacher is None:
            self.gates.head, self.gates.mlp = self.ones_head, self.ones_mlp
            with torch.no_grad():
                teacher = F.log_softmax(self.model(**inputs).logits.float(), dim=-1)
        z = [m.sample() for m in members]  # each member draws from its own generator, once a step
        # the passes backpropagate into leaf copies of the gates; their summed gradients then go through the sampling
        # once (a graph is freed by its first backward, and every pass shares the sampling's)
        leaves = [zk.detach().requires_grad_() for zk in z]
        for member in members:
            member.zero_grad()
        n, tokens = inputs["input_ids"].shape
        kls = [torch.zeros((), device=self.device) for _ in members]
        for group, a, b in self.passes(len(members), n, tokens):
            part = {name: v[a:b] for name, v in inputs.items()}
            k = len(group)
            self.gates.head, self.gates.mlp = members[0].split(
                torch.stack([leaves[i] for i in group]).repeat_interleave(b - a, dim=0)
            )  # (k (b - a), L, H), (k (b - a), L)
            stacked = {name: v.repeat(k, *[1] * (v.dim() - 1)) for name, v in part.items()}
            student = F.log_softmax(self.model(**stacked).logits.float(), dim=-1)
            # KL(batchmean) over the whole batch is the sum over its rows / n, so the slices' terms add up to it
            terms = [
                F.kl_div(rows, teacher[a:b], reduction="sum", log_target=True) / n for rows in student.split(b - a)
            ]
            torch.stack(terms).sum().backward()
            for i, term in zip(group, terms):
                kls[i] = kls[i] + term.detach()
        figures, lagrangians = [], []
        for member, target, kl in zip(members, targets, kls):
            lagrangian_k, expected = member.objective(torch.zeros((), device=self.device), target)
            lagrangians.append(lagrangian_k)
            figures.append((kl, expected.detach()))
        torch.autograd.backward([*z, torch.stack(lagrangians).sum()], [*(leaf.grad for leaf in leaves), None])
        for member in members:
            member.update()
        return figures


def _batches_forever(ctx: PruneContext, batch_size: int):
    epoch = 0
    while True:
        n = 0
        for batch in ctx.train_batches(batch_size=batch_size, shuffle=True, epoch=epoch):
            n += 1
            yield batch
        if n == 0:
            raise ValueError("L0 pruning got no training batches")
        epoch += 1


def _seed(seed: int, target: float) -> int:
    # per target, so a subnetwork does not depend on which other targets were declared
    return (seed * 1_000_003 + round(target * 1_000_000)) % (2**63)


def train_target(
    ctx: PruneContext, p: Params, target: float, means, teacher: torch.Tensor | None = None
) -> tuple[L0Trainer, dict[str, float]]:
    """Train one target's gates; `teacher`: the (N, C) table of ctx.teacher on the model's device, or None."""
    model = ctx.model
    device = next(model.parameters()).device
    gates = Gates.ones(model, ablation=p.ablation, means=means)
    gen = torch.Generator(device=device).manual_seed(_seed(ctx.seed, target))
    trainer = L0Trainer(model, gates, p, gen)
    warmup, total = schedule(p, target)
    batches = _batches_forever(ctx, p.batch_size)
    kl = expected = torch.zeros(())
    note = ""
    with attach(model, gates), ctx.progress.task(f"L0 pruning to {target:.2f}", total=total) as advance:
        for step in range(total):
            batch = next(batches)
            inputs = {k: v.to(device) for k, v in batch.model_inputs().items()}
            kl, expected = trainer.step(inputs, target_at(step, warmup, target), _teacher_rows(teacher, batch))
            if step % 20 == 0 or step == total - 1:  # reading the figures is a host sync on a GPU
                note = f"E[s]={float(expected):.3f} kl={float(kl):.4f}"
            advance(1, note)
    return trainer, _figures(trainer, kl, expected, warmup, total)


def train_together(
    ctx: PruneContext,
    p: Params,
    subnets: Sequence[tuple[int, float]],
    means,
    teacher: torch.Tensor | None = None,
) -> Iterator[tuple[int, L0Trainer, dict[str, float]]]:
    """Train the subnetworks `subnets`, (seed, target) pairs, side by side in one pass (L0Stack) on one batch
    sequence (ctx.train_batches, whatever their seeds); each as `train_target` with ctx.seed = its seed would.
    Yields (index in `subnets`, trainer, figures) as each one's schedule ends (on one step, in `subnets` order),
    with no gates attached and no progress shown, so the caller may evaluate it there."""
    model = ctx.model
    device = next(model.parameters()).device
    gates = Gates.ones(model, ablation=p.ablation, means=means)
    targets = [t for _, t in subnets]
    schedules = [schedule(p, t) for t in targets]
    members = [L0Trainer(model, gates, p, torch.Generator(device=device).manual_seed(_seed(s, t))) for s, t in subnets]
    stack = L0Stack(model, gates)
    figures = [(torch.zeros(()), torch.zeros(()))] * len(subnets)
    batches = _batches_forever(ctx, p.batch_size)
    left, step, note = list(range(len(subnets))), 0, ""
    while left:
        end = min(schedules[k][1] for k in left)  # the next step at which some member is done
        label = f"L0 pruning to {', '.join(f'{targets[k]:.2f}' for k in left)}"
        with attach(model, gates), ctx.progress.task(label, total=end - step) as advance:
            for step in range(step, end):
                batch = next(batches)
                inputs = {k: v.to(device) for k, v in batch.model_inputs().items()}
                at = [target_at(step, schedules[k][0], targets[k]) for k in left]
                out = stack.step([members[k] for k in left], at, inputs, _teacher_rows(teacher, batch))
                for k, f in zip(left, out):
                    figures[k] = f
                if step % 20 == 0 or step == end - 1:  # a host sync on a GPU
                    kl, expected = figures[left[0]]
                    note = f"E[s]={float(expected):.3f} kl={float(kl):.4f} (to {targets[left[0]]:.2f})"
                advance(1, note)
        step = end
        done = [k for k in left if schedules[k][1] == end]
        left = [k for k in left if schedules[k][1] > end]
        for k in done:
            yield k, members[k], _figures(members[k], *figures[k], *schedules[k])


def _teacher_rows(teacher: torch.Tensor | None, batch) -> torch.Tensor | None:
    """The teacher table's rows of `batch` (None without a table: the step computes them)."""
    if teacher is None:
        return None
    if batch.indices is None:
        raise ValueError("a teacher table needs batches that say which rows they hold (Batch.indices)")
    return teacher[batch.indices.to(teacher.device)]


def _figures(trainer: L0Trainer, kl, expected, warmup: int, total: int) -> dict[str, float]:
    lam = trainer.lambdas.detach().tolist()
    return {
        "expected_sparsity_end": float(expected),
        "kl_end": float(kl),
        "lambda1": lam[0],
        "lambda2": lam[1],
        "warmup_steps": float(warmup),
        "train_steps": float(total),
    }


def _in_order(finished: Iterator[tuple[int, L0Trainer, dict[str, float]]]) -> Iterator[tuple[L0Trainer, dict]]:
    """(trainer, figures) by index, from train_together's finishing order (the same for ascending targets, whose
    schedules never get shorter; others are held until those before them are done)."""
    held: dict[int, tuple[L0Trainer, dict]] = {}
    due = 0
    for k, trainer, figures in finished:
        held[k] = (trainer, figures)
        while due in held:
            yield held.pop(due)
            due += 1


def run(ctx: PruneContext, p: Params, start: PruneStep | None = None, together: bool = True) -> Iterator[PruneStep]:
    """One subnetwork per target, each from fresh gates seeded by (seed, target); a resumed run skips the
    targets up to start.step, whose gate parameters (log-alphas) are logged as that step's scores. The targets
    left train side by side in one pass (`train_together`); `together=False` trains them one after another
    (`train_target`), the same steps up to float rounding, with 1/K of the activation memory."""
    model = ctx.model
    means = ctx.unit_means() if p.ablation == "mean" else None
    flags = [(q, q.requires_grad) for q in model.parameters()]
    was_training = model.training
    model.eval()  # no dropout: the gated model matches the teacher exactly while all gates are 1
    for q, _ in flags:
        q.requires_grad_(False)
    try:
        # once for all targets, with the model as the teacher is: eval mode, no gates attached
        teacher = ctx.teacher().to(next(model.parameters()).device) if ctx.teacher is not None else None
        first = start.step + 1 if start is not None else 1
        targets = sorted(p.targets)[first - 1 :]
        if together:
            trained = _in_order(train_together(ctx, p, [(ctx.seed, t) for t in targets], means, teacher))
        else:
            trained = (train_target(ctx, p, t, means, teacher) for t in targets)
        for i, (t, (trainer, extra)) in enumerate(zip(targets, trained), start=first):
            head_keep, mlp_keep = trainer.split(trainer.final_keep(t).float())
            gates = Gates(head_keep, mlp_keep, ablation=p.ablation, means=means)
            with attach(model, gates):
                results = ctx.evaluate()
            spars = sparsity(model, gates)
            la = trainer.log_alpha.detach()
            threshold = deterministic_gates(la, p.stretch_left, p.stretch_right) <= 0.5
            extra = {
                "target_sparsity": t,
                "realised_unit_sparsity": spars["units"],
                "threshold_unit_sparsity": float(threshold.float().mean()),
                **extra,
            }
            head_la, mlp_la = trainer.split(la.clone())
            yield PruneStep(
                i,
                spars["params"],
                results,
                keeps_id(results, ctx.baseline, p.keep_rule),
                gates=gates,
                scores={"head": head_la, "mlp": mlp_la},
                unit_sparsity=spars["units"],
                strength=t,
                extra=extra,
            )
    finally:
        for q, flag in flags:
            q.requires_grad_(flag)
        model.train(was_training)
