"""Adversarial training schemes, registered as ``optimizers``: ``pgd_at``
(Madry), ``trades`` and ``dro_at`` (doubly robust instance-reweighted AT,
Sow et al.).

A scheme (``harness_plugins.classification.optimizers.Scheme``) gets the
model and the run's loss in ``setup`` and each batch in ``step``: all an
adversarial step needs, so these train through the classification task
unchanged.  A scheme trains its run alone (batch mode stacks plain
optimizers only; ``batch_task`` says "scheme ... is not batchable").
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import Component
from harness_plugins.classification.optimizers import PlainScheme

#: The attack a scheme trains against unless the suite names one: PGD-10.
TRAIN_ATTACK = "pgd"


def _plain_base(base, who: str):
    import harness

    built = harness.create("optimizers", base)
    if hasattr(built, "setup"):
        raise ValueError(f"{who}: base {base!r} is a training scheme; it needs a plain optimizer "
                         "(sgd, adam, adamw)")
    return built


class Adversarial(PlainScheme):
    """A plain optimizer step on a loss of adversarial examples made by ``attack``
    against the current weights, clipped to the train split's input range."""

    def __init__(self, build, attack, clip: bool):
        super().__init__(build)
        self.attack, self.clip = attack, clip
        self.bounds = None

    def setup(self, model, loss_fn, info) -> None:
        """Also take the valid input range from the train split (``clip``)."""
        from harness_plugins.robustness.attacks import input_bounds

        super().setup(model, loss_fn, info)
        if self.clip:
            lo, hi = input_bounds(info.X_train)
            self.bounds = (lo.to(info.device), hi.to(info.device))

    def adversarial(self, batch, **kwargs):
        """The batch's adversarial inputs (the model's mode is kept)."""
        return self.attack.perturb(self.model, batch["x"], batch["y"], self.bounds, **kwargs)


class PGDAT(Adversarial):
    """Madry et al.: minimise the run's loss on the adversarial batch."""

    def step(self, batch) -> float:
        """Attack, then one optimizer step on the loss of the adversarial batch."""
        self.epoch = batch.get("epoch", 0)
        x_adv = self.adversarial(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss({**batch, "x": x_adv})
        loss.backward()
        self.optimizer.step()
        return loss.item()


def trades_kl(logits_adv, logits_clean):
    """Per example ``KL(softmax(clean) || softmax(adv))``, TRADES' robust term."""
    import torch

    p_log = torch.log_softmax(logits_clean, dim=1)
    return (p_log.exp() * (p_log - torch.log_softmax(logits_adv, dim=1))).sum(1)


class TRADES(Adversarial):
    """Zhang et al.: the run's loss on the clean batch plus ``beta`` times the batch
    mean of ``KL(p(x) || p(x_adv))``, ``x_adv`` maximising that KL from ``x + 0.001 N(0, I)``
    (the KL's gradient vanishes at ``x`` itself)."""

    def __init__(self, build, attack, clip: bool, beta: float):
        super().__init__(build, attack, clip)
        self.beta = beta

    def step(self, batch) -> float:
        """Attack the KL, then one optimizer step on clean loss + beta KL."""
        import torch

        from harness_plugins.classification.losses import two_class_logits
        from harness_plugins.robustness.attacks import logits_of

        self.epoch = batch.get("epoch", 0)
        x = batch["x"]
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            target = logits_of(self.model, x)
        self.model.train(was)
        start = x + 0.001 * torch.randn_like(x)
        x_adv = self.adversarial(batch, objective=lambda z: trades_kl(z, target), start=start)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        clean = self.loss(batch, logits)
        robust = trades_kl(logits_of(self.model, x_adv), two_class_logits(logits)).mean()
        total = clean + self.beta * robust
        total.backward()
        self.optimizer.step()
        return total.item()


class DROAT(Adversarial):
    """Sow et al.: the KL-DRO reweighted loss of the adversarial batch,
    ``sum_i w_i l_i`` with ``w = softmax(detached l / r)`` over the batch (the closed-form
    maximiser of ``sum_i w_i l_i - r KL(w || uniform)``), ``l_i`` the run's per-example
    loss at ``x_adv``; the weights come from ``losses_robust.KLDRO``."""

    def __init__(self, build, attack, clip: bool, r: float):
        super().__init__(build, attack, clip)
        self.r = r
        self._max_weight = []

    def setup(self, model, loss_fn, info) -> None:
        """Wrap the run's per-example loss in the classification family's KL-DRO."""
        from harness_plugins.classification.losses_robust import KLDRO

        super().setup(model, loss_fn, info)
        name = getattr(loss_fn, "name", "the run's loss")
        self.dro = KLDRO(loss_fn, self.r, base_name=name)

    def weights(self, logits, y, **extras):
        """The instance weights ``softmax(l / r)`` of a batch's (adversarial) logits."""
        import torch

        losses = self.dro.base.per_sample(logits, y, **extras)
        return torch.softmax(losses.detach() / self.r, dim=0)

    def step(self, batch) -> float:
        """Attack, then one optimizer step on the reweighted adversarial loss."""
        self.epoch = batch.get("epoch", 0)
        x_adv = self.adversarial(batch)
        self.optimizer.zero_grad(set_to_none=True)
        extras = {"index": batch.get("index"), "epoch": self.epoch}
        per = self.dro.per_sample(self.model(x_adv), batch["y"], **extras)  # n w_i l_i
        loss = per.mean()
        loss.backward()
        self.optimizer.step()
        # n max_i w_i: 1 is the plain mean, n puts the whole batch on one example
        self._max_weight.append(float(per.detach().div(per.detach().sum().clamp_min(1e-30))
                                      .max()) * len(per))
        return loss.item()

    def extra_metrics(self) -> dict[str, float]:
        """``dro_max_weight``: the epoch's mean of n max_i w_i (1 = uniform weights)."""
        values, self._max_weight = self._max_weight, []
        return {"dro_max_weight": sum(values) / len(values)} if values else {}


# -- factories ----------------------------------------------------------------------

Attack = Annotated[str | dict, Component("attacks")]


def pgd_at(base: str | dict = "sgd", attack: Attack = TRAIN_ATTACK, clip: bool = True):
    """PGD adversarial training (Madry et al., ICLR 2018): the run's loss on PGD examples.

    ``attack`` is any ``attacks`` spec (default ``pgd``: L-inf, 10 steps,
    eps 0.3 in model-input units); ``clip`` keeps examples in the train
    split's per-coordinate input range.  Trains alone (not batchable)."""
    import harness

    return PGDAT(_plain_base(base, "pgd_at"), harness.create("attacks", attack), clip)


def trades(base: str | dict = "sgd", attack: Attack = TRAIN_ATTACK, clip: bool = True,
           beta: Annotated[float, Field(ge=0)] = 6.0):
    """TRADES (Zhang et al., ICML 2019): clean loss + beta KL(p(x) || p(x_adv)) at the worst x_adv.

    The attack maximises the KL from ``x + 0.001 N(0, I)`` (its own random
    start is not used); beta = 6 is the paper's CIFAR-10 value; beta = 0 is
    clean training.  Trains alone (not batchable)."""
    import harness

    return TRADES(_plain_base(base, "trades"), harness.create("attacks", attack), clip, beta)


def dro_at(base: str | dict = "sgd", attack: Attack = TRAIN_ATTACK, clip: bool = True,
           r: Annotated[float, Field(gt=0)] = 1.0):
    """Doubly robust instance-reweighted AT (Sow, Lin, Wang, Liang, ICLR 2024): KL-DRO weights softmax(l_i / r) on PGD losses.

    Minimises ``sum_i w_i l_i`` over each batch, ``l_i`` the run's loss at the
    PGD example of sample i and ``w = softmax(detached l / r)`` (the KL-DRO
    closed form; ``kl_dro`` loss of the classification family).  r -> inf is
    ``pgd_at``; small r trains on the batch's hardest examples.  r = 1 is
    unverified (the authors' code was not found).  Logs ``train/dro_max_weight``
    (n max_i w_i per epoch).  Trains alone (not batchable)."""  # noqa: E501
    import harness

    return DROAT(_plain_base(base, "dro_at"), harness.create("attacks", attack), clip, r)
