"""Image training throughput: `harness run` vs a hand-written PyTorch loop.

    python benchmarks/images.py [--n-train 2000] [--epochs 2] [--width 16] [--seeds 1]

Both sides train the same ResNet-18 (CIFAR stem, ``width`` base channels) on
the same 32x32 uint8 images written in CIFAR-10's python-batch format (a
generated set unless ``--cifar DIR`` names a real ``cifar-10-batches-py``
parent), with the same augmentation (pad-4 random crop, flip, channel
normalisation, on the device), SGD (lr 0.05, momentum 0.9, Nesterov, weight
decay 5e-4), batch 128, 10% of train held out and evaluated every epoch.
Each side is one fresh process.  Reported: training images/s over the
training epochs (``time/train_s`` from MLflow for harness, the same span
timed by the loop), the ratio harness / loop, and each process's wall time
and peak memory (max RSS; peak CUDA memory for the loop on a GPU).

``--seeds N`` (N > 1) runs the harness side as one ``--batch`` group of N
seeds (stacked training) and the loop N times in its process.  Each side
runs ``--repeats`` times, alternating which goes first; the table shows the
repetition with the median training time of each side.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LR, MOMENTUM, WD, BATCH, PAD = 0.05, 0.9, 5e-4, 128, 4
SUITE = """\
name: bench_images
task: classification
seeds: {seeds}
device: {device}
datasets:
  - cifar10: {{root: {root}}}
    split: {{val: 0.1}}
model: {{name: resnet18, width: {width}}}
loss: cross_entropy
training:
  epochs: {epochs}
  batch_size: {batch}
  eval_batch_size: 1000
  optimizer: {{name: sgd, lr: {lr}, momentum: {momentum}, nesterov: true, weight_decay: {wd}}}
methods: {{ce: {{}}}}
metrics: [accuracy]
"""


def write_cifar(root: Path, n_train: int, n_test: int) -> None:
    """Generated images (harness's synthetic_images) saved as CIFAR-10 python batches."""
    from harness_plugins.data.images import synthetic_images

    raw = synthetic_images(n_train=n_train, n_test=n_test, size=32, channels=3, noise=50)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    X, y = raw.X.reshape(len(raw.X), -1), raw.y
    tr, te = raw.splits
    for i, part in enumerate(__import__("numpy").array_split(tr, 5), start=1):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": X[part], "labels": y[part].tolist()}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": X[te], "labels": y[te].tolist()}, f)


def hand_loop(root: Path, epochs: int, width: int, seeds: int, device: str) -> dict:
    """The baseline: data read with pickle, split, model, augmentation and SGD
    written out here.  Returns training seconds and images."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from harness_plugins.classification.resnets import resnet18  # the same network

    dev = torch.device(device)
    folder = root / "cifar-10-batches-py"
    parts = [pickle.load(open(folder / f"data_batch_{i}", "rb"), encoding="latin1")
             for i in range(1, 6)]
    X = np.concatenate([p["data"] for p in parts]).reshape(-1, 3, 32, 32)
    y = np.concatenate([p["labels"] for p in parts]).astype(np.int64)
    train_s, images = 0.0, 0
    for seed in range(seeds):
        perm = np.random.default_rng(seed).permutation(len(y))
        n_val = round(0.1 * len(y))
        va, tr = perm[:n_val], perm[n_val:]
        mean = X[tr].mean(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
        std = X[tr].std(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
        Xtr = torch.as_tensor(X[tr], device=dev)  # uint8 on the device
        ytr = torch.as_tensor(y[tr], device=dev)
        Xva = torch.as_tensor(((X[va] - mean) / std).astype(np.float32), device=dev)
        yva = torch.as_tensor(y[va], device=dev)
        m = torch.as_tensor(mean, dtype=torch.float32, device=dev)
        s = torch.as_tensor(std, dtype=torch.float32, device=dev)
        torch.manual_seed(seed)
        model = resnet18((3, 32, 32), 10, width=width).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True,
                              weight_decay=WD)
        gen = torch.Generator().manual_seed(seed)
        agen = torch.Generator(device=dev).manual_seed(seed + 1)
        ar = torch.arange(32, device=dev)
        start = time.perf_counter()
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(ytr), generator=gen).to(dev)
            for i in range(0, len(order), BATCH):
                idx = order[i:i + BATCH]
                b = len(idx)
                # black borders: pad with the normalised value of pixel 0
                xb = (-m / s).expand(b, 3, 32 + 2 * PAD, 32 + 2 * PAD).clone()
                xb[:, :, PAD:PAD + 32, PAD:PAD + 32] = (Xtr[idx].float() - m) / s
                off = torch.randint(0, 2 * PAD + 1, (2, b), device=dev, generator=agen)
                rows = (off[0][:, None] + ar)[:, None, :, None]
                cols = (off[1][:, None] + ar)[:, None, None, :]
                xb = xb[torch.arange(b, device=dev)[:, None, None, None],
                        torch.arange(3, device=dev)[None, :, None, None], rows, cols]
                flip = torch.rand(b, device=dev, generator=agen) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(xb), ytr[idx])
                loss.backward()
                opt.step()
                float(loss)  # the harness loop reads every step's loss
                images += b
            model.eval()
            with torch.no_grad():
                logits = torch.cat([model(Xva[i:i + 1000]) for i in range(0, len(Xva), 1000)])
                float(F.cross_entropy(logits, yva))
                float((logits.argmax(1) == yva).float().mean())
        if dev.type == "cuda":
            torch.cuda.synchronize()
        train_s += time.perf_counter() - start
    out = {"train_s": train_s, "images": images}
    if dev.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_harness(root: Path, work: Path, epochs: int, width: int, seeds: int,
                device: str) -> dict:
    """`harness run` in a fresh process; training seconds from its MLflow store."""
    suite = work / "bench_images.yaml"
    suite.write_text(SUITE.format(seeds=seeds, device=device, root=root, width=width,
                                  epochs=epochs, batch=BATCH, lr=LR, momentum=MOMENTUM, wd=WD))
    # a new store per call: MLflow keeps a store's engine per URI in this process
    db = work / f"bench{len(list(work.glob('bench*.db')))}.db"
    cmd = ["harness", "run", str(suite), "--tracking-uri", f"sqlite:///{db}"]
    if seeds > 1:
        cmd.append("--batch")
    # a wrapper process whose only child is harness: its children's max RSS is harness's
    wrapper = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(json.dumps({'rc': p.returncode, 'out': p.stdout[-2000:], "
               "'err': p.stderr[-2000:], 'wall_s': time.perf_counter() - t, 'max_rss_mib': "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["rc"] != 0:
        sys.exit(f"harness run failed:\n{out['out']}\n{out['err']}")
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{db}")
    runs = mlflow.search_runs(experiment_names=["bench_images"])
    # a batch group's runs each log the group's training time
    train_s = runs["metrics.time/train_s"]
    out["train_s"] = float(train_s.max() if seeds > 1 else train_s.sum())
    return out


def child(args) -> None:
    """One side in this (fresh) process; prints a JSON line."""
    out = hand_loop(Path(args.root), args.epochs, args.width, args.seeds, args.device)
    out["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _median(rows: list[dict]) -> dict:
    """The row with the median ``train_s`` (the lower middle one for an even count)."""
    ordered = sorted(rows, key=lambda r: r["train_s"])
    return ordered[(len(ordered) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating repetitions; the medians are compared")
    parser.add_argument("--cifar", help="a folder holding cifar-10-batches-py/ (else generated)")
    parser.add_argument("--hand", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hand:
        child(args)
        return
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = Path(args.cifar) if args.cifar else work / "data"
        if not args.cifar:
            write_cifar(root, args.n_train, max(200, args.n_train // 5))
        load = os.getloadavg()[0]
        loops, hs = [], []
        for rep in range(args.repeats):
            # alternate which side goes first: a shared machine's load drifts
            for side in (("loop", "harness") if rep % 2 == 0 else ("harness", "loop")):
                if side == "harness":
                    hs.append(run_harness(root, work, args.epochs, args.width, args.seeds,
                                          device))
                    continue
                start = time.perf_counter()
                proc = subprocess.run([sys.executable, __file__, "--hand", "--root",
                                       str(root), "--epochs", str(args.epochs), "--width",
                                       str(args.width), "--seeds", str(args.seeds),
                                       "--device", device], capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.exit(f"hand loop failed:\n{proc.stderr[-3000:]}")
                loops.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                loops[-1]["wall_s"] = time.perf_counter() - start  # start-up too, as harness
        load_after = os.getloadavg()[0]
    loop, h = _median(loops), _median(hs)
    images = loop["images"]  # both sides see the same train split size and epochs
    loop_ips = images / loop["train_s"]
    h_ips = images / h["train_s"]
    if args.repeats > 1:
        print("train s per repeat: hand loop "
              + ", ".join(f"{r['train_s']:.2f}" for r in loops) + "; harness "
              + ", ".join(f"{r['train_s']:.2f}" for r in hs))
    print(f"ResNet-18 width {args.width}, {args.n_train if not args.cifar else 'CIFAR-10'} "
          f"train images (10% held out), {args.epochs} epochs, batch {BATCH}, "
          f"{args.seeds} seed(s), device {device}; load average {load:.1f} -> {load_after:.1f}")
    print(f"{'side':<12}{'train images/s':>16}{'train s':>10}{'wall s':>9}{'peak RSS MiB':>14}")
    print(f"{'hand loop':<12}{loop_ips:>16.1f}{loop['train_s']:>10.2f}{loop['wall_s']:>9.1f}"
          f"{loop['max_rss_mib']:>14.0f}")
    mode = "harness" + (" --batch" if args.seeds > 1 else "")
    print(f"{mode:<12}{h_ips:>16.1f}{h['train_s']:>10.2f}{h['wall_s']:>9.1f}"
          f"{h['max_rss_mib']:>14.0f}")
    print(f"ratio harness / hand loop: {h_ips / loop_ips:.3f}")
    if "peak_cuda_mib" in loop:
        print(f"hand loop peak CUDA memory: {loop['peak_cuda_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
