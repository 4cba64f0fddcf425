import torch

from captcha.nn.device import cpu_has_bf16, train_in_bf16


def test_bf16_training_by_default_only_where_the_cpu_has_it(tmp_path):
    native, emulated = tmp_path / "native", tmp_path / "emulated"
    native.write_text("flags\t\t: fpu sse2 avx512f avx512bw avx512_bf16 avx512_vnni\n")
    emulated.write_text("flags\t\t: fpu sse2 avx512f avx512bw avx512_vnni\n")
    assert cpu_has_bf16(str(native)) and not cpu_has_bf16(str(emulated))
    assert not cpu_has_bf16(str(tmp_path / "absent"))  # not Linux: no flags to read, full precision
    assert train_in_bf16(None) == cpu_has_bf16()  # the default follows this machine's CPU
    assert train_in_bf16(True) and not train_in_bf16(False)  # --bf16 / --no-bf16 as given
    cpu = torch.device("cpu")
    assert train_in_bf16(None, cpu) == cpu_has_bf16() and not train_in_bf16(False, cpu)
    assert train_in_bf16(None, torch.device("cuda")) and train_in_bf16(False, torch.device("cuda"))  # as autocast
