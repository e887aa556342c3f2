"""Built-in models: an MLP for tabular data and a small CNN for images."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness import FromData, hookimpl

#: The data-derived parameters every classification model takes.
InShape = Annotated[tuple, FromData]
NClasses = Annotated[int, FromData]
#: A layer's units or channels.
Width = Annotated[int, Field(ge=1)]
#: The probability of zeroing a unit.
Dropout = Annotated[float, Field(ge=0, lt=1)]
#: Outputs of the last layer (``None``: one per class).
Head = Annotated[int, Field(ge=1)] | None

_ACTIVATIONS = ("relu", "tanh", "gelu")


def outputs(n_classes: int, head: int | None) -> int:
    """The number of outputs: ``n_classes``, or 1 for a binary problem when ``head=1`` (the
    single logit f of the binary losses, whose probability of class 1 is sigmoid(f))."""
    if head is None or head == n_classes:
        return n_classes
    if head == 1 and n_classes == 2:
        return 1
    from harness import ConfigError

    raise ConfigError("model.head", head, f"the data has {n_classes} classes: head is "
                      f"{n_classes} (one logit per class), or 1 for two classes")


def spec_with_head(spec, loss, registry):
    """The model ``spec`` with ``head`` set to what ``loss`` asks for (its ``logit_head``,
    1 for the binary losses, as in their papers) when the suite left it unset and the
    model takes a ``head``; otherwise ``spec`` unchanged."""
    want = getattr(loss, "logit_head", None)
    if want is None or not isinstance(spec, dict) or spec.get("head") is not None:
        return spec
    if not any(p.name == "head" for p in registry.get("models", spec["name"]).params):
        return spec
    return {**spec, "head": want}


def _activation(name: str):
    import torch.nn as nn

    return {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}[name]()


def mlp(in_shape: InShape, n_classes: NClasses, hidden: list[Width] = (64, 64),
        activation: Literal["relu", "tanh", "gelu"] = "relu", dropout: Dropout = 0.0,
        batchnorm: bool = False, head: Head = None):
    """Multi-layer perceptron on flattened inputs (Linear-[BN]-act-[dropout] blocks).

    ``head``: outputs of the last layer; None = one per class, or what the loss
    asks for (1 for the binary losses); 1 on two classes = a single logit."""
    import math

    import torch.nn as nn

    layers: list = [nn.Flatten()]
    width = math.prod(in_shape)
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if batchnorm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(_activation(activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, outputs(n_classes, head)))
    return nn.Sequential(*layers)


def cnn(in_shape: InShape, n_classes: NClasses, channels: list[Width] = (16, 32),
        hidden: Width = 64, dropout: Dropout = 0.0, head: Head = None):
    """Small conv net for images: conv3x3-BN-ReLU blocks, 2x2 pooling while the
    image is larger than 4x4, global average pooling, then an MLP head
    (``head`` outputs, as for mlp)."""
    import torch.nn as nn

    if len(in_shape) != 3:
        from harness import ConfigError

        # a suite input, not a method failure: said once, the run planned again
        raise ConfigError("model", "cnn", f"cnn needs image data (C, H, W); this dataset has "
                          f"shape {tuple(in_shape)}: use the mlp model or an image dataset")
    c, h, w = in_shape
    layers: list = []
    for out in channels:
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
        if min(h, w) > 4:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, hidden), nn.ReLU()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, outputs(n_classes, head)))
    return nn.Sequential(*layers)


def auto(in_shape: InShape, n_classes: NClasses, hidden: list[Width] = (64, 64),
         channels: list[Width] = (16, 32), head: Head = None):
    """The cnn for image data (C, H, W), the mlp otherwise, so one suite can mix both."""
    if len(in_shape) == 3:
        return cnn(in_shape, n_classes, channels=channels, hidden=hidden[-1] if hidden else 64,
                   head=head)
    return mlp(in_shape, n_classes, hidden=hidden, head=head)


@hookimpl
def register_models(register):
    register("mlp", mlp)
    register("cnn", cnn)
    register("auto", auto)
