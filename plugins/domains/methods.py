"""Domain generalization methods (the ``dg_methods`` kind): ERM, DRM, CORAL, IRM.

Each builds, from the suite's classifier (a ``models`` component whose last
module is its linear head), a network with ``forward`` (the prediction) and
``loss(x, y, domains)`` (the training objective on a domain-balanced batch),
as DomainBed's algorithms (Gulrajani & Lopez-Paz, ICLR 2021) do with their
``update`` and ``predict``.  The losses are cross-entropy, as there.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

NonNegative = Annotated[float, Field(ge=0)]
#: How DRM picks a head at test time.
Steering = Literal["entropy", "batch", "pooled"]


def split_model(model):
    """``(featurizer, head)`` of a classifier whose last module is a
    ``torch.nn.Linear`` (the ``mlp``, ``cnn`` and ``auto`` models)."""
    import torch.nn as nn

    from harness.errors import UserError

    if not isinstance(model, nn.Sequential) or not isinstance(model[-1], nn.Linear):
        raise UserError(f"a domain generalization method needs a model whose last module is "
                        f"its linear head (mlp, cnn, auto); got {type(model).__name__}")
    return model[:-1], model[-1]


def _network_base():
    import torch.nn as nn

    class Network(nn.Module):
        """A featurizer and a linear head; ERM's network, base of the others."""

        def __init__(self, model):
            super().__init__()
            self.featurizer, self.head = split_model(model)
            self._sums: dict[str, float] = {}
            self._count = 0

        def forward(self, x):
            return self.head(self.featurizer(x))

        def note(self, **values: float) -> None:
            """Accumulate per-step diagnostics (a penalty) for :meth:`diagnostics`."""
            for k, v in values.items():
                self._sums[k] = self._sums.get(k, 0.0) + float(v)
            self._count += 1

        def diagnostics(self) -> dict[str, float]:
            """The noted values averaged over the steps since the last call."""
            out = {k: v / max(self._count, 1) for k, v in self._sums.items()}
            self._sums, self._count = {}, 0
            return out

    return Network


class ERM:
    """Empirical risk minimisation: cross-entropy on the pooled source domains."""

    def build(self, model, n_domains: int):
        """The model itself, as featurizer and head."""
        import torch.nn.functional as F

        class ERMNetwork(_network_base()):
            def loss(self, x, y, domains):
                return F.cross_entropy(self(x), y)

        return ERMNetwork(model)


def coral_penalty(a, b):
    """DomainBed's CORAL distance between two feature batches: the mean squared
    difference of their means plus that of their covariances (unbiased, n - 1)."""
    mean_a, mean_b = a.mean(0, keepdim=True), b.mean(0, keepdim=True)
    ca, cb = a - mean_a, b - mean_b
    cov_a = ca.t() @ ca / (len(a) - 1)
    cov_b = cb.t() @ cb / (len(b) - 1)
    return (mean_a - mean_b).pow(2).mean() + (cov_a - cov_b).pow(2).mean()


class CORAL:
    """Deep CORAL (Sun & Saenko, 2016) as in DomainBed: per-domain cross-entropy
    plus ``gamma`` times the mean CORAL distance over pairs of source domains."""

    def __init__(self, gamma: NonNegative = 1.0):
        self.gamma = gamma

    def build(self, model, n_domains: int):
        """The model, trained with the feature-alignment penalty."""
        import torch.nn.functional as F

        gamma = self.gamma

        class CORALNetwork(_network_base()):
            def loss(self, x, y, domains):
                feats = self.featurizer(x)
                logits = self.head(feats)
                present = domains.unique()
                ce = sum(F.cross_entropy(logits[domains == d], y[domains == d])
                         for d in present) / len(present)
                pairs = [(i, j) for i in range(len(present)) for j in range(i + 1, len(present))]
                if not pairs:
                    return ce
                penalty = sum(coral_penalty(feats[domains == present[i]],
                                            feats[domains == present[j]])
                              for i, j in pairs) / len(pairs)
                self.note(penalty=penalty.item())
                return ce + gamma * penalty

        return CORALNetwork(model)


def irm_penalty(logits, y):
    """IRMv1's penalty as DomainBed computes it on one domain's batch: the
    product of the gradients, with respect to a dummy scale 1.0 on the
    logits, of the risks of its even and its odd rows."""
    import torch
    import torch.nn.functional as F

    scale = torch.ones((), device=logits.device, requires_grad=True)
    g1 = torch.autograd.grad(F.cross_entropy(logits[::2] * scale, y[::2]), [scale],
                             create_graph=True)[0]
    g2 = torch.autograd.grad(F.cross_entropy(logits[1::2] * scale, y[1::2]), [scale],
                             create_graph=True)[0]
    return (g1 * g2).sum()


class IRM:
    """Invariant risk minimisation (Arjovsky et al., 2019), IRMv1 as in
    DomainBed: mean per-domain risk plus ``weight`` times the mean penalty,
    the weight 1 for the first ``anneal_steps`` steps.  DomainBed also resets
    Adam when the weight jumps; here the run's optimizer is kept."""

    def __init__(self, weight: NonNegative = 100.0,
                 anneal_steps: Annotated[int, Field(ge=0)] = 500):
        self.weight, self.anneal_steps = weight, anneal_steps

    def build(self, model, n_domains: int):
        """The model, trained with the IRMv1 penalty."""
        import torch.nn.functional as F

        weight, anneal = self.weight, self.anneal_steps

        class IRMNetwork(_network_base()):
            steps = 0

            def loss(self, x, y, domains):
                logits = self(x)
                present = domains.unique()
                nll = sum(F.cross_entropy(logits[domains == d], y[domains == d])
                          for d in present) / len(present)
                penalty = sum(irm_penalty(logits[domains == d], y[domains == d])
                              for d in present) / len(present)
                w = weight if self.steps >= anneal else 1.0
                self.steps += 1
                self.note(penalty=penalty.item())
                return nll + w * penalty

        return IRMNetwork(model)


def entropy(logits):
    """Shannon entropy (nats) of each row's softmax."""
    return -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)


class DRM:
    """Domain-specific risk minimisation (Zhang et al., KDD 2023).

    Training: a shared featurizer, one linear head per source domain trained on
    that domain's rows, and a head trained on every domain's rows; the loss is,
    averaged over the domains of the batch, the mean of the domain head's and
    the pooled head's cross-entropy on the domain's rows.  Test: online model
    steering, each target sample predicted by the head whose softmax has the
    lowest entropy on it (``steering: entropy``); ``pooled`` uses the pooled
    head alone (an ablation).  With one source domain the domain head and the
    pooled head see the same rows: they are one head, and DRM is ERM.

    Checked against the first author's public DomainBed code (yfzhang114/AdaNPC,
    ``domainbed/algorithms.py``, class ``DRM`` with ``lf_alg: entropy``):
    the K + 1 heads, the loss and the minimum-entropy selection are as there.
    There the selection is made once per evaluation batch (the head of least
    mean entropy over 64 samples): ``steering: batch`` does that, in blocks
    of ``steering_batch`` rows in the order the task predicts them; the
    default ``entropy`` selects per sample, the paper's "each arriving target
    sample", so a prediction never depends on its neighbours.  Not
    implemented: the paper's other steering variants (a domain discriminator,
    prototype distances; ``lf_alg: nn / cosine`` there) and its test-time
    parameter adaptation; the paper's own repository was not found among the
    sources searched, so its exact release could not be compared."""

    def __init__(self, steering: Steering = "entropy", steering_batch: int = 64):
        self.steering, self.steering_batch = steering, steering_batch

    def build(self, model, n_domains: int):
        """Featurizer and pooled head from ``model``; a head per domain drawn after."""
        import copy

        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        steering, block = self.steering, self.steering_batch

        class DRMNetwork(_network_base()):
            def __init__(self, model):
                super().__init__(model)
                # one source domain: its head is the pooled head (same rows)
                extra = []
                for _ in range(n_domains if n_domains > 1 else 0):
                    h = copy.deepcopy(self.head)
                    h.reset_parameters()  # drawn from the generator after the model's init
                    extra.append(h)
                self.domain_heads = nn.ModuleList(extra)

            def heads(self):
                return [*self.domain_heads, self.head] if len(self.domain_heads) else [self.head]

            def loss(self, x, y, domains):
                feats = self.featurizer(x)
                pooled = self.head(feats)
                present = domains.unique()
                total = 0.0
                for d in present:
                    rows = domains == d
                    own = self.domain_heads[int(d)](feats[rows]) if len(self.domain_heads) \
                        else pooled[rows]
                    total = total + (F.cross_entropy(own, y[rows])
                                     + F.cross_entropy(pooled[rows], y[rows])) / 2
                return total / len(present)

            def forward(self, x):
                feats = self.featurizer(x)
                if steering == "pooled" or not len(self.domain_heads):
                    return self.head(feats)
                outs = torch.stack([h(feats) for h in self.heads()])  # (H, N, C)
                ent = entropy(outs)  # (H, N)
                if steering == "batch":  # one head per block: least mean entropy
                    pick = torch.cat([ent[:, i:i + block].mean(1).argmin().repeat(
                        min(block, ent.shape[1] - i)) for i in range(0, ent.shape[1], block)])
                else:
                    pick = ent.argmin(0)  # per sample; ties -> the first head
                return outs[pick, torch.arange(outs.shape[1], device=outs.device)]

        return DRMNetwork(model)


def erm():
    """Empirical risk minimisation on the pooled source domains (DomainBed's ERM)."""
    return ERM()


def drm(steering: Steering = "entropy", steering_batch: Annotated[int, Field(ge=1)] = 64):
    """Domain-specific risk minimisation: a head per source domain, min-entropy steering.

    Each target sample is predicted by its least uncertain head (``steering: entropy``);
    ``batch``: one head per block of ``steering_batch`` samples, as the authors' code;
    ``pooled``: the pooled head alone."""
    return DRM(steering, steering_batch)


def coral(gamma: NonNegative = 1.0):
    """Deep CORAL: cross-entropy plus gamma x the feature mean/covariance distance of domains."""
    return CORAL(gamma)


def irm(weight: NonNegative = 100.0, anneal_steps: Annotated[int, Field(ge=0)] = 500):
    """IRMv1: per-domain risk plus weight x the gradient penalty of a dummy logit scale."""
    return IRM(weight, anneal_steps)


#: The methods this module registers, by suite name.
METHODS = {"erm": erm, "drm": drm, "coral": coral, "irm": irm}
