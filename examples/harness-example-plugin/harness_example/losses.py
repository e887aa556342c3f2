"""Loss ``poly1``: cross-entropy plus a first-order polynomial term.

A loss factory returns ``loss(logits, targets, **extras) -> scalar tensor``:
``logits`` is a float tensor ``(N, C)`` on the run's device, ``targets`` an
int64 tensor ``(N,)`` of class codes ``0..C-1`` (the task encodes labels in
sorted order of the original values), and ``extras`` carries ``index`` (the
samples' positions in the train split) and ``epoch``; a loss that does not
need them accepts and ignores them.  Return the batch mean.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import hookimpl


# below -1 the loss decreases as p_target falls: training would unlearn; the
# range in the signature is checked (and shown by `harness list`) before any run
def poly1(epsilon: Annotated[float, Field(ge=-1)] = 1.0):
    """Poly-1 loss: cross-entropy + epsilon * (1 - p_target) (Leng et al., PolyLoss, ICLR 2022)."""
    import torch.nn.functional as F

    def loss(logits, targets, **extras):
        log_p = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
        return (epsilon * (1 - log_p.exp()) - log_p).mean()

    return loss


@hookimpl
def register_losses(register):
    register("poly1", poly1)
