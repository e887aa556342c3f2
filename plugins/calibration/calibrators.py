"""Post-hoc calibrators, transformed views, distribution shift and reliability diagrams.

Calibrator convention: ``cal = harness.create("calibrators", spec)``;
``cal.fit(logits, y)`` returns ``cal``; ``cal.predict_proba(logits)`` returns an
``(N, C)`` numpy array.  Logits and labels may be numpy arrays or tensors.
Calibrators with ``needs_views = True`` (``correctness_aware``) also take
``view_logits=[...]``: the logits of the same samples under each view from
:func:`make_views`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness import hookimpl


def _np(x, dtype=None):
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _softmax(z):
    from scipy.special import softmax

    return softmax(_np(z, float), axis=1)


def _renormalise(q, fallback):
    """Rows of one-vs-rest outputs summed to 1; an all-zero row keeps ``fallback``."""
    import numpy as np

    s = q.sum(axis=1, keepdims=True)
    return np.where(s > 0, q / np.where(s > 0, s, 1.0), fallback)


class NoCalibration:
    """Softmax of the logits."""

    needs_views = False

    def fit(self, logits, y):
        """Nothing to fit."""
        return self

    def predict_proba(self, logits):
        """``softmax(logits)``."""
        return _softmax(logits)


class ScalingCalibrator:
    """Logit maps fitted by L-BFGS on the NLL (float64): ``temperature`` ``z / T`` (T kept
    positive as exp(log T)), ``vector`` ``z * w + b``, ``matrix`` ``z W + b`` (W from I)."""

    needs_views = False

    def __init__(self, kind: str, max_iter: int = 100, init: float = 1.0):
        self.kind, self.max_iter, self.init = kind, max_iter, init

    def _params(self, c):
        import math

        import torch

        f64 = {"dtype": torch.float64}
        if self.kind == "temperature":
            return [torch.tensor(math.log(self.init), **f64)]
        scale = torch.ones(c, **f64) if self.kind == "vector" else torch.eye(c, **f64)
        return [scale, torch.zeros(c, **f64)]

    def transform(self, z):
        """Calibrated logits (a torch tensor)."""
        if self.kind == "temperature":
            return z / self.params[0].exp()
        if self.kind == "vector":
            return z * self.params[0] + self.params[1]
        return z @ self.params[0] + self.params[1]

    @property
    def temperature(self) -> float:
        """The fitted T (``temperature`` kind)."""
        return float(self.params[0].detach().exp())

    def fit(self, logits, y):
        """Minimise the NLL of ``softmax(transform(logits))`` with L-BFGS."""
        import torch

        z = torch.as_tensor(_np(logits, float))
        t = torch.as_tensor(_np(y)).long()
        self.params = [p.requires_grad_(True) for p in self._params(z.shape[1])]
        opt = torch.optim.LBFGS(self.params, lr=1.0, max_iter=self.max_iter,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(self.transform(z), t)
            loss.backward()
            return loss

        opt.step(closure)
        return self

    def predict_proba(self, logits):
        """Softmax of the transformed logits."""
        import torch

        with torch.no_grad():
            out = self.transform(torch.as_tensor(_np(logits, float)))
        return torch.softmax(out, dim=1).numpy()


class HistogramBinning:
    """One-vs-rest histogram binning, renormalised over classes.

    ``equal_frequency`` bins hold equal numbers of validation samples per class (Zadrozny &
    Elkan's histogram binning); ``equal_width`` bins split [0, 1] evenly."""

    needs_views = False

    def __init__(self, bins: int = 15, strategy: str = "equal_frequency"):
        if strategy not in ("equal_frequency", "equal_width"):
            raise ValueError(f"histogram_binning: strategy must be equal_frequency or "
                             f"equal_width, got {strategy!r}")
        self.bins, self.strategy = bins, strategy

    def _edges(self, p):
        """Inner bin edges for one class's probabilities ``p``."""
        import numpy as np

        if self.strategy == "equal_width":
            return np.linspace(0, 1, self.bins + 1)[1:-1]
        # repeated probabilities (saturated softmax) give repeated quantiles: merge
        # them, so that no bin is empty by construction
        return np.unique(np.quantile(p, np.linspace(0, 1, self.bins + 1)[1:-1]))

    def fit(self, logits, y):
        """Per class and bin, the frequency of that class among the bin's samples."""
        import numpy as np

        p, y = _softmax(logits), _np(y).astype(int)
        self.edges, self.values = [], []
        for k in range(p.shape[1]):
            edges = self._edges(p[:, k])
            n_bins = len(edges) + 1
            which = np.searchsorted(edges, p[:, k], side="left")
            hit = (y == k).astype(float)
            counts = np.bincount(which, minlength=n_bins)
            sums = np.bincount(which, weights=hit, minlength=n_bins)
            bounds = np.concatenate([[0.0], edges, [1.0]])
            centres = (bounds[:-1] + bounds[1:]) / 2
            # empty bins: nothing learnt, keep the bin's own confidence
            self.edges.append(edges)
            self.values.append(np.where(counts > 0, sums / np.maximum(counts, 1), centres))
        return self

    def predict_proba(self, logits):
        """Binned one-vs-rest probabilities, renormalised over classes."""
        import numpy as np

        p = _softmax(logits)
        q = np.stack([self.values[k][np.searchsorted(self.edges[k], p[:, k], side="left")]
                      for k in range(p.shape[1])], axis=1)
        return _renormalise(q, p)


class IsotonicCalibration:
    """One-vs-rest isotonic regression (Zadrozny & Elkan, KDD 2002), renormalised."""

    needs_views = False

    def fit(self, logits, y):
        """Fit one increasing map per class from its softmax probability to 1[y == k]."""
        from sklearn.isotonic import IsotonicRegression

        p, y = _softmax(logits), _np(y).astype(int)
        self.models = [IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
                       .fit(p[:, k], (y == k).astype(float)) for k in range(p.shape[1])]
        return self

    def predict_proba(self, logits):
        """Mapped one-vs-rest probabilities, renormalised over classes."""
        import numpy as np

        p = _softmax(logits)
        q = np.stack([m.predict(p[:, k]) for k, m in enumerate(self.models)], axis=1)
        return _renormalise(q, p)


def correctness_loss(conf, correct):
    """The correctness-aware loss ``sum w (conf - c)^2 / sum w``: ``c`` is 1 for a right
    prediction, ``w`` is ``1 - acc`` for right and ``acc`` for wrong samples (acc the batch
    accuracy), so both groups weigh the same.  A batch all right or all wrong has no such
    weights: every sample then weighs 1."""
    import torch

    acc = correct.mean()
    w = torch.where(correct > 0, 1 - acc, acc)
    if w.sum() <= 0:
        w = torch.ones_like(correct)
    return (w * (conf - correct) ** 2).sum() / w.sum()


class CorrectnessAware:
    """Per-sample temperature ``T(x)`` in [0.1, 10] from an MLP, trained with the
    correctness-aware weighted squared loss (:func:`correctness_loss`).

    Features: the softmax probabilities of the first ``views`` transformed views at the
    original's top-k classes (k = min(C, top_k)); with ``include_original`` the original's
    own probabilities too (then it also works without views, as a learned per-sample
    temperature).  ``clamp="hard"`` is the paper's ``T = clamp(MLP, 0.1, 10)``;
    ``"smooth"`` is ``T = 0.1 * 100 ** sigmoid(MLP)`` (same range, no dead gradient past
    the bounds).  The MLP starts at T = 1 (zero last-layer weights).
    """

    needs_views = True

    def __init__(self, lr: float, epochs: int, hidden: int, top_k: int, batch_size: int,
                 seed: int, views: int | None = 3, include_original: bool = False,
                 clamp: str = "hard"):
        if clamp not in ("hard", "smooth"):
            raise ValueError(f"correctness_aware: clamp must be hard or smooth, got {clamp!r}")
        self.lr, self.epochs, self.hidden = lr, epochs, hidden
        self.top_k, self.batch_size, self.seed = top_k, batch_size, seed
        self.views, self.include_original, self.clamp = views, include_original, clamp

    def _features(self, logits, view_logits):
        import numpy as np

        z = _np(logits, float)
        top = np.argsort(-z, axis=1)[:, :min(z.shape[1], self.top_k)]
        views = list(view_logits or [])[:self.views]
        sources = ([z] if self.include_original else []) + views
        if not sources:
            raise ValueError("correctness_aware: no features: its inputs are the probabilities "
                             "of transformed views (view_logits, which the calibration task "
                             "passes); give view_logits or set include_original=True")
        feats = [np.take_along_axis(_softmax(v), top, axis=1) for v in sources]
        return np.concatenate(feats, axis=1).astype(np.float32)

    def _temperature(self, feats):
        import torch

        out = self.mlp(feats).squeeze(1)
        if self.clamp == "hard":
            return out.clamp(0.1, 10.0)
        return 0.1 * 100.0 ** torch.sigmoid(out)

    def fit(self, logits, y, view_logits=None):
        """Train the temperature MLP with Adam on :func:`correctness_loss`."""
        import torch

        torch_gen = torch.Generator().manual_seed(self.seed)
        feats = torch.as_tensor(self._features(logits, view_logits))
        z = torch.as_tensor(_np(logits, "float32"))
        correct = (z.argmax(1) == torch.as_tensor(_np(y)).long()).float()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(feats.shape[1], self.hidden),
                                           torch.nn.ReLU(), torch.nn.Linear(self.hidden, 1))
        # T = 1 at the start: the logits as given (hard: the output is T itself;
        # smooth: sigmoid(0) is the middle of the log range, T = 1)
        torch.nn.init.zeros_(self.mlp[2].weight)
        torch.nn.init.constant_(self.mlp[2].bias, 1.0 if self.clamp == "hard" else 0.0)
        opt = torch.optim.Adam(self.mlp.parameters(), lr=self.lr)
        for _ in range(self.epochs):
            for idx in torch.randperm(len(z), generator=torch_gen).split(self.batch_size):
                conf = torch.softmax(z[idx] / self._temperature(feats[idx])[:, None], 1).amax(1)
                loss = correctness_loss(conf, correct[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        return self

    def temperatures(self, logits, view_logits=None):
        """The per-sample temperatures T(x) as a numpy array."""
        import torch

        feats = self._features(logits, view_logits)
        if feats.shape[1] != self.mlp[0].in_features:
            raise ValueError("correctness_aware: predict with as many view_logits as in fit")
        with torch.no_grad():
            return self._temperature(torch.as_tensor(feats)).numpy()

    def predict_proba(self, logits, view_logits=None):
        """``softmax(z / T(x))``; argmax is unchanged."""
        return _softmax(_np(logits, float) / self.temperatures(logits, view_logits)[:, None])


#: L-BFGS iterations of a scaling fit.
MaxIter = Annotated[int, Field(ge=1)]


def none():
    """No calibration: softmax of the logits."""
    return NoCalibration()


def temperature(init: Annotated[float, Field(gt=0)] = 1.5, max_iter: MaxIter = 100):
    """Temperature scaling, one T fitted by L-BFGS on the NLL (Guo et al., ICML 2017)."""
    return ScalingCalibrator("temperature", max_iter, init)


def vector_scaling(max_iter: MaxIter = 100):
    """Vector scaling, per-class logit scale and bias (Guo et al., ICML 2017)."""
    return ScalingCalibrator("vector", max_iter)


def matrix_scaling(max_iter: MaxIter = 100):
    """Matrix scaling, affine map of the logits (Guo et al., ICML 2017)."""
    return ScalingCalibrator("matrix", max_iter)


def histogram_binning(bins: Annotated[int, Field(ge=1)] = 15,
                      strategy: Literal["equal_frequency", "equal_width"] = "equal_frequency"):
    """Histogram binning, one-vs-rest, equal-frequency bins by default (Zadrozny & Elkan, ICML 2001).

    ``strategy="equal_width"`` splits [0, 1] into ``bins`` equal intervals
    instead; Zadrozny & Elkan's bins hold equal numbers of samples."""  # noqa: E501
    return HistogramBinning(bins, strategy)


def isotonic():
    """Isotonic regression, one-vs-rest (Zadrozny & Elkan, KDD 2002)."""
    return IsotonicCalibration()


def correctness_aware(lr: Annotated[float, Field(gt=0)] = 1e-4,
                      epochs: Annotated[int, Field(ge=0)] = 10,
                      hidden: Annotated[int, Field(ge=1)] = 5,
                      top_k: Annotated[int, Field(ge=1)] = 4,
                      batch_size: Annotated[int, Field(ge=1)] = 1000,
                      seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0,
                      views: Annotated[int, Field(ge=1)] | None = 3,
                      include_original: bool = False,
                      clamp: Literal["hard", "smooth"] = "hard"):
    """Correctness-aware calibrator: per-sample temperature from transformed views (Liu 2024).

    Defaults are the paper's and its code's: Adam 1e-4, 10 epochs, the
    original's top-4 classes read off 3 views (``views=None``: all given),
    the original's own probabilities not among the inputs, MLP hidden width 5,
    batch 1000, T = clamp(MLP, 0.1, 10).  The earlier harness variant is
    ``hidden=64, top_k=3, batch_size=128, include_original=True,
    clamp="smooth"``.  On held-out sets of ~1000 samples 10 epochs of batch
    1000 are 10 steps and T stays at 1: use a smaller batch there.  Measured on
    the calibration suite's sets (digits, breast_cancer, synthetic4; 3 seeds;
    batch 128, lr 1e-3, 30 epochs), mean test ECE: the paper's model 0.027,
    the former variant 0.139 (it over-softens; uncalibrated 0.046,
    temperature 0.023), while under shift the former is better (severity 3:
    0.159 vs 0.268)."""
    return CorrectnessAware(lr, epochs, hidden, top_k, batch_size, seed, views,
                            include_original, clamp)


def make_views(X, rng):
    """Transformed copies of ``X`` for the correctness-aware calibrator.

    Images ``(N, C, H, W)``: rotation by 90 degrees (180 when not square), greyscale
    (contrast halved when C != 3), brightness jitter plus small noise.  Other shapes
    (tabular ``(N, D)``): Gaussian feature noise (0.1 and 0.3 feature std) and feature
    dropout (10 % and 30 % of the entries set to the feature mean)."""
    import numpy as np

    X = np.asarray(X)
    if X.ndim == 4:
        rot = np.rot90(X, k=1 if X.shape[2] == X.shape[3] else 2, axes=(2, 3))
        if X.shape[1] == 3:
            grey = np.tensordot(np.array([0.299, 0.587, 0.114]), X, axes=([0], [1]))
            grey = np.repeat(grey[:, None], 3, axis=1)
        else:
            mean = X.mean(axis=(1, 2, 3), keepdims=True)
            grey = mean + 0.5 * (X - mean)
        bright = rng.uniform(0.8, 1.2, size=(len(X), 1, 1, 1))
        jitter = X * bright + rng.normal(0, 0.05 * X.std(), size=X.shape)
        views = [rot, grey, jitter]
    else:
        std = X.std(axis=0, keepdims=True)
        mean = np.broadcast_to(X.mean(axis=0, keepdims=True), X.shape)
        views = [X + rng.normal(size=X.shape) * s * std for s in (0.1, 0.3)]
        views += [np.where(rng.random(X.shape) < q, mean, X) for q in (0.1, 0.3)]
    # contiguous copies: rot90 returns negative strides that torch.as_tensor rejects
    return [np.ascontiguousarray(v, dtype=X.dtype) for v in views]


IMAGE_CORRUPTIONS = ("gaussian_noise", "blur", "contrast")


def shift_corruptions(X, severity: int, rng, kind: str | None = None):
    """A distribution-shifted copy of ``X`` at ``severity`` 1..5.

    Images ``(N, C, H, W)``: ``kind`` one of ``IMAGE_CORRUPTIONS`` (None: all three in
    turn): Gaussian noise (CIFAR-10-C sigmas times the data range), blur (3x3 average
    pooling applied ``severity`` times) and contrast (CIFAR-10-C factors).  Other shapes:
    Gaussian feature noise of ``0.2 * severity`` feature standard deviations."""
    import numpy as np
    from scipy.ndimage import uniform_filter

    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be in 1..5, got {severity}")
    X = np.asarray(X)
    if X.ndim != 4:
        return (X + rng.normal(size=X.shape) * 0.2 * severity * X.std(axis=0, keepdims=True)
                ).astype(X.dtype)
    kinds = IMAGE_CORRUPTIONS if kind is None else (kind,)
    out = X.astype(np.float64)
    for k in kinds:
        if k == "gaussian_noise":
            sigma = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1] * float(X.max() - X.min())
            out = out + rng.normal(0, sigma, size=out.shape)
        elif k == "blur":
            for _ in range(severity):
                out = uniform_filter(out, size=(1, 1, 3, 3), mode="nearest")
        elif k == "contrast":
            mean = out.mean(axis=(1, 2, 3), keepdims=True)
            out = (out - mean) * (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1] + mean
        else:
            raise ValueError(f"unknown corruption {k!r}; known: {', '.join(IMAGE_CORRUPTIONS)}")
    return out.astype(X.dtype)


def reliability_diagram(probs, y, path, bins: int = 15, title: str = ""):
    """Write a reliability diagram (accuracy vs confidence per equal-width bin, with the
    gap to the diagonal and the ECE) as a PNG at ``path``."""
    from pathlib import Path

    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: never touches the global backend

    from harness_plugins.classification.metrics import calibration_bins

    count, acc, conf = calibration_bins(y, probs, bins)
    ece = float(np.sum(count / max(count.sum(), 1) * np.abs(acc - conf)))
    centres = (np.arange(bins) + 0.5) / bins
    fig = Figure(figsize=(4, 4), dpi=100)
    ax = fig.add_subplot()
    shown = count > 0
    ax.bar(centres[shown], acc[shown], width=1 / bins, edgecolor="black", label="accuracy")
    ax.bar(centres[shown], (conf - acc)[shown], bottom=acc[shown], width=1 / bins,
           color="tab:red", alpha=0.3, label="gap")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
           title=f"{title} ECE={ece:.3f}".strip())
    ax.legend(loc="upper left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


@hookimpl
def register_calibrators(register):
    """Register the post-hoc calibrators."""
    for factory in (none, temperature, vector_scaling, matrix_scaling, histogram_binning,
                    isotonic, correctness_aware):
        register(factory.__name__, factory)
