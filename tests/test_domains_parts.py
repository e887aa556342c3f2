"""The domain generalization family's parts against hand-computed values:
rotation, the domain sources and their selection, CORAL's penalty, DRM's
steering, and DRM with one source domain training exactly as ERM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import ConfigError
from harness_plugins.domains import sources
from harness_plugins.domains.methods import coral_penalty, drm, entropy, erm, irm_penalty


def test_rotation_by_0_is_the_image_and_by_90_is_rot90():
    x = torch.rand(5, 2, 8, 8)
    assert torch.equal(sources.rotate(x, 0), x)
    assert torch.equal(sources.rotate(x, 90), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(sources.rotate(x, -90), torch.rot90(x, -1, (-2, -1)))
    # 45 degrees: the centre pixel stays; a corner pixel leaves the frame
    dot = torch.zeros(1, 1, 5, 5)
    dot[0, 0, 2, 2] = 1.0
    assert float(sources.rotate(dot, 45)[0, 0, 2, 2]) == pytest.approx(1.0)
    corner = torch.zeros(1, 1, 4, 4)
    corner[0, 0, 0, 0] = 1.0
    assert float(sources.rotate(corner, 45)[0, 0, 0, 0]) == 0.0


def test_rotated_digits_deal_disjoint_domains_each_rotated():
    raw = sources.rotated_digits(angles=[0, 90], target=90)
    from sklearn.datasets import load_digits

    d = load_digits()
    assert raw.X.shape == (1797, 1, 8, 8) and raw.meta["domain_names"] == ["0", "90"]
    assert raw.meta["target"] == ["90"] and raw.meta["sources"] == ["0"]
    counts = np.bincount(raw.meta["domains"])
    assert counts.tolist() == [899, 898]  # dealt round-robin
    # every image is an original digit, rotated by its domain's angle (90: a quarter turn)
    orig = {(im.tobytes(), int(t)) for im, t in zip((d.images / 16.0).astype(np.float32)
                                                     [:, None], d.target)}
    for i in range(0, 1797, 97):
        img = raw.X[i]
        if raw.meta["domains"][i] == 1:
            img = np.rot90(img, -1, (-2, -1)).copy()
        assert (img.tobytes(), int(raw.y[i])) in orig


def test_colored_digits_colour_agrees_with_label_as_the_domain_says():
    raw = sources.colored_digits(flips=[0.1, 0.9], label_noise=0.25, target=0.9)
    X, y, dom = raw.X, raw.y, raw.meta["domains"]
    assert X.shape[1] == 2 and set(np.unique(y)) == {0, 1}
    colour = (X[:, 1].sum((1, 2)) > 0).astype(int)  # the channel the digit is drawn in
    assert ((X[:, 0].sum((1, 2)) > 0) != (X[:, 1].sum((1, 2)) > 0)).mean() > 0.99
    agree = [(colour[dom == k] == y[dom == k]).mean() for k in (0, 1)]
    assert 0.85 < agree[0] < 0.95 and 0.05 < agree[1] < 0.15


def test_selection_errors_name_the_key_and_the_value():
    names = ["0", "15", "30"]
    assert sources.select_domains(names, 30, None) == (["30"], ["0", "15"])
    assert sources.select_domains(names, [30.0], ["0"]) == (["30"], ["0"])
    with pytest.raises(ConfigError) as e:
        sources.select_domains(names, 20, None)
    assert e.value.path == "target" and e.value.value == 20 and "'20'" in e.value.message
    with pytest.raises(ConfigError) as e:
        sources.select_domains(names, ["0", "15", "30"], None)
    assert e.value.path == "target" and "every domain" in e.value.message
    with pytest.raises(ConfigError) as e:
        sources.select_domains(names, "0", ["0", "15"])
    assert e.value.path == "sources" and "both" in e.value.message
    assert sources.leave_one_out(names, {"angles": [0, 15, 30]}) == [
        {"angles": [0, 15, 30], "target": n} for n in names]
    assert sources.selection_label("rotated_digits", {"target": 30}) == "rotated_digits@30"


def test_domain_folders_read_one_image_folder_per_domain(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for dom in ("photo", "sketch"):
        for cls in ("cat", "dog"):
            (tmp_path / dom / cls).mkdir(parents=True)
            for i in range(3):
                px = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
                Image.fromarray(px).save(tmp_path / dom / cls / f"{i}.png")
    raw = sources.domain_folders(tmp_path, target="sketch", size=None)
    assert raw.X.shape == (12, 3, 6, 6) and raw.X.dtype == np.float32
    assert raw.meta["domain_names"] == ["photo", "sketch"]
    assert raw.meta["target_names"] == ["cat", "dog"]
    assert np.bincount(raw.meta["domains"]).tolist() == [6, 6]
    first = np.asarray(Image.open(tmp_path / "photo" / "cat" / "0.png")).transpose(2, 0, 1)
    assert np.allclose(raw.X[0], first / 255.0) and raw.y[0] == 0
    with pytest.raises(ConfigError) as e:
        sources.domain_folders.check({"path": tmp_path, "target": "cartoon"})
    assert e.value.path == "target" and "cartoon" in e.value.message


def test_coral_penalty_by_hand():
    a = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    # means (2/3, 2/3) and (1, 0): squared differences 1/9 and 4/9, mean 5/18
    # cov(a) = [[4/3, -2/3], [-2/3, 4/3]], cov(b) = [[0, 0], [0, 2]]:
    # squared differences 16/9, 4/9, 4/9, 4/9, mean 7/9
    assert float(coral_penalty(a, b)) == pytest.approx(5 / 18 + 7 / 9, abs=1e-6)
    assert float(coral_penalty(a, a)) == 0.0


def test_irm_penalty_by_hand():
    # d/ds CE(s z, y) at s = 1 is the mean over rows of sum_c p_c z_c - z_y:
    # even rows [1, 0] (label 0): -1 / (e + 1); odd rows [0, 2] (label 0): 2e^2 / (1 + e^2)
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 2.0]])
    y = torch.zeros(4, dtype=torch.long)
    e = np.e
    assert float(irm_penalty(z, y).detach()) == pytest.approx(-1 / (e + 1) * 2 * e**2 / (1 + e**2),
                                                     rel=1e-5)


def test_drm_steers_each_sample_to_its_least_uncertain_head():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(2, 3))
    net = drm().build(model, 2)
    heads = net.heads()
    assert len(heads) == 3  # two domain heads and the pooled head
    with torch.no_grad():
        for h in heads:
            h.weight.zero_()
            h.bias.zero_()
        heads[0].bias[0] = 5.0   # confident on every sample
        heads[1].weight[1, 0] = 20.0  # very confident where x0 is large
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    out = net(x)
    assert torch.equal(out[0], heads[0](x[0]))
    assert torch.equal(out[1], heads[1](x[1]))
    assert float(entropy(torch.zeros(1, 4))) == pytest.approx(np.log(4))
    # as the authors' code: one head per block, the least mean entropy over the block
    torch.manual_seed(0)
    net = drm(steering="batch", steering_batch=2).build(model, 2)
    for h, g in zip(net.heads(), heads):
        h.load_state_dict(g.state_dict())
    x3 = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    out = net(x3)
    # block [x0, x1]: mean entropies 0.08 (head 0), 0.55 (head 1), 1.10 (pooled): head 0 for both
    assert torch.equal(out[:2], net.heads()[0](x3[:2]))
    assert torch.equal(out[2], net.heads()[1](x3[2]))  # a block of its own
    # one source domain: no extra head, the pooled head is the domain head
    assert len(drm().build(torch.nn.Sequential(torch.nn.Linear(2, 3)), 1).heads()) == 1


class _Ctx:
    """What train_network reads of a RunContext."""

    def __init__(self, config, seed=0):
        from harness.plugins import get_registry

        self.config, self.device, self.registry = config, "cpu", get_registry()
        self.seeds = {"init": 100 + seed, "order": 200 + seed, "split": 300 + seed}
        self.logged = []

    def create(self, kind, spec, **offered):
        return self.registry.create(kind, spec, kind, **offered)

    def metrics(self):
        return {}

    def epoch_end(self, epoch, values, phase="train"):
        self.logged.append(values)

    def log_metrics(self, values, step=0):
        self.logged.append(values)


def _train(method, sources_, seed=0):
    from harness_plugins.domains.data import prepare_domains
    from harness_plugins.domains.task import DomainGeneralizationTask
    from harness_plugins.domains.training import test_metrics, train_network

    raw = sources.rotated_digits(angles=[0, 30, 60], target=60, sources=sources_,
                                 per_domain=300)
    data = prepare_domains(raw, {"val": 0.2, "test": 0.2}, 7)
    from harness.plugins import get_registry

    registry = get_registry()
    cfg = DomainGeneralizationTask().validate(
        {"model": {"name": "mlp", "hidden": [16]}, "method": method,
         "training": {"epochs": 6, "batch_size": 16,
                      "optimizer": {"name": "adam", "lr": 0.01}}},
        lambda kind, spec, path: registry.check(kind, spec, path))
    ctx = _Ctx(cfg, seed)
    net, _ = train_network(ctx, cfg, data)
    ctx.metrics = lambda: {"target_accuracy": _metric("target_accuracy"),
                           "source_accuracy": _metric("source_accuracy")}
    return test_metrics(ctx, net, data), ctx.logged, net


def _metric(name):
    from harness.plugins import get_registry

    return get_registry().create("metrics", name, name)


def test_drm_with_one_source_domain_is_erm():
    erm_out, erm_log, _ = _train("erm", ["0"])
    drm_out, drm_log, _ = _train("drm", ["0"])
    assert erm_out == drm_out
    assert erm_log == drm_log
    assert erm_out["source_accuracy"] > 0.5  # it learned: the equality is not of two guesses
    # with two source domains DRM trains other numbers (its domain heads)
    _, two_log, net = _train("drm", ["0", "30"])
    assert len(net.heads()) == 3 and two_log != _train("erm", ["0", "30"])[1]


def test_erm_is_the_same_twice_and_differs_by_seed():
    a = _train("erm", ["0", "30"])[0]
    assert a == _train("erm", ["0", "30"])[0]
    assert set(a) == {"target_accuracy", "source_accuracy"}
    assert a != _train("erm", ["0", "30"], seed=1)[0]


def test_erm_builds_no_extra_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    net = erm().build(model, 3)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in model.parameters())
