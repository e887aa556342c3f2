"""Metrics against hand computation and scikit-learn; ranking direction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

import harness
from harness_plugins.classification.metrics import calibration_bins

# four binary samples worked out by hand (5 equal-width bins of width 0.2):
#   p=(.9,.1)  y=0: conf .90 right, bin (.8,1]
#   p=(.85,.15) y=1: conf .85 wrong, bin (.8,1]
#   p=(.3,.7)  y=1: conf .70 right, bin (.6,.8]
#   p=(.45,.55) y=0: conf .55 wrong, bin (.4,.6]
P = np.array([[0.9, 0.1], [0.85, 0.15], [0.3, 0.7], [0.45, 0.55]])
Y = np.array([0, 1, 1, 0])


def m(spec):
    return harness.create("metrics", spec)


def test_ece_and_mce_by_hand():
    # bin (.8,1]: acc .5 conf .875 -> 2/4 * .375; (.6,.8]: 1/4 * .3; (.4,.6]: 1/4 * .55
    assert m({"name": "ece", "bins": 5})(Y, P) == pytest.approx(0.1875 + 0.075 + 0.1375)
    assert m({"name": "mce", "bins": 5})(Y, P) == pytest.approx(0.55)


def test_adaptive_ece_by_hand():
    # equal mass, 2 bins: {.55 wrong, .70 right} and {.85 wrong, .90 right}
    assert m({"name": "adaptive_ece", "bins": 2})(Y, P) == pytest.approx(
        0.5 * abs(0.5 - 0.625) + 0.5 * abs(0.5 - 0.875))


def test_bins_are_right_closed():
    count, _, _ = calibration_bins([0, 0], [[0.8, 0.2], [0.6, 0.4]], bins=5)
    assert count.tolist() == [0, 0, 1, 1, 0]  # .6 in (.4,.6], .8 in (.6,.8]


def test_ece_is_zero_for_perfect_calibration():
    # 10 samples at confidence .7, 7 of them right
    p = np.tile([0.7, 0.3], (10, 1))
    y = np.array([0] * 7 + [1] * 3)
    assert m("ece")(y, p) == pytest.approx(0.0, abs=1e-12)


def test_brier_and_nll_by_hand():
    # per sample sum_k (p_k - onehot_k)^2: .02, 1.445, .18, .605
    assert m("brier")(Y, P) == pytest.approx((0.02 + 1.445 + 0.18 + 0.605) / 4)
    assert m("nll")(Y, P) == pytest.approx(
        -(math.log(0.9) + math.log(0.15) + math.log(0.7) + math.log(0.45)) / 4)


def random_problem(n=200, c=3, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(c), size=n)
    y = np.where(rng.random(n) < 0.6, p.argmax(1), rng.integers(0, c, n))
    return y, p


@pytest.mark.parametrize("c", [2, 4])
def test_against_sklearn(c):
    y, p = random_problem(c=c, seed=c)
    pred = p.argmax(1)
    assert m("accuracy")(y, p) == pytest.approx(skm.accuracy_score(y, pred))
    assert m("balanced_accuracy")(y, p) == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m("f1_macro")(y, p) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    expected_f1 = (skm.f1_score(y, pred) if c == 2 else skm.f1_score(y, pred, average="macro"))
    assert m("f1")(y, p) == pytest.approx(expected_f1)
    assert m("log_loss")(y, p) == pytest.approx(skm.log_loss(y, p, labels=range(c)))
    assert m("nll")(y, p) == pytest.approx(skm.log_loss(y, p, labels=range(c)))
    recalls = skm.recall_score(y, pred, average=None)
    assert m("g_mean")(y, p) == pytest.approx(np.prod(recalls) ** (1 / c))
    expected_auc = (skm.roc_auc_score(y, p[:, 1]) if c == 2
                    else skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m("auroc")(y, p) == pytest.approx(expected_auc)
    onehot = np.eye(c)[y]
    assert m("brier")(y, p) == pytest.approx(np.mean(np.sum((p - onehot) ** 2, 1)))
    if c == 2:  # binary Brier = 2 x sklearn's positive-class Brier
        assert m("brier")(y, p) == pytest.approx(2 * skm.brier_score_loss(y, p[:, 1]))


def test_f1_binary_uses_class_one_as_positive():
    y = np.array([1, 1, 0, 0])
    p = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1], [0.3, 0.7]])  # TP, FN, TN, FP
    assert m("f1")(y, p) == pytest.approx(0.5)
    assert m({"name": "f1", "average": "macro"})(y, p) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="2 classes"):
        m({"name": "f1", "average": "binary"})(np.array([0, 1, 2]), np.eye(3))


def test_g_mean_is_zero_when_a_class_is_never_recalled():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.1]] * 4)
    assert m("g_mean")(y, p) == 0.0
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])  # recalls .5 and 1
    assert m("g_mean")(y, p) == pytest.approx(math.sqrt(0.5))


def test_g_mean_does_not_underflow_with_many_classes():
    # 200 classes of 50 samples, one right per class: every recall is 0.02; their
    # product (0.02^200 = 1e-340) underflows to 0.0, the geometric mean is 0.02
    c, n = 200, 50
    y = np.repeat(np.arange(c), n)
    pred = (y + 1) % c
    pred[::n] = y[::n]
    p = np.eye(c)[pred]
    assert m("g_mean")(y, p) == pytest.approx(0.02, rel=1e-12)


def test_classwise_ece_by_hand():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    y = np.array([0, 1, 1, 1])
    # class 0, two equal-mass bins {.2, .3} (freq 0, conf .25) and {.6, .9} (freq .5,
    # conf .75): (2 * .25 + 2 * .25) / 4 = .25; class 1 likewise; the mean is .25
    ace = m({"name": "classwise_ece", "bins": 2})
    assert ace.greater_is_better is False
    assert ace(y, p) == pytest.approx(0.25)
    # three samples, all of class 1: class 0 bins {.2, .3} and {.6} (3 samples in 2 bins),
    # errors 2 * .25 + .6; class 1 bins {.4, .7} and {.8}, errors 2 * |1 - .55| + .2
    p3, y3 = np.array([[0.2, 0.8], [0.3, 0.7], [0.6, 0.4]]), np.array([1, 1, 1])
    assert ace(y3, p3) == pytest.approx((1.1 / 3 + 1.1 / 3) / 2)
    # equal-width bins (SCE) split at .5: class 1 bins {.4} and {.7, .8}
    sce = m({"name": "classwise_ece", "bins": 2, "adaptive": False})
    assert sce(y3, p3) == pytest.approx((1.1 / 3 + (0.6 + 2 * 0.25) / 3) / 2)
    # the top-label adaptive ECE is another quantity
    assert m({"name": "adaptive_ece", "bins": 2})(y, p) != pytest.approx(ace(y, p))


def test_auroc_and_adaptive_ece_say_what_they_compute():
    # one-vs-rest macro (not Hand & Till's one-vs-one); top-label equal-mass bins
    doc = harness.components("metrics")["auroc"].factory.__doc__
    assert "one-vs-rest" in doc and "not Hand & Till" in doc
    assert "top-label" in harness.components("metrics")["adaptive_ece"].description


def test_auroc_single_class_is_nan_and_absent_classes_are_skipped():
    y, p = np.zeros(5, int), np.random.default_rng(0).dirichlet(np.ones(3), 5)
    assert math.isnan(m("auroc")(y, p))
    y = np.array([0, 0, 1, 1])  # class 2 of 3 absent
    p = np.array([[0.8, 0.1, 0.1], [0.5, 0.3, 0.2], [0.2, 0.7, 0.1], [0.4, 0.4, 0.2]])
    expected = np.mean([skm.roc_auc_score(y == 0, p[:, 0]), skm.roc_auc_score(y == 1, p[:, 1])])
    assert m("auroc")(y, p) == pytest.approx(expected)


def test_log_loss_counts_all_classes_even_if_absent():
    y = np.array([0, 1])
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1]])
    assert m("log_loss")(y, p) == pytest.approx(-(math.log(0.5) + math.log(0.8)) / 2)


@pytest.mark.parametrize("name,greater", [
    ("accuracy", True), ("balanced_accuracy", True), ("f1", True), ("f1_macro", True),
    ("g_mean", True), ("auroc", True), ("log_loss", False), ("nll", False), ("brier", False),
    ("ece", False), ("adaptive_ece", False), ("mce", False)])
def test_direction_and_contract(name, greater):
    metric = m(name)
    assert metric.greater_is_better is greater
    y, p = random_problem()
    value = metric(list(y), p.tolist())  # plain sequences are accepted
    assert isinstance(value, float)
    assert harness.components("metrics")[name].description  # a docstring line for `list`


def test_better_predictions_score_better():
    y, p = random_problem(n=500, seed=5)
    perfect = np.eye(3)[y] * 0.98 + 0.02 / 3
    for name in ("accuracy", "f1", "g_mean", "auroc", "log_loss", "brier", "nll"):
        metric = m(name)
        sign = 1 if metric.greater_is_better else -1
        assert sign * metric(y, perfect) > sign * metric(y, p), name


def test_metric_label_of_a_nested_component_parameter():
    from harness.metrics import metric_label

    assert metric_label("robust_accuracy", {"attack": {"name": "pgd", "eps": 0.3},
                                            "eps": 0.3}) == \
        "robust_accuracy:attack-pgd_eps-0.3:eps-0.3"
    assert metric_label("robust_accuracy", {"attack": {"name": "fgsm"}}) == \
        "robust_accuracy:attack-fgsm"
    assert metric_label("ece", {"bins": 25, "adaptive": True}) == "ece:bins-25:adaptive-true"


def test_a_nested_spec_error_path_has_no_double_dot():
    from harness import ConfigError
    from harness.plugins import get_registry

    with pytest.raises(ConfigError) as err:
        get_registry().check("metrics", {"name": "robust_accuracy",
                                         "attack": {"name": "fgsmm"}}, "")
    assert err.value.path == "attack.name"


def test_one_function_returned_by_two_metric_factories_keeps_each_declaration():
    """Two factories returning the same function object with different inputs
    (a shared helper) each get their own inputs; neither changes the other's."""
    from harness.metrics import metric_inputs
    from harness.plugins import ComponentInfo, Registry

    def shared(a, b=None):
        return float(a if b is None else a + b)

    @harness.metric(inputs=("a",), greater_is_better=True)
    def one():
        """One input."""
        return shared

    @harness.metric(inputs=("a", "b"), greater_is_better=False)
    def two():
        """Two inputs."""
        return shared

    registry = Registry.__new__(Registry)
    registry._kinds = {"metrics": {
        name: ComponentInfo("metrics", name, f, "t", None, None, [], False, ())
        for name, f in (("one", one), ("two", two))}}
    registry.components = lambda kind: registry._kinds[kind]
    registry.check = lambda kind, spec, path: (spec, {})
    first, second = registry.create("metrics", "one"), registry.create("metrics", "two")
    assert metric_inputs(first) == ("a",) and first.greater_is_better is True
    assert metric_inputs(second) == ("a", "b") and second.greater_is_better is False
    assert metric_inputs(registry.create("metrics", "one")) == ("a",)
    assert second(1.0, 2.0) == 3.0


def test_a_metric_may_declare_no_direction_but_not_a_non_boolean_one():
    from harness.metrics import direction_tag, has_direction

    @harness.metric(inputs=("estimate", "true_mi"), greater_is_better=None)
    def signed():
        """A signed error."""
        return lambda est, true: est - true

    assert signed.greater_is_better is None and not has_direction(signed)
    assert direction_tag(signed) == "none"
    assert [direction_tag(m(n)) for n in ("accuracy", "ece")] == ["max", "min"]
    for bad in (1, 0, "max"):
        with pytest.raises(TypeError, match="True, False or None"):
            harness.metric(inputs=("labels",), greater_is_better=bad)
    bias = harness.components("metrics")["bias"].factory
    assert bias.greater_is_better is None  # mi_estimation's signed error: 0 is best


def test_list_metrics_says_which_way_is_better(capsys):
    import json

    from harness.cli import main

    assert main(["list", "metrics"]) == 0
    rows = {ln.split()[0]: ln.split()[1] for ln in capsys.readouterr().out.splitlines()[2:]
            if ln and not ln.startswith(" ")}
    assert (rows["accuracy"], rows["ece"], rows["bias"]) == ("higher", "lower", "none")
    assert main(["list", "metrics", "--json"]) == 0
    listed = {m["name"]: m["better"] for m in json.loads(capsys.readouterr().out)}
    assert (listed["accuracy"], listed["log_loss"], listed["bias"]) == ("higher", "lower", "none")
