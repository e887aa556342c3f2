"""The image classifiers: published parameter counts, any input shape, registry, batch mode."""

from __future__ import annotations

import pytest
import torch

from harness import ConfigError
from harness_plugins.classification import resnets


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("factory,kwargs,count", [
    # the CIFAR-10 networks' published sizes (ResNet-18 11.2M, ResNet-34 21.3M,
    # WRN-28-10 36.5M; VGG-11/16-BN with one linear head 9.2M/14.7M)
    (resnets.resnet18, {}, 11_173_962),
    (resnets.resnet34, {}, 21_282_122),
    (resnets.wide_resnet, {}, 36_479_194),
    (resnets.vgg11, {}, 9_231_114),
    (resnets.vgg16, {}, 14_728_266),
])
def test_parameter_counts_match_the_papers_cifar_networks(factory, kwargs, count):
    assert n_params(factory((3, 32, 32), 10, **kwargs)) == count


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "preact_resnet18", "wide_resnet",
                                  "vgg11", "vgg16"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 8, 8)])
def test_any_channel_count_and_size_gives_logits(name, shape):
    factory = getattr(resnets, name)
    kwargs = {"depth": 10, "widen_factor": 1, "width": 4} if name == "wide_resnet" \
        else {"width": 4}
    torch.manual_seed(0)
    model = factory(shape, 7, **kwargs)
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7)


def test_imagenet_stem_downsamples_four_times_before_the_stages():
    model = resnets.resnet18((3, 64, 64), 5, width=4, stem="imagenet")
    stem = torch.nn.Sequential(*list(model)[:4])
    assert stem(torch.randn(1, 3, 64, 64)).shape == (1, 4, 16, 16)
    cifar = resnets.resnet18((3, 64, 64), 5, width=4)
    assert torch.nn.Sequential(*list(cifar)[:3])(torch.randn(1, 3, 64, 64)).shape[-1] == 64


def test_binary_head_and_bad_depth():
    assert resnets.resnet18((3, 8, 8), 2, width=2, head=1)(torch.randn(2, 3, 8, 8)).shape == (2, 1)
    with pytest.raises(ConfigError, match="6n \\+ 4"):
        resnets.wide_resnet((3, 8, 8), 2, depth=27)
    with pytest.raises(ConfigError, match="needs image data") as err:
        resnets.vgg11((20,), 2)
    assert (err.value.path, err.value.value) == ("model", "vgg11")


def test_registered_with_data_derived_shapes():
    from harness.plugins import get_registry

    reg = get_registry()
    info = reg.get("models", "wide_resnet")
    assert [p.name for p in info.params] == ["depth", "widen_factor", "dropout", "width", "head"]
    model = reg.create("models", {"name": "resnet18", "width": 2}, "model", in_shape=(1, 8, 8),
                       n_classes=3)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_batch_norm_resnets_stack_in_batch_mode_but_dropout_does_not():
    from harness_plugins.classification.batched import model_reason

    assert model_reason(resnets.resnet18((3, 8, 8), 2, width=2)) is None
    wrn = resnets.wide_resnet((3, 8, 8), 2, depth=10, widen_factor=1, width=2, dropout=0.3)
    assert "dropout" in model_reason(wrn)
