import time

from captcha.bench.speed import paired_rates
from captcha.inference.load import load_solver


def test_paired_rates_alternate_the_two_readers_over_the_same_images(flat_captchas):
    images = sorted(flat_captchas.glob("*.png"))[:12]
    solver = load_solver()  # the shipped general reader
    order: list[str] = []
    asked: list[int] = []
    batch = solver.solve_batch

    def ours(paths, **kw):
        order.append("ours")
        asked.append(len(paths))
        return batch(paths, **kw)

    solver.solve_batch = ours
    seen: list[bytes] = []

    def rival(data: bytes) -> str:
        if not order or order[-1] != "rival":
            order.append("rival")
        seen.append(data)
        time.sleep(0.01)
        return ""

    inputs = [p.read_bytes() for p in images]
    rates = paired_rates(solver, images, rival, inputs, rounds=3, repeat=2)
    assert order == ["ours", "rival"] * 4  # a warm-up of each, then three rounds, one after the other
    assert seen == inputs + inputs * 6  # its warm-up (up to 16 images), then each round every image twice
    assert 0 < rates["rival_captchas_per_s"] <= 100  # 10 ms an image at least
    assert asked == [24] * 4  # (up to 64 to warm up) a round's images in one batch, as many times as the rival reads them
    assert rates["captchas_per_s"] > 0
