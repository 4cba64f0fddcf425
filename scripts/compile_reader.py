"""Compile the shipped general reader for ONNX Runtime into the package, beside it.

`captcha solve` with no trained model reads with `captcha/weights/reader-ctc.pt`; shipped with its
compiled file (`reader-ctc.int8.onnx`, recording the digest of the weights it was made from), the first
solve after an install compiles nothing (~10 s on 2 cores) and never imports PyTorch. Rerun this after changing the
reader or how models are compiled (`captcha/inference/export.py`); tests/inference/test_load.py checks that the
file matches the reader and reads as PyTorch does.

    python scripts/compile_reader.py
"""

from captcha.config import SHIPPED_READER_ONNX
from captcha.inference.export import compile_onnx
from captcha.inference.load import general_reader_path


def main() -> None:
    reader = general_reader_path()
    out = reader.with_name(SHIPPED_READER_ONNX)
    precision = compile_onnx(reader, out, "int8")
    print(f"wrote {out} ({precision}, {out.stat().st_size / 1e6:.1f} MB) from {reader.name}")


if __name__ == "__main__":
    main()
