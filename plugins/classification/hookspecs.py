"""The component kinds of the classification family, with their contracts.

Declared through ``register_kinds``, exactly as a third-party family declares
its kinds: the core knows none of them.  ``models``, ``losses``,
``optimizers`` and ``schedulers`` are also used by the other built-in tasks
(calibration, nas, augmentation, denoising's optimizer and scheduler).

The classification task feeds metrics these ``metric_inputs``: ``labels``
(int64 numpy ``(N,)``), ``probs`` (float64 numpy ``(N, C)``, rows sum to 1),
``logits`` (float numpy ``(N, C)``), ``model`` (the trained
``torch.nn.Module``, eval mode), ``train_x``/``train_y`` (the train split as
device tensors), ``train_labels``/``train_probs`` (labels and probabilities
on the train split), ``test_x``/``test_y`` (the test split as device
tensors of model inputs and labels, for metrics that query the model, such
as robust accuracy under an attack).
"""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_models(register):
    """Register models.  ``factory(**params)`` returns a ``torch.nn.Module``
    mapping a batch ``(N, *in_shape)`` to logits ``(N, n_classes)``.  Values
    that come from the data are declared in the signature with
    ``Annotated[..., harness.FromData]`` (``in_shape: Annotated[tuple,
    FromData], n_classes: Annotated[int, FromData]``): they are not suite
    parameters; the task offers them by name and the factory gets those it
    declares."""


@hookspec
def register_losses(register):
    """Register losses.  ``factory(**params)`` returns a callable
    ``loss(logits, targets, **extras) -> scalar tensor`` (batch mean), logits
    ``(N, C)``, integer targets ``(N,)``.  Extras passed by the training loop:
    ``index`` (LongTensor of the samples' positions in the train split) and
    ``epoch`` (int, from 0).  A loss that needs the data may define
    ``setup(n_classes: int, class_counts: list[int], n_train: int)``; it is
    called once before training and raises ``ValueError`` with a clear
    message when the data does not suit it (e.g. a binary loss on 3 classes).
    """


@hookspec
def register_optimizers(register):
    """Register optimizers and training schemes.

    ``factory(**params)`` returns either

    - a callable ``build(parameters) -> torch.optim.Optimizer`` (plain
      optimizers; the task wraps it in
      ``harness_plugins.classification.optimizers.PlainScheme``), or
    - a *training scheme*, the one extension point for methods that are not a
      plain optimizer step (two passes per step, extra loss terms, restarts,
      resampling).  A scheme has:

      - ``setup(model, loss_fn, info)``: ``info`` carries ``n_train``,
        ``n_classes``, ``epochs``, ``steps_per_epoch``, ``device`` and the
        whole train split as device tensors ``X_train``/``y_train``;
      - ``step(batch) -> float``: one optimisation step on ``batch``, a dict
        with ``x``, ``y``, ``index`` (LongTensor positions in the train split)
        and ``epoch``; returns the batch loss (NaN/inf ends the run as
        diverged);
      - ``optimizer``: the inner torch optimizer (schedulers step it);
      - optional ``epoch_order(epoch, generator) -> LongTensor | None``: the
        sample order of an epoch (may repeat samples); ``on_epoch_end(epoch)``;
        ``restart_epoch``: set when the scheme re-initialised the model, so
        the task does not select a best epoch from before it.

    Schemes own their optimizer, so SAM-style steps or restarts live in the
    scheme, never in the training loop.
    """


@hookspec
def register_schedulers(register):
    """Register learning-rate schedulers.  ``factory(**params)`` returns
    ``build(optimizer, epochs) -> torch.optim.lr_scheduler.LRScheduler``,
    stepped once per epoch."""


@hookimpl
def register_kinds(register):
    """The classification family's kinds: models, losses, optimizers, schedulers."""
    for kind, contract in (("models", register_models), ("losses", register_losses),
                           ("optimizers", register_optimizers),
                           ("schedulers", register_schedulers)):
        register(kind, contract)
