"""Evaluation: metrics, `captcha eval`, plots, layer summaries and feature-map visualisation."""
