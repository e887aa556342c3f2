"""Training a learned denoiser on clean patches plus model-sampled noise.

Patches are cut from the train images only, at positions drawn from the
run's ``order`` seed; each patch gets one of the suite's amplification
ratios and noise from the method's noise model, sampled afresh every epoch
(the noise model is the training data's only noise source, as in ELD and
PNNP).  Validation images are noised once, with a fixed seed, by the same
model: the sensor's real pairs are for testing only.  The epoch with the
best validation PSNR is restored.
"""

from __future__ import annotations

import copy
import math


def sample_patches(images: list, n: int, patch: int, rng):
    """``n`` random ``patch`` x ``patch`` crops of ``images`` -> ``(n, 4, p, p)`` numpy."""
    import numpy as np

    small = [i for i, x in enumerate(images) if min(x.shape[1:]) < patch]
    if small:
        from harness import UserError

        x = images[small[0]]
        raise UserError(f"patch {patch} is larger than a training image "
                        f"({x.shape[1]}x{x.shape[2]} packed); use a smaller patch")
    out = np.empty((n, 4, patch, patch), dtype=np.float32)
    which = rng.integers(len(images), size=n)
    for k, i in enumerate(which):
        img = images[i]
        y = rng.integers(img.shape[1] - patch + 1)
        x = rng.integers(img.shape[2] - patch + 1)
        out[k] = img[:, y:y + patch, x:x + patch]
    return out


def denoise(net, noisy, device: str):
    """Apply ``net`` to one packed image ``(4, h, w)``; returns numpy clipped to [0, 1]."""
    import torch

    with torch.no_grad():
        x = torch.as_tensor(noisy, dtype=torch.float32, device=device)[None]
        return net(x)[0].clamp(0.0, 1.0).cpu().numpy()


def _optimizer(ctx, spec: dict, params):
    from harness import UserError

    build = ctx.create("optimizers", spec)
    if hasattr(build, "step") and hasattr(build, "setup"):
        raise UserError(f"optimizer {spec['name']!r} is a training scheme; the denoising task "
                        "takes plain optimizers (sgd, adam, adamw)")
    return build(params)


def _validation_set(data, model, ratios, white: float, seed: int, device: str,
                    max_side: int | None):
    """(noisy, clean) tensors per validation image (cropped to ``max_side``, the
    sensor's frame) and ratio, noised once."""
    import torch

    from harness_plugins.denoising.noise import low_light

    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for img in data.val:
        clean = torch.as_tensor(img[:, :max_side, :max_side], device=device)[None]
        for r in ratios:
            with torch.no_grad():
                out.append((low_light(clean, model, r, white, gen), clean))
    return out


def _val_scores(net, val) -> tuple[float, float]:
    """Mean L1 and mean PSNR over the validation images."""
    import torch

    l1, psnr = 0.0, 0.0
    net.eval()
    with torch.no_grad():
        for noisy, clean in val:
            out = net(noisy).clamp(0, 1)
            l1 += float((out - clean).abs().mean())
            mse = float(((out - clean) ** 2).mean())
            psnr += 10 * math.log10(1 / max(mse, 1e-12))
    net.train()
    return l1 / len(val), psnr / len(val)


def train_denoiser(ctx, net, model, data, white: float, cfg: dict, max_side: int | None = None):
    """Train ``net`` (see the module docstring); returns it at its best epoch."""
    import numpy as np
    import torch

    from harness import Diverged
    from harness_plugins.denoising.noise import low_light

    tr = cfg["training"]
    dev = ctx.device
    ratios = cfg["ratios"]
    rng = np.random.default_rng(ctx.seeds["order"])
    gen = torch.Generator(device=dev).manual_seed(ctx.seeds["order"])
    val = _validation_set(data, model, ratios, white, ctx.seeds["split"], dev, max_side)
    opt = _optimizer(ctx, tr["optimizer"], net.parameters())
    sched = (ctx.create("schedulers", tr["scheduler"])(opt, tr["epochs"])
             if tr["scheduler"] else None)
    loss_fn = torch.nn.functional.l1_loss if tr["loss"] == "l1" else torch.nn.functional.mse_loss
    best, best_psnr, best_epoch = None, -math.inf, 0
    ctx.expect_epochs(tr["epochs"])
    net.train()
    for epoch in range(tr["epochs"]):
        patches = sample_patches(data.train, tr["patches_per_epoch"], cfg["patch"], rng)
        r = torch.as_tensor(rng.choice(ratios, size=len(patches)), dtype=torch.float32,
                            device=dev)[:, None, None, None]
        total, count = 0.0, 0
        for s in range(0, len(patches), tr["batch_size"]):
            clean = torch.as_tensor(patches[s:s + tr["batch_size"]], device=dev)
            with torch.no_grad():
                noisy = low_light(clean, model, r[s:s + len(clean)], white, gen)
            loss = loss_fn(net(noisy), clean)
            if not torch.isfinite(loss):
                raise Diverged(f"denoiser loss is {float(loss)} at epoch {epoch}")
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(clean)
            count += len(clean)
        if sched is not None:
            sched.step()
        val_l1, val_psnr = _val_scores(net, val)
        ctx.epoch_end(epoch, {"train/loss": total / count, "val/loss": val_l1,
                              "val/psnr": val_psnr})
        if val_psnr > best_psnr:
            best, best_psnr, best_epoch = copy.deepcopy(net.state_dict()), val_psnr, epoch
    net.load_state_dict(best)
    net.eval()
    ctx.log_metrics({"train/best_epoch": best_epoch})
    return net
