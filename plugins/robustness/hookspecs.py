"""The component kind of the adversarial robustness family: ``attacks``,
with its contract (declared through ``register_kinds``, as a third-party
family would).

An attack perturbs a batch of *model inputs*: the standardised features of a
tabular dataset, the normalised pixels of an image dataset (what the
classification task feeds its model and offers metrics as ``test_x``).  Its
``eps`` is therefore in those units: on tabular data a fraction of each
feature's train standard deviation; on images a fraction of each channel's
standard deviation (8/255 in pixel space is ``8/255 / std``, about 0.13 for
CIFAR-10's std of ~0.25).  The perturbed input is clipped to the *valid
range* the caller passes: by default each input coordinate's ``[min, max]``
over the train split (``attacks.input_bounds``), which for images is the
normalised image of pixel values 0 and 255 wherever the train split reaches
both.
"""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_attacks(register):
    """Register adversarial attacks.  ``factory(**params)`` returns an object
    with ``eps`` (float, the radius in model-input units), ``norm``
    (``"linf"`` or ``"l2"``) and ``perturb(model, x, y, bounds=None,
    objective=None, generator=None) -> x_adv``:

    - ``model``: a ``torch.nn.Module`` mapping ``x`` to logits (a single-logit
      model's output is read as two-class logits ``[0, f]``); the attack puts
      it in eval mode while it runs and restores its mode afterwards, and
      never changes its weights or their ``.grad``;
    - ``x``: a float tensor of model inputs, ``y``: int64 labels ``(N,)``;
    - ``bounds``: ``(lo, hi)`` tensors broadcastable to ``x``, the valid input
      range (``None``: unbounded);
    - ``objective(logits_adv) -> (N,)``: the per-example quantity to maximise
      (default: the cross-entropy of ``y``; TRADES passes its KL term);
    - ``generator``: a ``torch.Generator`` for a random start (``None``: the
      global RNG).

    ``x_adv`` is detached, within ``eps`` of ``x`` in the attack's norm and
    inside ``bounds``; with ``eps = 0`` (or no steps) it equals ``x``."""


@hookimpl
def register_kinds(register):
    """The robustness family's kind: attacks."""
    register("attacks", register_attacks)
