"""Does stacking the clients of a round pay?  One round of local SGD for C
clients, trained (a) one after another on one module, as
``harness_plugins.federated.simulation`` does, and (b) all at once with
``torch.func.vmap`` over stacked parameters (``functional_call`` + ``grad``),
in the best case for stacking: equal client sizes, so every client takes the
same number of steps.  Prints seconds per round and the loop/vmap ratio,
measured in one process on the same data.

    HARNESS_TORCH_THREADS=1 python benchmarks/federated_stacking.py
"""

from __future__ import annotations

import os
import time

import torch
from torch.func import functional_call, grad, vmap


def mlp(d_in: int, hidden: int, classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, classes))


def loop_round(model, X, y, epochs: int, bs: int, lr: float, gen) -> list:
    start = {k: v.clone() for k, v in model.state_dict().items()}
    out = []
    for k in range(X.shape[0]):
        model.load_state_dict(start)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(epochs):
            order = torch.randperm(X.shape[1], generator=gen)
            for i in range(0, len(order), bs):
                idx = order[i:i + bs]
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(X[k, idx]), y[k, idx]).backward()
                opt.step()
        out.append([p.detach().clone() for p in model.parameters()])
    return out


def vmap_round(model, X, y, epochs: int, bs: int, lr: float, gen) -> dict:
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach().unsqueeze(0).repeat(X.shape[0], *[1] * p.dim())
              for n, p in model.named_parameters()}

    def loss(p, xb, yb):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (xb,)), yb)

    step = vmap(grad(loss))
    rows = torch.arange(X.shape[0])[:, None]
    for _ in range(epochs):
        order = torch.stack([torch.randperm(X.shape[1], generator=gen) for _ in range(X.shape[0])])
        for i in range(0, order.shape[1], bs):
            idx = order[:, i:i + bs]
            g = step(params, X[rows, idx], y[rows, idx])
            params = {n: params[n] - lr * g[n] for n in names}
    return params


def timed(fn, *args, repeat: int = 3) -> float:
    fn(*args)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    torch.set_num_threads(int(os.environ.get("HARNESS_TORCH_THREADS", "1")))
    torch.manual_seed(0)
    rows = []
    for clients, n, d, hidden in [(10, 54, 64, 64), (100, 54, 64, 64), (10, 54, 64, 512),
                                  (100, 200, 64, 64)]:
        X = torch.randn(clients, n, d)
        y = torch.randint(0, 10, (clients, n))
        model = mlp(d, hidden, 10)
        t_loop = timed(loop_round, model, X, y, 2, 16, 0.05, torch.Generator().manual_seed(1))
        t_vmap = timed(vmap_round, model, X, y, 2, 16, 0.05, torch.Generator().manual_seed(1))
        rows.append((clients, n, hidden, t_loop, t_vmap, t_loop / t_vmap))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("clients  rows/client  hidden  loop s/round  vmap s/round  loop/vmap")
    for c, n, h, a, b, r in rows:
        print(f"{c:7d}  {n:11d}  {h:6d}  {a:12.4f}  {b:12.4f}  {r:9.2f}")


if __name__ == "__main__":
    main()
