"""Temperature scaling: it recovers a known temperature and never makes the held-out likelihood worse."""

import numpy as np

from captcha.inference.decode import softmax
from captcha.nn.checkpoint import load_checkpoint
from captcha.training.calibrate import fit_temperature, nll


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
