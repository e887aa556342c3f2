"""The denoising task through the CLI: validation errors exit 2, the suites
plan, and a tiny suite runs end to end reproducibly."""

from __future__ import annotations

import textwrap

import pytest

from harness.cli import main

TINY = """\
name: dn
task: denoising
seeds: [0]
datasets:
  - photos: {size: 16, names: [astronaut, chelsea, coffee, rocket, china]}
    split: {val: 0.2, test: 0.2}
sensor: {name: simulated, size: 16, n_dark: 4, n_heldout: 2}
denoiser: {name: unet, width: 4, depth: 2}
ratios: [100, 250]
patch: 8
training: {epochs: 2, patches_per_epoch: 16, batch_size: 8}
methods:
  pg: {noise_model: poisson_gaussian}
  pnnp: {noise_model: {name: pnnp, steps: 20, batch: 256}}
  identity: {denoiser: identity}
metrics: [psnr, ssim, psnr_noisy, noise_kl, noise_quantile_l1]
rank_by: psnr
"""


def _plan(tmp_path, capsys, text: str):
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent(text))
    code = main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    return code, capsys.readouterr()


def test_tiny_suite_plans(tmp_path, capsys):
    code, out = _plan(tmp_path, capsys, TINY)
    assert code == 0, out.err
    assert "3 runs: 3 to run" in out.out


@pytest.mark.parametrize("old,new,words", [
    ("ratios: [100, 250]", "ratios: [100, 0]", ["ratios.1 = 0.0", "ratio must be > 0"]),
    ("ratios: [100, 250]", "ratios: [-5]", ["ratios.0 = -5.0", "ratio must be > 0"]),
    ("patch: 8", "patch: 32", ["patch = 32", "larger than the sensor's 16x16 frame"]),
    ("name: simulated,", "name: simulated, gain: 0,", ["sensor.gain = 0: ",
                                                       "expects float (> 0)"]),
    ("{name: pnnp, steps: 20", "{name: pnnp, stepz: 20", ["unknown parameter 'stepz'",
                                                          "did you mean 'steps'"]),
    ("names: [astronaut,", "names: [astronot,", ["astronot", "did you mean 'astronaut'"]),
    ("denoiser: {name: unet,", "denoiser: {name: unet3,", ["unknown denoiser 'unet3'"]),
    ("noise_model: poisson_gaussian}", "noise_model: poisson}",
     ["noise_model 'poisson'", "did you mean 'poisson_gaussian'"]),
    ("metrics: [psnr,", "metrics: [accuracy, psnr,", ["accuracy"]),
])
def test_bad_input_exits_2_before_any_run(tmp_path, capsys, old, new, words):
    assert old in TINY
    code, out = _plan(tmp_path, capsys, TINY.replace(old, new))
    assert code == 2, out.err
    assert "Traceback" not in out.err
    for w in words:
        assert w in out.err


def test_empty_image_folder_exits_2(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "readme.txt").write_text("no images here")
    text = TINY.replace("  - photos: {size: 16, names: [astronaut, chelsea, coffee, rocket, "
                        "china]}", "  - image_folder: imgs")
    code, out = _plan(tmp_path, capsys, text)
    assert code == 2
    assert "the folder has no images" in out.err and "imgs" in out.err


@pytest.mark.parametrize("name,runs", [("denoising", 21), ("denoising_gpu", 45)])
def test_shipped_denoising_suites_validate_and_plan(name, runs, tmp_path, capsys):
    code = main(["plan", f"suites/{name}.yaml", "--tracking-uri",
                 f"sqlite:///{tmp_path / 'none.db'}"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert f"{runs} runs: {runs} to run" in out.out


def _results(uri: str) -> dict:
    import mlflow

    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("dn")
    runs = client.search_runs([exp.experiment_id], "tags.`harness.status` = 'finished'")
    return {r.data.tags["harness.method"]: r for r in runs}


@pytest.mark.slow
def test_tiny_suite_runs_reproducibly_with_a_report_image(tmp_path):
    import mlflow

    suite = tmp_path / "s.yaml"
    suite.write_text(TINY)
    uris = [f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"]
    for uri in uris:
        assert main(["run", str(suite), "--tracking-uri", uri]) == 0
    first, second = _results(uris[0]), _results(uris[1])
    assert sorted(first) == ["identity", "pg", "pnnp"]
    for method, run in first.items():
        m = run.data.metrics
        for key in ("test/psnr", "test/ssim", "test/x100/psnr", "test/x250/ssim",
                    "test/noise_kl", "test/noise_quantile_l1"):
            assert key in m, (method, key)
        # x100 is the brighter, less noisy setting
        assert m["test/x100/psnr_noisy"] > m["test/x250/psnr_noisy"]
        assert m["test/psnr"] == pytest.approx((m["test/x100/psnr"] + m["test/x250/psnr"]) / 2)
        assert second[method].data.metrics["test/psnr"] == m["test/psnr"]
    ident = first["identity"].data.metrics
    assert ident["test/psnr"] == pytest.approx(ident["test/psnr_noisy"])
    assert first["pg"].data.metrics["noise/K"] == pytest.approx(1.0, rel=0.15)
    assert "val/psnr" in first["pnnp"].data.metrics
    client = mlflow.tracking.MlflowClient(uris[0])
    arts = [a.path for a in client.list_artifacts(first["pnnp"].info.run_id, "report")]
    assert "report/denoised.png" in arts
