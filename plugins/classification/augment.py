"""The image pipeline of a run: uint8 pixels on the device, augmented per training batch.

:class:`ImagePipeline` holds the train split's channel statistics and the
augmentation a source asked for (``meta["augment"]``).  ``train_batch``
turns a ``uint8`` batch ``(B, C, H, W)`` into normalised float32 with, in
this order, a random crop of the image zero-padded by ``crop`` pixels
(per image offsets), a horizontal flip with probability 1/2, and cutout
(DeVries & Taylor 2017: one ``cutout`` x ``cutout`` square per image, centre
uniform over the image, clipped at the border, set to 0 after
normalisation).  ``eval_batch`` only normalises.  Everything is torch on
the batch's device, drawing only from the generator it is given, so a run's
augmentation is its own and the same on every rerun; no DataLoader workers.

Zero padding happens on the pixels (black borders, as torchvision's
``RandomCrop(padding=4)``); a float batch that is already normalised is
accepted too and padded with the normalised value of black, which gives the
same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The keys of a source's ``meta["augment"]``.
AUGMENT_KEYS = ("crop", "flip", "cutout")


@dataclass
class ImagePipeline:
    """Channel statistics (pixel units, 0..255) and augmentation of one prepared split."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop: int = 0
    flip: bool = False
    cutout: int = 0

    @classmethod
    def fit(cls, X_train, augment: dict | None) -> ImagePipeline:
        """Statistics of the uint8 train split ``(N, C, H, W)`` and the source's augmentation."""
        import numpy as np

        axes = (0, 2, 3)
        # float64 sums over chunks: exact enough and no float copy of the whole split
        n = 0
        s = np.zeros(X_train.shape[1])
        s2 = np.zeros(X_train.shape[1])
        for i in range(0, len(X_train), 4096):
            chunk = X_train[i:i + 4096].astype(np.float64)
            s += chunk.sum(axis=axes)
            s2 += (chunk ** 2).sum(axis=axes)
            n += chunk.size // X_train.shape[1]
        mean = s / max(n, 1)
        std = np.sqrt(np.maximum(s2 / max(n, 1) - mean ** 2, 0.0))
        std[~(std > 0)] = 1.0
        aug = dict(augment or {})
        unknown = set(aug) - set(AUGMENT_KEYS)
        if unknown:
            raise ValueError(f"unknown augmentation keys {sorted(unknown)}; known: "
                             f"{', '.join(AUGMENT_KEYS)}")
        return cls(tuple(float(m) for m in mean), tuple(float(v) for v in std),
                   int(aug.get("crop", 0)), bool(aug.get("flip", False)),
                   int(aug.get("cutout", 0)))

    def _stats(self, x):
        import torch

        shape = (1, len(self.mean), 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(shape)
        return mean, std

    def eval_batch(self, x):
        """Normalised float32 of a uint8 batch (a float batch is returned as it is)."""
        if x.is_floating_point():
            return x
        mean, std = self._stats(x)
        return (x.float() - mean) / std

    def numpy_eval(self, X, chunk: int = 4096):
        """:meth:`eval_batch` for a whole numpy split, as float32 numpy (for val/test)."""
        import numpy as np

        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        out = np.empty(X.shape, dtype=np.float32)
        for i in range(0, len(X), chunk):
            out[i:i + chunk] = (X[i:i + chunk].astype(np.float32) - mean) / std
        return out

    def train_batch(self, x, generator):
        """Crop, flip, normalise and cut out one training batch (uint8 or normalised float)."""
        import torch

        mean, std = self._stats(x)
        if x.is_floating_point():
            x, black = x, (-mean / std)
        else:
            x, black = (x.float() - mean) / std, (-mean / std)
        b, c, h, w = x.shape
        dev = x.device
        if self.crop > 0:
            p = self.crop
            padded = black.expand(b, c, h + 2 * p, w + 2 * p).clone()
            padded[:, :, p:p + h, p:p + w] = x
            off = torch.randint(0, 2 * p + 1, (2, b), device=dev, generator=generator)
            rows = (off[0][:, None] + torch.arange(h, device=dev)[None])  # (b, h)
            cols = (off[1][:, None] + torch.arange(w, device=dev)[None])  # (b, w)
            x = padded[torch.arange(b, device=dev)[:, None, None, None],
                       torch.arange(c, device=dev)[None, :, None, None],
                       rows[:, None, :, None], cols[:, None, None, :]]
        if self.flip:
            flip = torch.rand(b, device=dev, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if self.cutout > 0:
            cy = torch.randint(0, h, (b,), device=dev, generator=generator)
            cx = torch.randint(0, w, (b,), device=dev, generator=generator)
            half = self.cutout // 2
            ys = torch.arange(h, device=dev)[None]
            xs = torch.arange(w, device=dev)[None]
            in_y = ((ys >= (cy - half)[:, None]) & (ys < (cy - half + self.cutout)[:, None]))
            in_x = ((xs >= (cx - half)[:, None]) & (xs < (cx - half + self.cutout)[:, None]))
            hole = in_y[:, :, None] & in_x[:, None, :]
            x = x.masked_fill(hole[:, None], 0.0)
        return x.contiguous()

    def describe(self) -> dict:
        """What a run records about its pipeline."""
        return {"crop": self.crop, "flip": self.flip, "cutout": self.cutout,
                "mean": [round(m, 4) for m in self.mean], "std": [round(s, 4) for s in self.std]}
