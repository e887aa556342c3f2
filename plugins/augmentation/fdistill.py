"""f-distill: a one-step generator distilled from a fitted diffusion model
(Xu, Nie & Vahdat, "One-step diffusion models with f-divergence distribution
matching", 2025), the ``sampler: distilled`` of the ``ddpm`` augmenter.

The student ``G(z, y)`` maps Gaussian noise to a row in one network call.
Its gradient for an f-divergence ``D_f(p || q)`` between the teacher's
distribution ``p`` and the student's ``q``, taken on noised samples
``x_t = sqrt(ab_t) G(z) + sqrt(1 - ab_t) eps``, is the score difference
``s_q(x_t) - s_p(x_t)`` times a weight ``h(r)`` of the density ratio
``r = p_t / q_t`` (the paper's result): ``h = 1`` for reverse KL, which is
variational score distillation (VSD, as in DMD), ``h = r`` for forward KL and
``h = r / (1 + r)`` for Jensen-Shannon (``r^2 f''(r)`` up to a constant).
Pieces, as in the paper's setting and NVIDIA's public FastGen code (read to
match the loss; none of it is copied):

- the teacher's score is its denoiser; the student's score ``s_q`` is a
  second denoiser (the *fake score*, initialised from the teacher) trained by
  denoising score matching on the student's samples, alternating with the
  student (``critic_steps`` fake-score updates per student update);
- scores enter through x0-predictions (Tweedie: ``x0 = (x_t + (1 - ab_t)
  s(x_t)) / sqrt(ab_t)``, so ``fake_x0 - teacher_x0`` is ``s_q - s_p`` up to a
  positive factor per step), and each sample's step is divided by its mean
  absolute distance to the teacher's x0-prediction (DMD's normalisation);
- the ratio ``r`` comes from a discriminator on noised rows (train rows vs
  student rows, logistic loss): ``r = exp(logit)``, the logit clamped to
  [-10, 10] and ``r`` to [``ratio_min``, ``ratio_max``]; ``h`` is divided by
  its batch mean, so the divergences differ in how they share the step
  between samples, not in its size;
- the student starts as the teacher's one-step x0-prediction from the noise
  level whose ``alpha_bar`` is nearest 0.1 (a blurred sample the
  distillation sharpens); ``gan_weight`` > 0 adds the discriminator's
  non-saturating generator loss, as the paper does at scale.

What could not be checked here: the paper's exact ratio clamps, its
per-noise-level ratio normalisation and its GAN weight (FastGen's defaults
are not in the paper's abstract); these are parameters.
"""

from __future__ import annotations

from typing import Literal

#: The f-divergences and their weights h(r) (up to a constant factor).
Divergence = Literal["reverse_kl", "forward_kl", "js"]
DIVERGENCES: tuple[str, ...] = ("reverse_kl", "forward_kl", "js")


def weight_h(divergence: str, r):
    """``h(r)`` of an f-divergence, divided by its batch mean (reverse KL: 1)."""
    import torch

    if divergence == "reverse_kl":
        return torch.ones_like(r)
    if divergence == "forward_kl":
        h = r
    elif divergence == "js":
        h = r / (1 + r)
    else:
        raise ValueError(f"unknown divergence {divergence!r}; divergences: "
                         f"{', '.join(DIVERGENCES)}")
    return h / (h.mean() + 1e-12)


def x0_prediction(net, x_t, t, y, alpha_bar):
    """Tweedie's x0 from a noise-predicting denoiser ``net(x_t, t, y)``."""
    ab = alpha_bar[t][:, None]
    return (x_t - (1 - ab).sqrt() * net(x_t, t, y)) / ab.sqrt()


def distillation_loss(x, teacher_x0, fake_x0, h):
    """The student's surrogate loss: its gradient in ``x`` is
    ``h * (fake_x0 - teacher_x0) / (mean |x - teacher_x0| per sample)``
    divided by the number of entries (VSD when ``h`` is 1)."""
    import torch

    with torch.no_grad():
        scale = 1.0 / ((x - teacher_x0).abs().mean(1, keepdim=True) + 1e-6)
        step = (fake_x0 - teacher_x0) * scale * h[:, None]
        target = x - step
    return 0.5 * ((x - target) ** 2).mean()


def _generator(teacher, alpha_bar, t_init: int):
    """The student: the teacher's x0-prediction at ``t_init``, as a module of
    its own (a copy of the teacher's weights that the distillation trains)."""
    import copy

    import torch.nn as nn

    class OneStep(nn.Module):
        """G(z, y): one denoiser call from noise to a row."""

        def __init__(self):
            super().__init__()
            self.net = copy.deepcopy(teacher)
            self.register_buffer("ab", alpha_bar)
            self.t_init = t_init

        def forward(self, z, y):
            t = y.new_full((len(z),), self.t_init)
            return x0_prediction(self.net, z, t, y, self.ab)

    return OneStep()


def _discriminator(d: int, n_classes: int, hidden: int):
    import torch
    import torch.nn as nn

    class Discriminator(nn.Module):
        """logit of "train row" vs "student row" for a noised row, its noise
        level (``1 - alpha_bar``) and class."""

        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(d + 1, hidden)
            self.label = nn.Embedding(n_classes, hidden)
            self.body = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                      nn.Linear(hidden, 1))

        def forward(self, x_t, level, y):
            return self.body(self.inp(torch.cat([x_t, level[:, None]], 1))
                             + self.label(y))[:, 0]

    return Discriminator()


def distill(teacher, alpha_bar, X, y, gen, divergence: str = "js",
            steps: int = 1000, lr: float = 1e-4, critic_steps: int = 2, batch_size: int = 128,
            gan_weight: float = 0.0, ratio_min: float = 0.01, ratio_max: float = 100.0,
            log=None):
    """Train a one-step student of ``teacher`` (a noise predictor on rows
    ``X`` of classes ``y``, schedule ``alpha_bar``); returns the student
    module ``G(z, y)``.  ``gen`` is the torch Generator that draws noise,
    steps and batches; ``log(step, values)`` receives the losses now and then."""
    import copy

    import torch
    import torch.nn.functional as F

    dev = X.device
    n_steps, d = len(alpha_bar), X.shape[1]
    n_classes = int(y.max()) + 1
    t_init = int((alpha_bar - 0.1).abs().argmin())
    student = _generator(teacher, alpha_bar, t_init).to(dev)
    fake = copy.deepcopy(teacher).to(dev).train()
    teacher = teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    needs_ratio = divergence != "reverse_kl" or gan_weight > 0
    disc = _discriminator(d, n_classes, 128).to(dev) if needs_ratio else None
    opt_g = torch.optim.Adam(student.parameters(), lr=lr, betas=(0.0, 0.99))
    critics = list(fake.parameters()) + (list(disc.parameters()) if disc else [])
    opt_c = torch.optim.Adam(critics, lr=lr, betas=(0.0, 0.99))
    bs = min(batch_size, len(X))
    # DMD's range of noise levels: the ends carry little signal
    t_lo, t_hi = int(0.02 * n_steps), max(int(0.98 * n_steps), int(0.02 * n_steps) + 1)

    def draw():
        idx = torch.randint(len(X), (bs,), generator=gen).to(dev)
        z = torch.randn(bs, d, generator=gen).to(dev)
        t = torch.randint(t_lo, t_hi, (bs,), generator=gen).to(dev)
        eps = torch.randn(bs, d, generator=gen).to(dev)
        return idx, z, t, eps

    def noised(x, t, eps):
        ab = alpha_bar[t][:, None]
        return ab.sqrt() * x + (1 - ab).sqrt() * eps

    for step in range(steps):
        for _ in range(critic_steps):
            idx, z, t, eps = draw()
            labels = y[idx]
            with torch.no_grad():
                x = student(z, labels)
            x_t = noised(x, t, eps)
            loss_c = ((fake(x_t, t, labels) - eps) ** 2).mean()
            if disc is not None:
                real_t = noised(X[idx], t, eps)
                loss_c = loss_c + (F.softplus(-disc(real_t, 1 - alpha_bar[t], labels)).mean()
                                   + F.softplus(disc(x_t, 1 - alpha_bar[t], labels)).mean())
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
        idx, z, t, eps = draw()
        labels = y[idx]
        x = student(z, labels)
        x_t = noised(x, t, eps)
        with torch.no_grad():
            teacher_x0 = x0_prediction(teacher, x_t, t, labels, alpha_bar)
            fake_x0 = x0_prediction(fake, x_t, t, labels, alpha_bar)
        if disc is not None:
            logit = disc(x_t, 1 - alpha_bar[t], labels)
            r = logit.detach().clamp(-10, 10).exp().clamp(ratio_min, ratio_max)
        else:
            logit, r = None, torch.ones(bs, device=dev)
        loss_g = distillation_loss(x, teacher_x0, fake_x0, weight_h(divergence, r))
        if gan_weight > 0:
            loss_g = loss_g + gan_weight * F.softplus(-logit).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if log is not None and (step + 1) % max(1, steps // 10) == 0:
            log(step + 1, {"student": float(loss_g), "critic": float(loss_c)})
    return student.eval()
