"""`captcha label`: the store on disk, the page's API, resuming after a kill, and (when a browser is
installed) the page itself driven by keyboard in headless Chromium."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from captcha.charset import Charset
from captcha.errors import DataError
from captcha.label.app import Session, create_label_app, open_session
from captcha.label.store import LabelStore

CHARSET = Charset("ABC123")


@pytest.fixture()
def folder(tiny_data, tmp_path):
    """Eight unlabelled captchas of the tiny dataset in a folder of their own."""
    out = tmp_path / "site"
    out.mkdir()
    for p in sorted((tiny_data / "captchas" / "val").glob("*.png"))[:8]:
        shutil.copy(p, out / p.name)
    return out


def _truth(tiny_data) -> dict:
    rows = (tiny_data / "captchas" / "val" / "labels.csv").read_text().splitlines()[1:]
    return dict(r.split(",") for r in rows)


def test_the_store_checks_labels_writes_at_once_and_resumes(folder):
    store = LabelStore(folder, CHARSET, length=4)
    first = store.images[0]
    with pytest.raises(DataError, match="4"):
        store.set(first, "AB")
    with pytest.raises(DataError, match="charset"):
        store.set(first, "ABXZ")
    with pytest.raises(DataError, match="not an image"):
        store.set("../../etc/passwd", "ABCA")
    assert store.set(first, "ab12") == "AB12"  # folded as the charset folds
    store.mark_unreadable(store.images[1])
    again = LabelStore(folder, CHARSET)  # a restart reads both files back
    assert again.labels == {first: "AB12"} and again.unreadable == {store.images[1]} and again.length == 4
    assert len(again.todo()) == 6 and not list(folder.glob(".*.tmp"))
    with open(folder / "labels.csv", "a") as f:  # labelled elsewhere in two lengths: a site whose lengths vary
        f.write(f"{store.images[2]},B1C\n")
    mixed = LabelStore(folder, CHARSET)
    assert mixed.length is None and mixed.set(store.images[3], "C12AB") == "C12AB"


def test_labels_the_charset_cannot_read_are_kept_as_written(folder):
    from click.testing import CliRunner

    from captcha.cli import main
    from captcha.data.layout import site_charset

    names = sorted(p.name for p in folder.glob("*.png"))
    (folder / "labels.csv").write_text(f"filename,label\n{names[0]},ab+1\n{names[1]},ca12\n")
    store = LabelStore(folder, CHARSET)  # a given charset without "+", folding to upper case
    assert store.labels == {names[1]: "CA12"} and store.kept == {names[0]: "ab+1"} and names[0] not in store.todo()
    store.set(names[2], "B123")
    rows = (folder / "labels.csv").read_text().splitlines()
    assert f"{names[0]},ab+1" in rows and f"{names[2]},B123" in rows  # nothing given before is lost
    cs = site_charset(folder)  # what `captcha label` reads them with when no --charset is given
    assert "+" in cs.alphabet and not cs.fold_case  # both cases in the labels: each kept as written
    assert LabelStore(folder, cs).labels == {names[0]: "ab+1", names[1]: "CA12", names[2]: "B123"}
    res = CliRunner().invoke(main, ["label", str(folder / "missing")])
    assert res.exit_code == 2 and "not a folder" in res.output


def test_a_copy_labelled_on_the_page_stays_labelled(folder):
    """Training reads a copy of another captcha once; the labelling page still counts it as labelled."""
    names = sorted(p.name for p in folder.glob("*.png"))
    shutil.copy(folder / names[0], folder / "again.png")
    store = LabelStore(folder, CHARSET)
    store.set(names[0], "AB12")
    store.set("again.png", "AB12")
    assert LabelStore(folder, CHARSET).labels == {names[0]: "AB12", "again.png": "AB12"}
    assert "again.png" not in LabelStore(folder, CHARSET).todo()


def test_the_api_proposes_least_confident_first_and_records_answers(folder, tiny_model, tiny_data):
    session = open_session(folder, tiny_model, CHARSET, length=4)
    client = TestClient(create_label_app(session))
    assert "captcha label" in client.get("/").text
    first = client.get("/api/next").json()["item"]
    confs = sorted(g.confidence for g in session.guesses.values())
    assert session.guesses[first["name"]].confidence == confs[0]  # the least sure first
    assert len(first["guess"]) == 4 and len(first["confidences"]) == 4
    truth = _truth(tiny_data)
    r = client.post("/api/label", json={"name": first["name"], "label": truth[first["name"]], "ms": 1500})
    assert r.status_code == 200 and r.json()["progress"]["labelled"] == 1
    assert client.post("/api/label", json={"name": first["name"], "label": "A"}).status_code == 422
    assert client.get(f"/api/item/{first['name']}").json()["label"] == truth[first["name"]]  # going back
    second = client.get("/api/next", params={"skip": ""}).json()["item"]
    assert second["name"] != first["name"]
    skipped = client.get("/api/next", params={"skip": second["name"]}).json()["item"]
    assert skipped["name"] != second["name"]
    assert client.get("/api/image/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert client.get(f"/api/image/{second['name']}").content[:4] == b"\x89PNG"
    progress = client.get("/api/progress").json()
    assert progress["answered"] == 1 and progress["seconds_per_captcha"] == pytest.approx(1.5)


def test_an_animated_or_svg_captcha_is_shown_as_it_is_read(folder, tiny_model):
    import io

    import numpy as np
    from PIL import Image

    frames = [Image.new("RGB", (60, 20), "white") for _ in range(2)]
    frames[0].paste((0, 0, 0), (5, 5, 15, 15))  # one square a frame: no frame shows both
    frames[1].paste((0, 0, 0), (40, 5, 50, 15))
    frames[0].save(folder / "blink.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    client = TestClient(create_label_app(open_session(folder, tiny_model, CHARSET, length=4)))
    shown = client.get("/api/image/blink.gif")
    assert shown.headers["content-type"] == "image/png"
    still = np.asarray(Image.open(io.BytesIO(shown.content)).convert("L"))
    assert still[10, 10] < 50 and still[10, 45] < 50  # both squares
    name = sorted(p.name for p in folder.glob("*.png"))[0]
    assert client.get(f"/api/image/{name}").content == (folder / name).read_bytes()  # a still image as it is
    (folder / "drawn.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="60" height="20">'
                                      '<rect x="5" y="5" width="10" height="10"/><script>alert(1)</script></svg>')
    session = open_session(folder, tiny_model, CHARSET, length=4)
    drawn = TestClient(create_label_app(session)).get("/api/image/drawn.svg")  # pixels, never the page's script
    assert drawn.headers["content-type"] == "image/png" and b"script" not in drawn.content
    # an SVG saved under a raster's name is read by its content, and shown so
    (folder / "misnamed.png").write_bytes((folder / "drawn.svg").read_bytes())
    session = open_session(folder, tiny_model, CHARSET, length=4)
    misnamed = TestClient(create_label_app(session)).get("/api/image/misnamed.png")
    assert misnamed.status_code == 200 and misnamed.content.startswith(b"\x89PNG") and b"script" not in misnamed.content
    assert np.asarray(Image.open(io.BytesIO(misnamed.content)).convert("L"))[10, 10] < 50  # its square, drawn
    (folder / "broken.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>')  # no size
    session = open_session(folder, tiny_model, CHARSET, length=4)
    broken = TestClient(create_label_app(session)).get("/api/image/broken.svg")
    assert broken.status_code == 422 and "neither a size nor a viewBox" in broken.json()["detail"]


def test_nothing_is_lost_when_the_page_is_killed(folder, tiny_model, tiny_data, tmp_path):
    truth = _truth(tiny_data)

    def start():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "captcha", "label", str(folder), "--checkpoint", str(tiny_model),
                                 "--charset", "ABC123", "--port", str(port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                return proc, url, httpx.get(f"{url}/api/progress", timeout=2).json()
            except httpx.HTTPError:
                time.sleep(0.25)
        raise AssertionError("the page never came up")

    proc, url, _ = start()
    done = []
    try:
        for _ in range(3):
            item = httpx.get(f"{url}/api/next").json()["item"]
            httpx.post(f"{url}/api/label", json={"name": item["name"], "label": truth[item["name"]]})
            done.append(item["name"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc, url, progress = start()
    try:
        assert progress["labelled"] == 3
        assert httpx.get(f"{url}/api/next").json()["item"]["name"] not in done
    finally:
        proc.terminate()
        proc.wait(20)
    rows = (folder / "labels.csv").read_text().splitlines()
    assert rows[0] == "filename,label" and sorted(r.split(",")[0] for r in rows[1:]) == sorted(done)


def _browser():
    try:
        from selenium import webdriver
    except ImportError:
        return None, "selenium is not installed (pip install selenium)"
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        return None, "no Chromium and chromedriver on PATH (apt-get install chromium chromium-driver)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(driver), options=opts), ""


def test_the_page_in_a_real_browser(folder, tiny_model, tiny_data):
    browser, why = _browser()
    if browser is None:
        pytest.skip(f"no browser to drive: {why}")
    import uvicorn
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    session = open_session(folder, tiny_model, CHARSET, length=4)
    app = create_label_app(session)

    @app.middleware("http")
    async def slow_next(request, call_next):  # the next captcha arrives late, as on a loaded server
        if request.url.path == "/api/next":
            await asyncio.sleep(0.5)
        return await call_next(request)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    import threading

    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    truth = _truth(tiny_data)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        box = browser.find_element(By.ID, "label")
        _wait(lambda: box.get_attribute("value"))
        first = session.queue()[0]
        msg = browser.find_element(By.ID, "msg")
        box.send_keys("a%")  # checked as typed: % is not in the charset (and a is folded to A)
        _wait(lambda: "'%' not in the charset" in msg.text and "wrong" in box.get_attribute("class"))
        box.send_keys(Keys.BACKSPACE)
        _wait(lambda: msg.text == "" and "wrong" not in box.get_attribute("class"))
        assert len(browser.execute_script("return window.timings.keys")) == 3
        box.send_keys(Keys.BACKSPACE)
        box.send_keys(truth[first] + Keys.ENTER + Keys.ENTER)  # the second Enter comes before the next captcha
        _wait(lambda: first in session.store.labels)
        box.send_keys(Keys.ARROW_UP)  # pressed while the next captcha is on its way: back to the first all the same
        _wait(lambda: box.get_attribute("value") == truth[first] and "labelled" in browser.find_element(By.ID, "conf").text)
        time.sleep(1.0)  # long enough for a late next captcha to overwrite it, were the keys not in order
        assert box.get_attribute("value") == truth[first]
        assert session.answered == 1  # the double Enter accepted nothing unseen
        box.send_keys(Keys.ENTER)  # accepted again, unchanged
        _wait(lambda: session.answered == 2)
        assert session.store.labels[first] == truth[first]
    finally:
        browser.quit()
        server.should_exit = True


def _wait(cond, seconds: float = 15.0) -> None:
    end = time.time() + seconds
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting in the browser")


def test_no_checkpoint_means_no_guesses_but_a_working_page(folder):
    session = Session(LabelStore(folder, CHARSET), None)
    client = TestClient(create_label_app(session))
    item = client.get("/api/next").json()["item"]
    assert item["guess"] == "" and os.path.exists(folder / item["name"])
