"""Augmenters: known-parameter recovery, imbalanced-learn equivalence, the
deep generators' determinism, the quality figures and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import harness
from harness import ConfigError, UserError
from harness_plugins.augmentation import augmenters as A
from harness_plugins.augmentation.cvae import cvae
from harness_plugins.augmentation.ddpm import cosine_alpha_bar, ddpm
from harness_plugins.augmentation.quality import c2st_accuracy, generated_quality, mmd_rbf


def two_blobs(n=(60, 40), d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(-2, 1, (n[0], d)), rng.normal(2, 1, (n[1], d))])
    y = np.r_[np.zeros(n[0], int), np.ones(n[1], int)]
    return X.astype(np.float32), y


def test_gaussian_nb_recovers_means_and_pooled_variance():
    rng = np.random.default_rng(0)
    means = np.array([[2.0, -1.0, 0.0], [-1.0, 3.0, 0.5]])
    std = np.array([0.5, 1.0, 2.0])  # shared by both classes
    y = np.r_[np.zeros(20000, int), np.ones(10000, int)]
    X = means[y] + std * rng.standard_normal((len(y), 3))
    gen = A.gaussian_nb().fit(X, y, np.random.default_rng(1))
    assert np.allclose(gen.means_[0], means[0], atol=0.03)
    assert np.allclose(gen.means_[1], means[1], atol=0.05)
    assert np.allclose(gen.var_, std ** 2, rtol=0.03)
    Xg, yg = gen.sample({0: 20000, 1: 20000}, np.random.default_rng(2))
    assert np.allclose(Xg[yg == 1].mean(0), means[1], atol=0.05)
    assert np.allclose(Xg[yg == 0].std(0), std, rtol=0.03)


def test_gaussian_nb_pooled_variance_is_the_unbiased_hand_value():
    X = np.array([[0.0], [2.0], [10.0], [14.0]])
    y = np.array([0, 0, 1, 1])
    gen = A.gaussian_nb().fit(X, y, np.random.default_rng(0))
    # residuals -1, 1, -2, 2: sum of squares 10 over N - K = 2 degrees of freedom
    assert gen.var_[0] == pytest.approx(5.0)
    assert gen.means_[1][0] == pytest.approx(12.0)


def test_int_sample_count_follows_train_class_proportions():
    X, y = two_blobs(n=(75, 25))
    gen = A.gaussian_nb().fit(X, y, np.random.default_rng(0))
    _, yg = gen.sample(40, np.random.default_rng(1))
    assert np.bincount(yg).tolist() == [30, 10]
    assert A.split_total(10, {0: 1, 1: 1, 2: 1}) == {0: 4, 1: 3, 2: 3}


def test_smote_matches_imbalanced_learn_for_the_same_seed():
    from imblearn.over_sampling import SMOTE

    X, y = two_blobs()
    aug = A.smote(k_neighbors=3).fit(X, y, np.random.default_rng(0))
    Xg, yg = aug.sample({0: 10, 1: 25}, np.random.default_rng(7))
    seed = int(np.random.default_rng(7).integers(0, 2**31 - 1))
    ref_X, ref_y = SMOTE(sampling_strategy={0: 70, 1: 65}, k_neighbors=3,
                         random_state=seed).fit_resample(X.astype(np.float64), y)
    assert np.allclose(Xg, ref_X[100:].astype(np.float32))
    assert yg.tolist() == ref_y[100:].tolist() == [0] * 10 + [1] * 25


def test_gmm_samples_per_class_and_is_reproducible():
    X, y = two_blobs()
    Xg1, yg1 = A.gmm(n_components=2).fit(X, y, np.random.default_rng(0)).sample(
        {0: 30, 1: 5}, np.random.default_rng(1))
    Xg2, _ = A.gmm(n_components=2).fit(X, y, np.random.default_rng(0)).sample(
        {0: 30, 1: 5}, np.random.default_rng(1))
    assert np.bincount(yg1).tolist() == [30, 5]
    assert np.array_equal(Xg1, Xg2)
    assert Xg1[yg1 == 0].mean() < -1 < 1 < Xg1[yg1 == 1].mean()


def test_instance_noise_smoothed_fit_inflates_the_variance():
    X, y = two_blobs(n=(3000, 3000), d=2)
    plain = A.gaussian_nb().fit(X, y, np.random.default_rng(0))
    noisy = A.gaussian_nb(instance_noise=1.0, denoise=False).fit(X, y, np.random.default_rng(5))
    # independent noise adds its variance: 1 + 1
    assert np.allclose(noisy.var_, plain.var_ + 1.0, atol=0.1)


@pytest.mark.parametrize("make", [
    lambda **kw: A.gaussian_nb(**kw),
    lambda **kw: A.gmm(n_components=1, **kw),
    lambda **kw: A.gmm(n_components=1, covariance_type="full", **kw),
])
def test_instance_noise_is_removed_before_sampling_by_default(make):
    """Chae et al. estimate the data distribution by the fitted generator
    without its noise: fit on X + N(0, 1.5^2), sample with unit variance back."""
    X, y = two_blobs(n=(4000, 4000), d=2)
    var_real = np.concatenate([X[y == c] - X[y == c].mean(0) for c in (0, 1)]).var(0)
    assert np.allclose(var_real, 1.0, atol=0.1)
    rng = np.random.default_rng(1)
    Xg, yg = make(instance_noise=1.5).fit(X, y, np.random.default_rng(5)).sample(
        {0: 4000, 1: 4000}, rng)
    var_gen = np.concatenate([Xg[yg == c] - Xg[yg == c].mean(0) for c in (0, 1)]).var(0)
    assert np.allclose(var_gen, var_real, atol=0.15)
    Xs, ys = make(instance_noise=1.5, denoise=False).fit(X, y, np.random.default_rng(5)).sample(
        {0: 4000, 1: 4000}, rng)
    var_smooth = np.concatenate([Xs[ys == c] - Xs[ys == c].mean(0) for c in (0, 1)]).var(0)
    assert np.allclose(var_smooth, var_real + 1.5 ** 2, atol=0.3)


def test_removing_more_noise_than_the_fit_holds_leaves_a_positive_variance():
    X, y = two_blobs(n=(50, 50), d=2)
    aug = A.gaussian_nb().fit(X, y, np.random.default_rng(0))
    aug._remove_instance_noise(100.0)
    assert (aug.var_ > 0).all() and (aug.var_ < 1e-3).all()


@pytest.mark.parametrize("make", [
    lambda: cvae(train_steps=200, hidden=16),
    lambda: ddpm(train_steps=200, hidden=32, depth=2, steps=20),
    lambda: ddpm(train_steps=200, hidden=32, depth=2, steps=20, sampler="ddim", sample_steps=5),
])
def test_deep_generators_learn_class_means_and_are_reproducible(make):
    X, y = two_blobs(n=(100, 100), d=2)
    X = X * np.float32(0.5)  # class means at -1 and +1
    out = [make().fit(X, y, np.random.default_rng(3)).sample({0: 300, 1: 200},
                                                            np.random.default_rng(4))
           for _ in range(2)]
    (Xg, yg), (Xg2, _) = out
    assert Xg.shape == (500, 2) and Xg.dtype == np.float32
    assert np.bincount(yg).tolist() == [300, 200]
    assert np.array_equal(Xg, Xg2)
    assert np.allclose(Xg[yg == 0].mean(0), -1, atol=0.35)
    assert np.allclose(Xg[yg == 1].mean(0), 1, atol=0.35)


def test_images_keep_their_shape():
    rng = np.random.default_rng(0)
    X = rng.random((40, 1, 8, 8)).astype(np.float32)
    y = np.repeat([0, 1], 20)
    Xg, yg = A.gaussian_nb().fit(X, y, rng).sample({0: 3, 1: 4}, rng)
    assert Xg.shape == (7, 1, 8, 8) and yg.tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_cosine_schedule_is_decreasing_from_near_one():
    ab = cosine_alpha_bar(100)
    assert ab[0] > 0.99 and ab[-1] < 1e-3
    assert bool((ab[1:] < ab[:-1]).all())


def test_quality_figures_separate_good_from_bad_samples():
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, (300, 4))
    same = rng.normal(0, 1, (300, 4))
    shifted = rng.normal(3, 1, (300, 4))
    assert abs(c2st_accuracy(real, same) - 0.5) < 0.1
    assert c2st_accuracy(real, shifted) > 0.95
    assert mmd_rbf(real, real) == pytest.approx(0.0, abs=1e-12)
    assert mmd_rbf(real, shifted) > 10 * mmd_rbf(real, same)
    # right rows under the wrong label are caught by the per-class figures
    y = np.repeat([0, 1], 150)
    Xr = np.concatenate([rng.normal(-3, 1, (150, 2)), rng.normal(3, 1, (150, 2))])
    swapped = generated_quality(Xr, 1 - y, Xr, y)
    assert swapped["c2st"] > 0.95


def test_bad_parameters():
    with pytest.raises(ValueError, match="ratio must be >= 0"):
        A.gmm(ratio=-1)
    with pytest.raises(ConfigError, match="mode"):
        harness.create("augmenters", {"name": "gmm", "mode": "sometimes"})
    X, y = two_blobs(n=(10, 4))
    with pytest.raises(UserError, match="class 1 has 4 training sample"):
        A.smote(k_neighbors=5).fit(X, y, np.random.default_rng(0))


def test_ctgan_without_the_package_names_the_extra():
    pytest.importorskip("imblearn")
    try:
        import ctgan  # noqa: F401
        pytest.skip("ctgan is installed")
    except ImportError:
        pass
    with pytest.raises(UserError, match=r"harness-bench\[ctgan\]"):
        harness.create("augmenters", {"name": "tvae", "epochs": 5})
