"""Speed options of a training run: mixed precision, channels-last, torch.compile.

``training: {amp: bf16 | fp16, channels_last: true, compile: true}`` (off by
default; recorded with the run's params like every training key):

- ``amp: bf16`` runs each training step's forward pass under
  ``torch.autocast`` in bfloat16 (CUDA, or CPUs with bf16 support); its
  exponent range is float32's, so gradients need no scaling;
- ``amp: fp16`` (CUDA only) autocasts to float16 and scales the loss with a
  ``torch.amp.GradScaler`` (skipped steps on inf/NaN gradients, the scale
  adapted), which a plain optimizer step allows; training schemes that take
  several passes per step (SAM, SAF, ...) have no scaled form here, so fp16
  with one is refused, pointing to bf16;
- ``channels_last`` stores the model's weights and every training batch
  NHWC, the layout cuDNN's tensor-core convolutions prefer;
- ``compile`` wraps the model in ``torch.compile`` (the first steps compile).

Evaluation stays float32.  The options apply to a run trained alone; batch
mode (stacked runs) trains such runs alone.
"""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError

#: training keys of this module and their off values (left out of a run's
#: config when off, so adding the options moved no existing run key)
OFF = {"amp": "none", "channels_last": False, "compile": False}


def options(training: dict) -> dict:
    """The run's speed options, ``OFF`` values where unset."""
    return {k: training.get(k, v) for k, v in OFF.items()}


def is_off(training: dict) -> bool:
    """Whether the run uses none of the options."""
    return options(training) == OFF


class Precision:
    """Applies a run's options to its model and training steps."""

    def __init__(self, training: dict, device):
        import torch

        opts = options(training)
        self.amp, self.channels_last, self.compile = (opts["amp"], opts["channels_last"],
                                                      opts["compile"])
        self.device = torch.device(device)
        if self.amp == "fp16" and self.device.type != "cuda":
            raise ConfigError("training.amp", "fp16", f"float16 training needs CUDA (this run "
                              f"is on {self.device.type}); use bf16")
        self.scaler = (torch.amp.GradScaler("cuda") if self.amp == "fp16" else None)

    def model(self, model):
        """The model in the run's memory format, compiled when asked."""
        import torch

        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.compile:
            model = torch.compile(model)
        return model

    def check_scheme(self, scheme) -> None:
        """fp16's loss scaling exists for the plain optimizer step only."""
        from harness_plugins.classification.optimizers import PlainScheme

        if self.scaler is not None and type(scheme) is not PlainScheme:
            raise ConfigError("training.amp", "fp16", f"the training scheme "
                              f"{type(scheme).__name__} has no loss-scaled step; use bf16")

    def batch(self, x):
        """A training batch in the run's memory format."""
        import torch

        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def step(self, scheme, batch: dict[str, Any]) -> float:
        """One ``scheme.step`` under autocast (and the scaled step for fp16)."""
        import torch

        if self.amp == "none":
            return scheme.step(batch)
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype):
            if self.scaler is None:
                return scheme.step(batch)
            scheme.epoch = batch.get("epoch", 0)
            scheme.optimizer.zero_grad(set_to_none=True)
            loss = scheme.loss(batch)
        self.scaler.scale(loss).backward()
        self.scaler.step(scheme.optimizer)
        self.scaler.update()
        return loss.item()
