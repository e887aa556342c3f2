"""``cvae``: a conditional variational autoencoder (Sohn et al. 2015) in torch.

Encoder ``q(z | x, y)`` and decoder ``p(x | z, y)`` are MLPs on flattened
rows with the class as a one-hot input; the decoder is Gaussian with a
learned per-feature standard deviation, so sampling draws ``z ~ N(0, I)``
and then ``x ~ N(decoder(z, y), sigma^2)`` (the model's own likelihood, not
just its mean).  Training runs a fixed number of Adam steps on minibatches,
so its cost does not grow with the train split.  Inputs are the task's
standardised features, so unit-scale outputs need no rescaling.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import hookimpl
from harness_plugins.augmentation.augmenters import (
    Count,
    LikelihoodAugmenter,
    Mode,
    NoiseStd,
    Rate,
    Ratio,
    draw_seed,
)


def _mlp(sizes: list[int]):
    import torch.nn as nn

    layers: list = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


class CVAE(LikelihoodAugmenter):
    """Conditional VAE generator; see the module docstring."""

    name = "cvae"

    def __init__(self, ratio: float = 1.0, mode: Mode = "fixed", instance_noise: float = 0.0,
                 latent: int = 8, hidden: int = 128, train_steps: int = 2000,
                 batch_size: int = 64, lr: float = 1e-3, beta: float = 1.0):
        super().__init__(ratio, mode, instance_noise)
        if latent < 1 or hidden < 1 or train_steps < 1 or batch_size < 1:
            raise ValueError("cvae: latent, hidden, train_steps and batch_size must be >= 1")
        self.latent, self.hidden, self.train_steps = int(latent), int(hidden), int(train_steps)
        self.batch_size, self.lr, self.beta = int(batch_size), float(lr), float(beta)

    def _fit(self, X, y, rng) -> None:
        import torch
        import torch.nn.functional as F

        dev = torch.device(self.device)
        self.n_classes_ = int(y.max()) + 1
        d, k, h, z = X.shape[1], self.n_classes_, self.hidden, self.latent
        # fork_rng: building and training must not move the run's global torch seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(draw_seed(rng))
            self.encoder = _mlp([d + k, h, h, 2 * z]).to(dev)
            self.decoder = _mlp([z + k, h, h, d]).to(dev)
            self.log_sigma = torch.zeros(d, device=dev, requires_grad=True)
            params = [*self.encoder.parameters(), *self.decoder.parameters(), self.log_sigma]
            opt = torch.optim.Adam(params, lr=self.lr)
            Xt = torch.as_tensor(X, dtype=torch.float32, device=dev)
            Yt = F.one_hot(torch.as_tensor(y, device=dev), k).float()
            gen = torch.Generator().manual_seed(draw_seed(rng))
            bs = min(self.batch_size, len(Xt))
            for _ in range(self.train_steps):
                idx = torch.randint(len(Xt), (bs,), generator=gen).to(dev)
                x, c = Xt[idx], Yt[idx]
                mu, logvar = self.encoder(torch.cat([x, c], 1)).chunk(2, 1)
                zs = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
                recon = self.decoder(torch.cat([zs, c], 1))
                # Gaussian negative log-likelihood per row (constant dropped)
                nll = (0.5 * ((x - recon) / self.log_sigma.exp()) ** 2
                       + self.log_sigma).sum(1)
                kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
                loss = (nll + self.beta * kl).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.encoder.eval()
        self.decoder.eval()

    def _sample(self, n_per_class, rng):
        import numpy as np
        import torch
        import torch.nn.functional as F

        dev = torch.device(self.device)
        labels = np.concatenate([np.full(n, c) for c, n in n_per_class.items()])
        gen = torch.Generator().manual_seed(draw_seed(rng))
        c = F.one_hot(torch.as_tensor(labels, device=dev), self.n_classes_).float()
        z = torch.randn(len(labels), self.latent, generator=gen).to(dev)
        eps = torch.randn(len(labels), self.log_sigma.numel(), generator=gen).to(dev)
        with torch.no_grad():
            x = self.decoder(torch.cat([z, c], 1)) + eps * self.log_sigma.exp()
        return x.cpu().numpy(), labels


def cvae(ratio: Ratio = 1.0, mode: Mode = "fixed", instance_noise: NoiseStd = 0.0,
         latent: Count = 8, hidden: Count = 128, train_steps: Count = 2000, batch_size: Count = 64,
         lr: Rate = 1e-3, beta: Annotated[float, Field(ge=0)] = 1.0) -> CVAE:
    """Conditional VAE (Sohn et al. 2015): MLP encoder/decoder, Gaussian decoder, torch."""
    return CVAE(ratio, mode, instance_noise, latent, hidden, train_steps, batch_size, lr, beta)


@hookimpl
def register_augmenters(register):
    """The conditional VAE augmenter."""
    register("cvae", cvae)
