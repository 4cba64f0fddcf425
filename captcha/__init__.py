"""captcha: learn to read text captchas with transfer learning, and read them fast on a CPU.

The public API, imported lazily so that `import captcha` stays cheap and the ONNX path never
pulls in PyTorch::

    from captcha import Solver, Charset
    Solver.from_checkpoint("checkpoints/model.pt").solve("captcha.png").text
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "Charset": "charset", "Solver": "solve", "Solution": "solve", "TrainConfig": "train", "train": "train",
    "SynthConfig": "synth", "synth_dataset": "synth", "check_dataset": "data", "evaluate_checkpoint": "evaluate",
    "CaptchaError": "errors", "ImageError": "errors", "DataError": "errors", "CheckpointError": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'captcha' has no attribute {name!r}")
