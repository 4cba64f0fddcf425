"""Training: data, recipe probes, the loop, `captcha train`, pretraining and self-training."""
