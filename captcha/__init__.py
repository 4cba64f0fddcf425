"""captcha: learn to read text captchas with transfer learning, and read them fast on a CPU.

The public API, imported lazily so that `import captcha` stays cheap and the ONNX path never
pulls in PyTorch::

    from captcha import load_solver
    load_solver().solve("captcha.png").text                        # the shipped general reader, no training
    load_solver("checkpoints/model.pt").solve("captcha.png").text  # a model trained with `captcha train`
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "Charset": "charset", "CaptchaError": "errors", "ImageError": "errors", "DataError": "errors",
    "CheckpointError": "errors", "ConfigError": "errors",
    "TrainConfig": "config", "SynthConfig": "config", "PretrainConfig": "config", "ServeConfig": "config",
    "load_solver": "inference.load", "Solver": "inference.solver", "Solution": "inference.decode",
    "train": "training.train", "pretrain": "training.pretrain", "synth_dataset": "data.synth",
    "check_dataset": "data.layout", "evaluate_checkpoint": "eval.evaluate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'captcha' has no attribute {name!r}")
