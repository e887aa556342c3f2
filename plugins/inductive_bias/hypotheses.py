"""Hypothesis classes: many predictors drawn at once, each trained on the budget.

A class is sampled as in the paper's neural-network experiments: each
hypothesis is a network with its own random initialisation and its own order
of the training rows, trained with Adam on the mean squared error against
one-hot targets for the budget's epochs; its test loss is that error on the
test rows.  The ``n`` hypotheses of a run train together as one batched
network (weights with a leading hypothesis axis, ``torch.bmm`` and grouped
convolutions): the loss is the sum of the hypotheses' losses, so each one's
gradient is its own, and Adam's update is element-wise, so each trains
exactly as it would alone.

``random_features`` keeps the random hidden layer and fits only a linear
readout, in closed form (ridge least squares): the random-feature hypotheses
of kernel-style analyses.  ``teacher`` is the source's own labelling function
(every draw the same): a class that holds only a well-generalising
hypothesis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from harness import FromData, UserError

#: Hypotheses evaluated at once on the test rows (bounds the activations' memory).
EVAL_CHUNK = 64


@dataclass
class Job:
    """What a class's ``sample`` gets (see ``register_hypothesis_classes``)."""

    X_train: Any
    Y_train: Any
    X_test: Any
    Y_test: Any
    n: int
    training: dict
    generator: Any
    truth: dict | None = None
    log: Any = None


def _uniform(shape, fan_in: int, generator):
    """PyTorch's default Linear/Conv initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    import torch

    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


class BatchedNet:
    """``n`` networks as one: an optional grouped conv layer, then dense layers."""

    def __init__(self, n: int, in_shape: tuple, widths: list[int], n_out: int, generator,
                 channels: int = 0):
        self.n, self.in_shape, self.channels = n, tuple(in_shape), channels
        self.params: list = []
        if channels:
            c = in_shape[0]
            self.conv_w = _uniform((n * channels, c, 3, 3), c * 9, generator).requires_grad_()
            self.conv_b = _uniform((n * channels,), c * 9, generator).requires_grad_()
            self.params += [self.conv_w, self.conv_b]
            width = channels * (in_shape[1] // 2) * (in_shape[2] // 2)
        else:
            width = math.prod(in_shape)
        self.layers = []
        for out in [*widths, n_out]:
            w = _uniform((n, width, out), width, generator).requires_grad_()
            b = _uniform((n, 1, out), width, generator).requires_grad_()
            self.layers.append((w, b))
            self.params += [w, b]
            width = out

    def features(self, x):
        """``x``: ``(n, b, *in_shape)`` -> the last hidden layer ``(n, b, width)``."""
        import torch
        import torch.nn.functional as F

        n, b = x.shape[:2]
        if self.channels:
            c, h, w = self.in_shape
            x = x.permute(1, 0, 2, 3, 4).reshape(b, n * c, h, w)
            x = F.max_pool2d(torch.relu(F.conv2d(x, self.conv_w, self.conv_b, padding=1,
                                                 groups=n)), 2)
            x = x.reshape(b, n, -1).permute(1, 0, 2)
        else:
            x = x.reshape(n, b, -1)
        for w, bias in self.layers[:-1]:
            x = torch.relu(torch.baddbmm(bias, x, w))
        return x

    def __call__(self, x):
        import torch

        w, bias = self.layers[-1]
        return torch.baddbmm(bias, self.features(x), w)


def train_batched(net: BatchedNet, job: Job) -> None:
    """Adam on each hypothesis's MSE, each with its own order of the train rows."""
    import torch

    tr = job.training
    X, Y, n = job.X_train, job.Y_train, net.n
    bs = min(tr["batch_size"], len(X))
    opt = torch.optim.Adam(net.params, lr=tr["lr"])
    for epoch in range(1, tr["epochs"] + 1):
        order = torch.argsort(torch.rand(n, len(X), generator=job.generator), 1)
        total = 0.0
        for start in range(0, len(X), bs):
            idx = order[:, start:start + bs]
            out = net(X[idx])
            # sum over hypotheses of each one's mean: every gradient is its own
            loss = ((out - Y[idx]) ** 2).mean((1, 2)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.shape[1]
        if job.log is not None:
            job.log({"train/loss": total / (len(X) * n)}, epoch)


def test_losses(net: BatchedNet, job: Job):
    """Each hypothesis's test MSE (numpy ``(n,)``)."""
    import numpy as np
    import torch

    with torch.no_grad():
        out = net(job.X_test.unsqueeze(0).expand(net.n, *job.X_test.shape))
        return ((out - job.Y_test) ** 2).mean((1, 2)).double().numpy().astype(np.float64)


class Trained:
    """A class of networks trained on the budget (linear, mlp, cnn)."""

    def __init__(self, in_shape, n_outputs, widths, channels=0):
        self.in_shape, self.n_outputs = tuple(in_shape), n_outputs
        self.widths, self.channels = list(widths), channels

    def check(self, in_shape, truth) -> None:
        if self.channels and len(in_shape) != 3:
            raise UserError(f"the cnn class needs image rows (C, H, W); these rows have shape "
                            f"{tuple(in_shape)} (use an image source, e.g. sklearn digits "
                            f"as_image: true)")

    def sample(self, job: Job):
        import numpy as np

        losses = []
        for start in range(0, job.n, EVAL_CHUNK):
            net = BatchedNet(min(EVAL_CHUNK, job.n - start), self.in_shape, self.widths,
                             self.n_outputs, job.generator, self.channels)
            train_batched(net, job if start == 0 else _quiet(job))
            losses.append(test_losses(net, job))
        return np.concatenate(losses)


def _quiet(job: Job) -> Job:
    """The job without its per-epoch log (only the first chunk draws the curve)."""
    from dataclasses import replace

    return replace(job, log=None)


class RandomFeatures:
    """Random ReLU features of the given widths, a ridge least-squares readout."""

    def __init__(self, in_shape, n_outputs, widths, ridge):
        self.in_shape, self.n_outputs, self.widths, self.ridge = (tuple(in_shape), n_outputs,
                                                                  list(widths), ridge)

    def sample(self, job: Job):
        import numpy as np
        import torch

        losses = []
        for start in range(0, job.n, EVAL_CHUNK):
            k = min(EVAL_CHUNK, job.n - start)
            net = BatchedNet(k, self.in_shape, self.widths, self.n_outputs, job.generator)
            with torch.no_grad():
                phi = net.features(job.X_train.unsqueeze(0).expand(k, *job.X_train.shape))
                phi = torch.cat([phi, torch.ones(*phi.shape[:2], 1)], 2).double()
                gram = phi.transpose(1, 2) @ phi
                eye = torch.eye(gram.shape[1], dtype=gram.dtype)
                rhs = phi.transpose(1, 2) @ job.Y_train.double()
                readout = torch.linalg.solve(gram + self.ridge * len(job.X_train) * eye, rhs)
                test = net.features(job.X_test.unsqueeze(0).expand(k, *job.X_test.shape))
                test = torch.cat([test, torch.ones(*test.shape[:2], 1)], 2).double()
                out = test @ readout
                losses.append(((out - job.Y_test.double()) ** 2).mean((1, 2)).numpy())
        return np.concatenate(losses).astype(np.float64)


class Teacher:
    """The source's linear teacher: one-hot of argmax(x W*), the same every draw."""

    def check(self, in_shape, truth) -> None:
        if not truth or truth.get("kind") != "linear_teacher":
            raise UserError("the teacher class needs a source with a linear teacher "
                            "(teacher_task)")

    def sample(self, job: Job):
        import numpy as np
        import torch

        W = torch.as_tensor(np.asarray(job.truth["weights"]), dtype=job.X_test.dtype)
        pred = torch.nn.functional.one_hot(torch.argmax(job.X_test.flatten(1) @ W, 1),
                                           W.shape[1]).to(job.Y_test.dtype)
        loss = float(((pred - job.Y_test) ** 2).mean())
        return np.full(job.n, loss)


Width = Annotated[int, Field(ge=1, le=65536)]


def linear(in_shape: Annotated[tuple, FromData], n_outputs: Annotated[int, FromData]):
    """Linear maps from a random initialisation, trained with Adam for the budget."""
    return Trained(in_shape, n_outputs, [])


def mlp(in_shape: Annotated[tuple, FromData], n_outputs: Annotated[int, FromData],
        width: Width = 64, depth: Annotated[int, Field(ge=1, le=16)] = 1):
    """ReLU MLPs (depth hidden layers of width) from a random init, trained for the budget."""
    return Trained(in_shape, n_outputs, [width] * depth)


def cnn(in_shape: Annotated[tuple, FromData], n_outputs: Annotated[int, FromData],
        channels: Annotated[int, Field(ge=1, le=1024)] = 8, width: Width = 64):
    """One 3x3 conv layer (ReLU, 2x2 max-pool), a ReLU layer of width, a linear output; images."""
    return Trained(in_shape, n_outputs, [width], channels=channels)


def random_features(in_shape: Annotated[tuple, FromData], n_outputs: Annotated[int, FromData],
                    width: Width = 256, depth: Annotated[int, Field(ge=1, le=16)] = 1,
                    ridge: Annotated[float, Field(gt=0, le=1e6)] = 1e-3):
    """Random ReLU features (frozen init), readout fit by ridge least squares (closed form)."""
    return RandomFeatures(in_shape, n_outputs, [width] * depth, ridge)


def teacher(in_shape: Annotated[tuple, FromData], n_outputs: Annotated[int, FromData]):
    """The source's own linear teacher (teacher_task): a class of well-generalising hypotheses."""
    return Teacher()
