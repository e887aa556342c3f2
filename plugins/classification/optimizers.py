"""Optimizers, the training-scheme protocol, the USEFUL restart scheme, schedulers.

Optimizer factories return ``build(parameters) -> torch.optim.Optimizer`` or a
training scheme; the training loop drives both through the :class:`Scheme`
protocol (:func:`as_scheme` wraps plain optimizers).  Scheduler factories
return ``build(optimizer, epochs) -> LRScheduler``, stepped once per epoch.
The sharpness-aware schemes (SAM, SAF, MESA, grad_norm) live in
``harness_plugins.classification.schemes``.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Protocol, runtime_checkable

from pydantic import Field

from harness import hookimpl


@runtime_checkable
class Scheme(Protocol):
    """What the training loop calls.

    ``setup(model, loss_fn, info)`` once before training; ``info`` is a
    ``SimpleNamespace(n_train, n_classes, epochs, steps_per_epoch, device,
    X_train, y_train)``.  ``step(batch)`` does one optimization step on
    ``batch = {"x", "y", "index", "epoch"}`` and returns the batch objective
    as a float (may be nan: the loop checks).  ``optimizer`` is the inner
    torch optimizer that schedulers step.  Optional: ``epoch_order(epoch,
    generator) -> LongTensor | None`` (sample order of an epoch; its length
    may differ from ``n_train``), ``on_epoch_end(epoch)``, ``reset()`` (forget
    optimizer and scheme state) and ``extra_metrics() -> dict[str, float]``
    (called after each epoch; the loop logs the values under ``train/``).
    """

    optimizer: Any

    def setup(self, model, loss_fn, info) -> None: ...

    def step(self, batch) -> float: ...


def as_scheme(obj) -> Scheme:
    """Return ``obj`` if it is a scheme, else wrap a ``build(parameters)`` optimizer factory
    in a :class:`PlainScheme`."""
    if hasattr(obj, "step") and hasattr(obj, "setup"):
        return obj
    if callable(obj):
        return PlainScheme(obj)
    raise TypeError(f"not an optimizer factory or training scheme: {obj!r}")


class PlainScheme:
    """One forward/backward pass and an optimizer step; base of the other schemes."""

    def __init__(self, build):
        self.build = build
        self.optimizer = None

    def setup(self, model, loss_fn, info) -> None:
        """Keep the model and loss; build the inner optimizer on the trainable weights."""
        self.model, self.loss_fn, self.info = model, loss_fn, info
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self.build(self.params)
        self.epoch = 0

    def loss(self, batch, logits=None):
        """The run's loss on ``batch`` (forward pass unless ``logits`` given)."""
        if logits is None:
            logits = self.model(batch["x"])
        return self.loss_fn(logits, batch["y"], index=batch.get("index"),
                            epoch=batch.get("epoch", 0))

    def step(self, batch) -> float:
        """zero_grad, forward, backward, update; returns the batch loss."""
        self.epoch = batch.get("epoch", 0)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def reset(self) -> None:
        """Forget optimizer state in place, so a scheduler built on ``optimizer`` keeps
        working (used by ``useful`` after re-initialising the model)."""
        self.optimizer.state.clear()


class Useful:
    """Train briefly, cluster each class on the network outputs, upsample the slow-learned
    cluster and retrain from the initial weights with the full schedule.

    The brief first phase runs inside :meth:`setup`, before the training loop builds its
    scheduler: the loop's epochs (and a scheduler built on :attr:`optimizer`) are the
    retraining, from the initial weights and a fresh optimizer, on the upsampled data."""

    def __init__(self, inner, t_frac: float, factor: int, k: int):
        self.inner, self.t_frac, self.factor, self.k = inner, t_frac, factor, k
        self.upsampled = None

    @property
    def optimizer(self):
        """The inner scheme's optimizer (schedulers step it)."""
        return self.inner.optimizer

    def setup(self, model, loss_fn, info) -> None:
        """First phase: ``round(t_frac * epochs)`` epochs with the inner scheme at its base
        learning rate; then find the slow-learned samples, restore the initial weights and
        set the inner scheme up afresh (optimizer, momentum and scheme state)."""
        import torch

        self.model, self.loss_fn, self.info = model, loss_fn, info
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.t_epoch = max(1, round(self.t_frac * info.epochs))
        self.inner.setup(model, loss_fn, info)
        n = info.n_train
        batch = -(-n // max(1, info.steps_per_epoch))
        # torch's global RNG, seeded by the task before the model was built: the
        # first phase is as reproducible as the rest of the run
        was = model.training
        model.train()
        for epoch in range(self.t_epoch):
            for idx in torch.randperm(n).split(batch):
                idx = idx.to(info.X_train.device)
                self.inner.step({"x": info.X_train[idx], "y": info.y_train[idx],
                                 "index": idx, "epoch": epoch})
            if hasattr(self.inner, "on_epoch_end"):
                self.inner.on_epoch_end(epoch)
        model.train(was)
        self.upsampled = self.slow_samples()
        model.load_state_dict(initial)
        self.inner.setup(model, loss_fn, info)

    def step(self, batch) -> float:
        """Delegate to the inner scheme."""
        return self.inner.step(batch)

    def epoch_order(self, epoch, generator):
        """Every sample once plus ``factor - 1`` extra copies of the slow-learned ones,
        shuffled (so an epoch is longer than ``n_train``)."""
        import torch

        order = torch.cat([torch.arange(self.info.n_train),
                           self.upsampled.repeat(self.factor - 1)])
        return order[torch.randperm(len(order), generator=generator)]

    def on_epoch_end(self, epoch) -> None:
        """Forward to the inner scheme."""
        inner = getattr(self.inner, "on_epoch_end", None)
        if inner:
            inner(epoch)

    def extra_metrics(self) -> dict[str, float]:
        """The inner scheme's per-epoch metrics and the number of upsampled samples."""
        inner = getattr(self.inner, "extra_metrics", None)
        out = dict(inner()) if inner else {}
        out["useful_upsampled"] = float(len(self.upsampled))
        return out

    def slow_samples(self):
        """Per class, k-means on the train logits; the cluster with the highest mean
        cross-entropy is the slow-learned one.  Returns its train positions."""
        import torch
        import torch.nn.functional as F
        from sklearn.cluster import KMeans

        from harness_plugins.classification.losses import two_class_logits

        X, y = self.info.X_train, self.info.y_train
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            logits = two_class_logits(torch.cat([self.model(X[i:i + 1024]).float().cpu()
                                                 for i in range(0, len(X), 1024)]))
        self.model.train(was)
        y = torch.as_tensor(y).cpu().long()
        losses = F.cross_entropy(logits, y, reduction="none")
        slow = [torch.zeros(0, dtype=torch.long)]
        for c in torch.unique(y):
            pos = torch.nonzero(y == c).flatten()
            if len(pos) < self.k:
                continue
            with warnings.catch_warnings():  # duplicate points -> fewer distinct clusters
                warnings.simplefilter("ignore")
                labels = KMeans(self.k, n_init=10, random_state=0).fit_predict(
                    logits[pos].double().numpy())
            labels = torch.as_tensor(labels)
            means = [float(losses[pos][labels == j].mean()) if (labels == j).any() else -1.0
                     for j in range(self.k)]
            slow.append(pos[labels == int(torch.tensor(means).argmax())])
        return torch.cat(slow)




#: Adam's moment decay rates.
Beta = Annotated[float, Field(ge=0, lt=1)]


def sgd(lr: Annotated[float, Field(gt=0)] = 0.01,
        momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9, nesterov: bool = False,
        weight_decay: Annotated[float, Field(ge=0)] = 0.0):
    """SGD with (Nesterov) momentum (Sutskever et al., ICML 2013)."""
    if nesterov and momentum <= 0:
        raise ValueError("sgd: nesterov=True needs momentum > 0")

    def build(parameters):
        import torch

        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, nesterov=nesterov,
                               weight_decay=weight_decay)

    # batch mode reads this instead of building an optimizer (torch's first one
    # imports torch._dynamo, seconds); tests keep it equal to the built one
    build.batch_form = ("SGD", {"lr": lr, "momentum": momentum, "dampening": 0.0,
                                "nesterov": nesterov, "weight_decay": weight_decay})
    return build


def adam(lr: Annotated[float, Field(gt=0)] = 1e-3,
         weight_decay: Annotated[float, Field(ge=0)] = 0.0,
         betas: tuple[Beta, Beta] = (0.9, 0.999)):
    """Adam (Kingma & Ba, ICLR 2015); weight_decay is the coupled L2 penalty."""

    def build(parameters):
        import torch

        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay,
                                betas=tuple(betas))

    build.batch_form = ("Adam", {"lr": lr, "betas": tuple(betas), "eps": 1e-8,
                                 "weight_decay": weight_decay})
    return build


def adamw(lr: Annotated[float, Field(gt=0)] = 1e-3,
          weight_decay: Annotated[float, Field(ge=0)] = 0.01,
          betas: tuple[Beta, Beta] = (0.9, 0.999)):
    """AdamW, Adam with decoupled weight decay (Loshchilov & Hutter, ICLR 2019)."""

    def build(parameters):
        import torch

        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay,
                                 betas=tuple(betas))

    build.batch_form = ("AdamW", {"lr": lr, "betas": tuple(betas), "eps": 1e-8,
                                  "weight_decay": weight_decay})
    return build


def cosine(t_max: Annotated[int, Field(ge=1)] | None = None,
           eta_min: Annotated[float, Field(ge=0)] = 0.0):
    """Cosine annealing without restarts (Loshchilov & Hutter, ICLR 2017).

    ``t_max`` (epochs) defaults to the run's number of epochs."""

    def build(optimizer, epochs: int):
        import torch

        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=t_max if t_max is not None else max(1, epochs), eta_min=eta_min)

    return build


def step(step_size: Annotated[int, Field(ge=1)] = 30, gamma: Annotated[float, Field(gt=0)] = 0.1,
         milestones: list[Annotated[int, Field(ge=1)]] | None = None):
    """Step decay by gamma every step_size epochs or at milestones (He et al., CVPR 2016).

    With ``milestones`` this is ``MultiStepLR`` and ``step_size`` is ignored."""

    def build(optimizer, epochs: int):
        import torch

        if milestones:
            return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=sorted(milestones),
                                                        gamma=gamma)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)

    return build


def useful(base: str | dict = "sgd", t_frac: Annotated[float, Field(gt=0, le=1)] = 0.1,
           factor: Annotated[int, Field(ge=1)] = 2, k: Annotated[int, Field(ge=2)] = 2):
    """USEFUL, upsample early-not-learned examples (Nguyen et al., NeurIPS 2024); costs (1 + t_frac) x epochs: a probe, then full retraining.

    A first phase of ``round(t_frac * epochs)`` epochs at the base learning rate; k-means
    per class on the train logits, the higher-loss cluster is seen ``factor`` times per
    epoch; then the model goes back to its initial weights and optimizer state and retrains
    for the full ``epochs`` with the full schedule (scheduler from its start), as the paper
    does.  Budget: (1 + t_frac) x epochs, the retraining epochs longer by the upsampled
    copies.  ``base`` may be a scheme, e.g. ``sam``."""  # noqa: E501
    import harness

    return Useful(as_scheme(harness.create("optimizers", base)), t_frac, factor, k)


@hookimpl
def register_optimizers(register):
    """Register the plain optimizers."""
    register("sgd", sgd)
    register("adam", adam)
    register("adamw", adamw)
    register("useful", useful)


@hookimpl
def register_schedulers(register):
    """Register the learning-rate schedulers."""
    register("cosine", cosine)
    register("step", step)
