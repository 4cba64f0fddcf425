import math

import numpy as np
from PIL import Image

from captcha.config import CTC_COLUMNS, CTC_MAGNIFY, CTC_MAX_HEIGHT, AugmentConfig
from captcha.data.augment import TrainTransform
from captcha.data.preprocess import (
    Preprocess,
    columns_width,
    magnified_size,
    whole_captcha_size,
    whole_captcha_sizes,
    widened,
)


def test_preprocess_shape_and_normalisation():
    pre = Preprocess(size=(32, 48))
    x = pre(Image.new("RGB", (90, 20), (124, 116, 104)))  # ImageNet's mean colour -> about 0
    assert x.shape == (3, 32, 48) and x.dtype == np.float32
    assert np.abs(x).max() < 0.01
    assert Preprocess.from_dict(pre.to_dict()).size == (32, 48)


def test_whole_captcha_size_keeps_native_scale_and_aspect():
    assert whole_captcha_size([(200, 50)] * 3) == (48, 192)  # captcha_images_v2
    assert whole_captcha_size([(90, 32), (90, 32), (120, 32)]) == (32, 88)  # median, in whole 8-pixel columns
    assert whole_captcha_size([(70, 30)]) == (32, 72)
    assert whole_captcha_size([(400, 160)]) == (64, 160)  # huge images are scaled down to 64 high
    assert whole_captcha_size([(40, 10)]) == (32, 128)  # tiny ones are scaled up
    assert whole_captcha_size([(10, 40)]) == (32, 16)  # never fewer than two feature columns
    assert whole_captcha_size([]) == (32, 128)


def test_tall_captchas_are_also_probed_nearer_their_own_height():
    assert whole_captcha_sizes([(200, 50)] * 3, height=48) == [(48, 192)]  # near the start's height: one size
    assert whole_captcha_sizes([(90, 69)], height=48) == [(48, 64), (64, 80)]  # fine detail kept at 64 high
    tall = whole_captcha_sizes([(300, 200)], height=48)[1]
    assert tall == (CTC_MAX_HEIGHT, 8 * round(1.5 * CTC_MAX_HEIGHT / 8))  # at most CTC_MAX_HEIGHT high, 3:2
    assert whole_captcha_sizes([(90, 69)]) == [whole_captcha_size([(90, 69)])]  # no start height: its own already


def test_cramped_captchas_are_widened_to_enough_columns_a_character():
    # 83x48 at 48 high is 10 columns: 5 characters get CTC_COLUMNS each
    assert whole_captcha_size([(83, 48)], height=48) == (48, 80)
    assert whole_captcha_size([(83, 48)], height=48, length=5) == (48, 8 * CTC_COLUMNS * 5)
    assert whole_captcha_size([(200, 50)] * 3, length=5) == (48, 192)  # captcha_images_v2: room already
    assert whole_captcha_sizes([(90, 69)], height=48, length=6) == [(48, 8 * CTC_COLUMNS * 6), (64, 8 * CTC_COLUMNS * 6)]
    assert whole_captcha_size([], length=9) == (32, 8 * CTC_COLUMNS * 9)
    assert columns_width(6) == 8 * CTC_COLUMNS * 6 == 192  # the general reader's 160 leaves six characters 3.3


def test_inputs_widened_as_the_image_would_be():
    """Stretching normalised inputs along the width matches stretching the image (within rounding), keeps
    the height and a flat image flat, and leaves an input of that width as it is."""
    pre = Preprocess(size=(16, 40))
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 40, 3), dtype=np.uint8))
    x = pre(img)[None]
    wide = widened(x, 48)
    assert wide.shape == (1, 3, 16, 48) and wide.dtype == np.float32
    direct = Preprocess(size=(16, 48))(img)
    assert np.abs(wide[0] - direct).mean() < 0.05 * np.abs(direct).mean()
    flat = pre(Image.new("RGB", (40, 16), (200, 30, 90)))[None]
    assert np.allclose(widened(flat, 56), flat[..., :1])
    assert np.array_equal(widened(x, 40), x)


def test_train_transform_is_reproducible_per_seed():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    t = TrainTransform(Preprocess(), AugmentConfig())
    assert np.array_equal(t(img, seed=5), t(img, seed=5))
    assert not np.array_equal(t(img, seed=5), t(img, seed=6))
    plain = TrainTransform(Preprocess(), AugmentConfig(enabled=False))
    assert np.array_equal(plain(img), Preprocess()(img))


def test_magnified_sizes_grow_each_side_by_its_own_factor_in_whole_columns_up_to_the_tallest():
    tall, wide = CTC_MAGNIFY
    assert magnified_size((48, 160)) == (round(tall * 48), 8 * round(wide * 160 / 8))
    assert magnified_size((48, 136), (1.5, 1.5)) == (72, 8 * round(204 / 8))  # whole 8-pixel feature columns
    assert magnified_size((48, 160), (2.0, 1.0)) == (96, 160)  # taller alone
    assert magnified_size((CTC_MAX_HEIGHT - 16, 160), (1.5, 1.5)) == (CTC_MAX_HEIGHT, 240)  # at most CTC_MAX_HEIGHT high
    assert magnified_size((CTC_MAX_HEIGHT, 144), (2.0, 1.5)) == (CTC_MAX_HEIGHT, 216)  # already the tallest: only wider
    assert magnified_size((112, 144), (0.5, 0.5)) == (112, 144)  # never smaller


def test_whole_captchas_lose_a_few_thin_holes_and_character_crops_none():
    """The same seed draws the same augmentation but for the holes, which only whole captchas (CTC) get:
    about half of them, each at most 6% of the width and 30% of the height."""
    from captcha.data.augment import Augment

    img = np.full((48, 160, 3), 200, np.uint8)
    img[12:36, 20:140] = 30  # ink the holes can fall on
    cfg = AugmentConfig()
    holed = 0
    for seed in range(40):
        crop, whole = Augment(cfg, (48, 160))(img, seed), Augment(cfg, (48, 160), whole=True)(img, seed)
        diff = (crop != whole).any(-1)
        if diff.any():
            holed += 1
            cols = np.flatnonzero(diff.any(0))
            assert len(cols) <= 4 * math.ceil(0.06 * 160) and diff.sum() <= 4 * math.ceil(0.06 * 160) * math.ceil(0.3 * 48)
    assert 8 <= holed <= 32  # p = 0.5
    none = Augment(AugmentConfig(erase=0.0), (48, 160), whole=True)
    assert np.array_equal(none(img, 3), Augment(cfg, (48, 160))(img, 3))
