"""One regression run: bag the training rows, release the aggregates, fit the
model with the method's aggregate loss, and test on individual responses
(see ``task`` for the steps)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from harness import ConfigError, Diverged, UserError


@dataclass
class Released:
    """What the learner sees of one split: its bags and their released means."""

    bags: object   # (m, k) row indices
    ybar: object   # (m,) released bag means, standardised


def _seed(base: int, stream: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([int(base), stream]).generate_state(1)[0])


def release(y, k: int, agg: dict, centre: float, sd: float, seed: int, stream: int):
    """Bags of ``k`` rows of ``y`` and their (mechanism-released) means."""
    from harness_plugins.regression.aggregate import aggregate_responses, make_bags

    bags = make_bags(len(y), min(k, len(y)), _seed(seed, stream))
    eps = agg["epsilon"]
    means = aggregate_responses(y, bags, epsilon=eps, clip=agg["clip"] * sd if eps else None,
                                centre=centre, seed=_seed(seed, stream + 1))
    return bags, means


def fit_and_predict(ctx, cfg: dict, data) -> dict[str, float]:
    """Train per ``cfg`` on ``data`` (``RegressionData``); return the test metrics."""
    import numpy as np

    from harness.metrics import compute_metrics

    agg, tr = cfg["aggregation"], cfg["training"]
    k = agg["bag_size"]
    n = len(data.y_train)
    if k > n:
        raise UserError(f"aggregation.bag_size {k} exceeds the {n} training rows of dataset "
                        f"{ctx.spec.dataset_label!r}")
    # the mechanism's public response bound: mean +- clip sd of the training responses
    centre, sd = float(np.mean(data.y_train)), float(np.std(data.y_train)) or 1.0
    split_seed = ctx.seeds["split"]
    bags, ybar = release(data.y_train, k, agg, centre, sd, split_seed, 1)
    # standardise on what the learner sees: the released training means
    mu, s = float(np.mean(ybar)), float(np.std(ybar)) or 1.0
    train = Released(bags, (ybar - mu) / s)
    vbags, vbar = release(data.y_val, k, agg, centre, sd, split_seed, 3)
    val = Released(vbags, (vbar - mu) / s)
    loss = ctx.create("aggregate_losses", agg["loss"])
    model_name = cfg["model"]["name"]
    exact = tr["solver"] == "exact" or (tr["solver"] == "auto" and model_name == "linear")
    start = time.perf_counter()
    if exact:
        from harness_plugins.regression.aggregate import solve_linear

        w, b = solve_linear(data.X_train, train.ybar, train.bags, loss.rho, tr["l2"])
        predict = lambda X: np.asarray(X) @ w + b  # noqa: E731
        ctx.log_metrics({"val/loss": float(loss(predict(data.X_val)[val.bags], val.ybar))})
    else:
        predict = _fit_gradient(ctx, cfg, data, train, val, loss)
    train_s = time.perf_counter() - start
    pred = predict(data.X_test) * s + mu
    if not np.all(np.isfinite(pred)):
        raise Diverged("non-finite test predictions")
    out = compute_metrics(ctx.metrics(), {"targets": data.y_test, "predictions": pred})
    out.update(_theory(cfg, data, predict, mu, s, k, agg, sd, loss.rho, exact))
    ctx.log_metrics({"time/train_s": train_s, "data/bags": float(len(bags)),
                     "data/unused_rows": float(n - bags.size)})
    return out


def _theory(cfg, data, predict, mu, s, k, agg, sd, rho, exact) -> dict[str, float]:
    """Population and asymptotic risk on linear-Gaussian data (else nothing)."""
    import numpy as np

    from harness_plugins.regression.theory import interpolating_risk, optimal_bag_size

    theta = data.meta.get("theta")
    if theta is None or not exact:
        return {}
    theta = np.asarray(theta, dtype=np.float64)
    noise2 = float(data.meta["noise"]) ** 2
    # the fit on raw features: f(x) = mu + s (b + w.(x - mean)/scale)
    b0 = float(predict(np.zeros((1, len(theta))))[0])
    w = (np.asarray([float(predict(e[None])[0]) for e in np.eye(len(theta))]) - b0)
    w_raw = s * w / data.scale
    c_raw = mu + s * b0 - float(w_raw @ data.mean)
    out = {"population_risk": noise2 + float(np.sum((w_raw - theta) ** 2)) + c_raw ** 2}
    if cfg["training"]["l2"] == 0:
        eps = agg["epsilon"]
        clip = agg["clip"] * sd if eps else None
        n, d = len(data.y_train), len(theta)
        signal2 = float(data.meta["signal"]) ** 2
        # every aggregate loss is the ordinary one at k = 1
        out["asymptotic_risk"] = interpolating_risk(n, d, k, rho if k > 1 else 0.0, noise2,
                                                    signal2, eps, clip)
        best, _ = optimal_bag_size(n, d, noise2, signal2, eps, clip,
                                   sizes=range(1, min(n, 256) + 1), rho=rho)
        out["optimal_bag_size"] = float(best)
    return out


def _fit_gradient(ctx, cfg, data, train: Released, val: Released, loss):
    """Minibatches of whole bags; keep the epoch of the lowest validation loss."""
    import copy

    import numpy as np
    import torch

    tr = cfg["training"]
    torch.manual_seed(ctx.seeds["init"])
    d = data.X_train.shape[1]
    model = ctx.create("models", cfg["model"], in_shape=(d,), n_classes=1).to(ctx.device)
    build = ctx.create("optimizers", tr["optimizer"])
    if not callable(build) or hasattr(build, "setup"):
        raise ConfigError("training.optimizer", tr["optimizer"], "the regression task takes "
                          "a plain optimizer (sgd, adam, adamw)")
    opt = build(model.parameters())
    dev = ctx.device
    X = torch.as_tensor(data.X_train, dtype=torch.float32, device=dev)
    Xv = torch.as_tensor(data.X_val, dtype=torch.float32, device=dev)
    bags = torch.as_tensor(train.bags, device=dev)
    ybar = torch.as_tensor(train.ybar, dtype=torch.float32, device=dev)
    vbags = torch.as_tensor(val.bags, device=dev)
    vbar = torch.as_tensor(val.ybar, dtype=torch.float32, device=dev)
    m, k = bags.shape
    per_batch = max(1, tr["batch_size"] // k)
    gen = torch.Generator().manual_seed(ctx.seeds["order"])
    best, best_state = float("inf"), copy.deepcopy(model.state_dict())
    ctx.expect_epochs(tr["epochs"])
    for epoch in range(tr["epochs"]):
        model.train()
        total = 0.0
        for idx in torch.randperm(m, generator=gen).split(per_batch):
            rows = bags[idx.to(dev)]
            f = model(X[rows.reshape(-1)]).reshape(rows.shape)
            value = loss(f, ybar[idx.to(dev)])
            if not torch.isfinite(value):
                raise Diverged(f"aggregate loss became {value.item()} at epoch {epoch}")
            opt.zero_grad()
            value.backward()
            opt.step()
            total += value.item() * len(idx)
        model.eval()
        with torch.no_grad():
            fv = model(Xv[vbags.reshape(-1)]).reshape(vbags.shape)
            vloss = float(loss(fv, vbar))
        if vloss < best:
            best, best_state = vloss, copy.deepcopy(model.state_dict())
        ctx.epoch_end(epoch, {"train/loss": total / m, "val/loss": vloss})
    model.load_state_dict(best_state)
    model.eval()

    def predict(Xn):
        with torch.no_grad():
            t = torch.as_tensor(np.asarray(Xn), dtype=torch.float32, device=dev)
            return model(t).reshape(-1).double().cpu().numpy()

    return predict
