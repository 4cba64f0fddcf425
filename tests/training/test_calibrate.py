"""Temperature scaling and the confidence map: each recovers what made the labels and leaves calibrated ones be."""

import numpy as np

from captcha.eval.metrics import reliability
from captcha.inference.decode import calibrated, softmax
from captcha.nn.checkpoint import load_checkpoint
from captcha.training.calibrate import fit_confidence_map, fit_temperature, nll


def _sample(temperature: float, n: int = 4000, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, classes))
    p = softmax(logits / temperature)
    targets = np.array([rng.choice(classes, p=row) for row in p])
    return logits, targets


def test_the_fitted_temperature_is_the_one_that_made_the_labels():
    for true_t in (0.5, 2.0):
        logits, targets = _sample(true_t)
        t = fit_temperature(logits, targets)
        assert abs(t - true_t) / true_t < 0.15, (t, true_t)
        assert nll(logits, targets, t) <= nll(logits, targets) + 1e-9


def test_nothing_to_fit_on_is_temperature_one():
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0)) == 1.0


def test_training_stores_a_calibration_fitted_on_the_held_out_slice(tiny_model):
    ck = load_checkpoint(tiny_model)
    cal = ck["calibration"]
    assert ck["temperature"] == cal["temperature"] > 0 and cal["held_out"] > 0 and cal["on"] == "held-out"
    assert cal["nll_calibrated"] <= cal["nll"] + 1e-9


def test_a_fit_that_trained_on_the_held_out_slice_calibrates_on_the_validation_captchas(flat_captchas, tmp_path):
    """One fit that holds nothing out (as a planned single fit trains on the slice) still fits a
    temperature: on the validation captchas' crops, which it never trained on."""
    from captcha.config import TrainConfig
    from captcha.eval.evaluate import evaluate_checkpoint
    from captcha.training.train import train

    out = tmp_path / "model.pt"
    train(TrainConfig(data=str(flat_captchas), out=str(out), charset="ABC123", pretrained="glyphs", freeze="all",
                      method="classify", size=(32, 32), epochs=2, batch_size=16, aug_passes=1, refit=False,
                      select_fraction=0.0, val_fraction=0.25))
    ck = load_checkpoint(out)
    cal = ck["calibration"]
    assert cal["on"] == "validation" and cal["held_out"] == 4 * 10  # 10 captchas of 4 crops
    assert ck["temperature"] == cal["temperature"] > 0 and cal["nll_calibrated"] <= cal["nll"] + 1e-9
    # `captcha eval --val` reads those captchas: it says its calibration figures are not an independent check
    assert evaluate_checkpoint(out, backend="torch").captchas["calibrated_on_these"] is True
    assert evaluate_checkpoint(out, dataset=flat_captchas, backend="torch").captchas["calibrated_on_these"] is False


def _readings(truth, n: int = 60, seed: int = 0):
    """Confidences spread over (0, 1) and whether each reading was right, drawn as ``truth(p)`` says."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.02, 0.98, n)
    return conf, rng.uniform(size=n) < truth(conf)


def test_the_confidence_map_straightens_confidences_that_claim_too_little_or_too_much():
    """Under-confident readings (right far more often than claimed, as a pair of networks' averaged readings were)
    and over-confident ones come out nearer their accuracy, on readings the map was not fitted on."""
    for truth in (np.sqrt, lambda p: p ** 3):
        a, b = fit_confidence_map(*_readings(truth, n=60))
        conf, right = _readings(truth, n=4000, seed=1)
        mapped = [calibrated(c, a, b) for c in conf]
        assert reliability(mapped, right)["ece"] < reliability(conf, right)["ece"] / 2


def test_calibrated_confidences_keep_a_map_near_the_identity():
    a, b = fit_confidence_map(*_readings(lambda p: p, n=400))
    assert abs(a - 1) < 0.25 and abs(b) < 0.25
    assert fit_confidence_map(np.zeros(0), np.zeros(0)) == (1.0, 0.0)


def test_the_map_keeps_order_and_a_reading_that_cannot_be_right():
    conf = [0.0, 0.01, 0.3, 0.6, 0.95, 1.0]
    mapped = [calibrated(c, 0.5, 1.2) for c in conf]
    assert mapped[0] == 0.0 and all(x < y for x, y in zip(mapped[1:], mapped[2:]))


def test_a_shift_alone_keeps_the_slope_and_lifts_readings_that_claim_too_little():
    """Without a slope (a kept reader's few captchas), the map is a shift: readings right far more often than they
    claim are lifted, in order, and their calibration error drops on readings it was not fitted on."""
    a, b = fit_confidence_map(*_readings(np.sqrt, n=20), slope=False)
    assert a == 1.0 and b > 0
    conf, right = _readings(np.sqrt, n=4000, seed=1)
    mapped = [calibrated(c, a, b) for c in conf]
    assert reliability(mapped, right)["ece"] < reliability(conf, right)["ece"]
    assert np.all(np.diff([calibrated(c, a, b) for c in np.sort(conf)]) >= 0)
