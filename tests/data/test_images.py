import io

import numpy as np
import pytest
from hostile import make_corpus
from PIL import Image

from captcha.data.images import load_image, merged_frames
from captcha.errors import ImageError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    good = Image.new("RGB", (160, 40), (240, 230, 200))
    return make_corpus(tmp_path_factory.mktemp("hostile"), good)


def test_every_input_is_rgb_or_a_specific_error(corpus):
    for name, (path, ok) in corpus.items():
        if ok:
            img = load_image(path)
            assert img.mode == "RGB", name
        else:
            with pytest.raises(ImageError) as err:
                load_image(path)
            assert str(path) in str(err.value), name


def test_messages_say_what_is_wrong(corpus):
    msgs = {}
    for name in ("empty.png", "text.png", "bomb.png", "directory.png", "missing.png", "truncated.png"):
        with pytest.raises(ImageError) as err:
            load_image(corpus[name][0])
        msgs[name] = str(err.value)
    assert "empty" in msgs["empty.png"]
    assert "not an image" in msgs["text.png"]
    assert "60000x60000" in msgs["bomb.png"] or "huge" in msgs["bomb.png"]
    assert "directory" in msgs["directory.png"]
    assert "no such file" in msgs["missing.png"]
    assert "truncated" in msgs["truncated.png"] or "corrupt" in msgs["truncated.png"]


def test_transparency_goes_onto_white_and_exif_rotation_applies(corpus):
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    rotated = load_image(corpus["exif-rotated.jpg"][0])
    assert rotated.size == (160, 40)
    g16 = load_image(corpus["gray16.png"][0])
    assert g16.getpixel((0, 0))[0] > 0  # rescaled, not clipped to black


def test_bytes_and_size_limit(corpus):
    data = corpus["good.png"][0].read_bytes()
    assert load_image(data).size == (160, 40)
    with pytest.raises(ImageError, match="over the limit"):
        load_image(data, max_pixels=100)
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


def test_an_image_written_out_as_base64_text_is_read(corpus):
    """As scrapers pass captchas on (and ddddocr takes them): bare base64, wrapped lines, or a data: URL."""
    import base64

    data = corpus["good.png"][0].read_bytes()
    for text in (base64.b64encode(data).decode(), base64.encodebytes(data).decode(),
                 "data:image/png;base64," + base64.b64encode(data).decode()):
        assert load_image(text).size == (160, 40)
    with pytest.raises(ImageError, match=r"^<image as text, 26 characters>: not valid base64$"):
        load_image("data:image/png;base64,!!!!")
    with pytest.raises(ImageError, match=r"^<image as text, 100 characters>: not an image"):
        load_image("A" * 100)
    with pytest.raises(ImageError, match="no such file"):  # a path, even one of base64's characters
        load_image("captchas/A7K2")


def test_an_archive_is_not_an_image_and_says_how_to_unpack_it(tmp_path):
    from captcha.data.images import unpack_hint

    (tmp_path / "site.zip").write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(ImageError, match=r"site.zip: an archive, not an image: unpack it first \(unzip .*site.zip -d "
                                         r".*site\)"):
        load_image(tmp_path / "site.zip")
    assert unpack_hint("a/site.tar.gz") == "tar xf a/site.tar.gz" and unpack_hint("site.7z") == "unpack it"
    assert unpack_hint("site.png") is None


def test_an_oversized_png_text_chunk_is_the_projects_error_not_a_crash():
    import io

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("k", "x" * 3_000_000, zip=True)  # decompresses past Pillow's text-chunk limit
    buf = io.BytesIO()
    Image.new("RGB", (60, 20), "white").save(buf, "PNG", pnginfo=info)
    with pytest.raises(ImageError, match="metadata"):
        load_image(buf.getvalue())


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PCX", "SGI", "TGA"])
def test_only_the_allowed_formats_are_decoded(fmt):
    import io

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "white").save(buf, fmt)
    with pytest.raises(ImageError, match="allowed format"):
        load_image(buf.getvalue())


def test_webp_is_allowed():
    import io

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, "WEBP")
    assert load_image(buf.getvalue()).size == (16, 16)


def test_a_file_named_as_a_format_it_does_not_read_says_to_convert_it_and_jfif_is_jpeg(tmp_path):
    Image.new("RGB", (16, 16), "white").save(tmp_path / "x.tiff")
    with pytest.raises(ImageError, match=r"x\.tiff: a \.tiff image, a format it does not read \(png, jpeg, bmp, gif, "
                                         r"webp, svg\): convert it to png"):
        load_image(tmp_path / "x.tiff")
    Image.new("RGB", (16, 16), "red").save(tmp_path / "y.jfif", "JPEG")
    assert load_image(tmp_path / "y.jfif").size == (16, 16)


def _blinking(ground: tuple[int, int, int], ink: tuple[int, int, int], fmt: str = "GIF") -> bytes:
    """Three squares that blink by turns over three frames, as GIF captcha generators draw glyphs: square j at
    ((f + j) mod 3) / 2 of its ink in frame f, so the first frame lacks the first square."""
    from PIL import ImageDraw

    frames = []
    for f in range(3):
        img = Image.new("RGB", (90, 30), ground)
        draw = ImageDraw.Draw(img)
        for j in range(3):
            a = ((f + j) % 3) / 2
            colour = tuple(round(g + a * (i - g)) for g, i in zip(ground, ink))
            draw.rectangle([5 + 30 * j, 5, 25 + 30 * j, 25], fill=colour)
        frames.append(img)
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


@pytest.mark.parametrize("ground,ink", [((250, 250, 240), (200, 30, 30)), ((20, 20, 60), (240, 240, 90))])
def test_an_animation_is_read_as_its_frames_merged_each_glyph_at_its_strongest(ground, ink):
    first = np.asarray(Image.open(io.BytesIO(_blinking(ground, ink))).convert("RGB"))
    assert tuple(first[15, 15]) == ground  # the first frame alone shows no first square
    merged = np.asarray(load_image(_blinking(ground, ink)))
    assert [tuple(merged[15, 15 + 30 * j]) for j in range(3)] == [ink] * 3
    assert tuple(merged[2, 2]) == ground and tuple(merged[15, 30]) == ground  # the ground between stays


def test_each_merged_pixel_is_the_frames_furthest_from_the_commonest_edge_colour():
    rng = np.random.default_rng(3)
    palette = np.array([[250, 250, 250], [252, 249, 251], [30, 60, 200], [200, 40, 40], [120, 120, 120]])
    arrays = [palette[rng.choice(5, (7, 9), p=[0.3, 0.3, 0.2, 0.1, 0.1])].astype(np.uint8) for _ in range(3)]
    merged = np.asarray(merged_frames([Image.fromarray(a) for a in arrays]))
    # the definition, spelled out: edges as top row, bottom row, left and right columns (corners twice), colours
    # eight levels apart as one, the commonest (the first of equals in (r, g, b) order) the ground
    edge = [tuple(int(v) // 8 for v in px) for a in arrays for side in (a[0], a[-1], a[:, 0], a[:, -1]) for px in side]
    ground = np.array(max(sorted(set(edge)), key=edge.count)) * 8 + 4
    for y in range(7):
        for x in range(9):
            furthest = int(np.argmax([np.abs(a[y, x].astype(int) - ground).sum() for a in arrays]))
            assert tuple(merged[y, x]) == tuple(arrays[furthest][y, x])


def test_an_animated_webp_is_merged_too_and_a_huge_animation_reads_its_first_frame():
    merged = np.asarray(load_image(_blinking((255, 255, 255), (0, 0, 0), "WEBP")))
    assert all(merged[15, 15 + 30 * j].max() < 60 for j in range(3))  # lossy, but every square inked
    one = np.asarray(load_image(_blinking((255, 255, 255), (0, 0, 0)), max_pixels=90 * 30))  # room for one frame
    assert one[15, 15].min() == 255 and one[15, 75].max() == 0  # the first frame, as decoded


def test_light_ink_on_transparency_goes_onto_black_and_dark_ink_or_an_opaque_card_onto_white():
    from PIL import ImageDraw

    def drawn(ink, card=None):
        img = Image.new("RGBA", (60, 20), (0, 0, 0, 0))
        draw = ImageDraw.Draw(img)
        if card:
            draw.rectangle([2, 1, 57, 18], fill=card)  # an opaque card with transparent corners and margins
        draw.rectangle([10, 5, 20, 15], fill=ink)
        return np.asarray(load_image(img))

    white_text = drawn((255, 255, 255, 255))
    assert tuple(white_text[0, 0]) == (0, 0, 0) and tuple(white_text[10, 15]) == (255, 255, 255)  # still readable
    dark_text = drawn((20, 20, 20, 255))
    assert tuple(dark_text[0, 0]) == (255, 255, 255) and tuple(dark_text[10, 15]) == (20, 20, 20)
    on_card = drawn((20, 20, 20, 255), card=(250, 250, 250, 255))
    assert tuple(on_card[0, 0]) == (255, 255, 255) and tuple(on_card[10, 40]) == (250, 250, 250)
