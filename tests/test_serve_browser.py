"""``cclnn serve``'s page in a real browser (Debian's chromium, headless, driven by selenium
through the system chromedriver): upload a Set5 crop, wait for the result, move the slider,
download the PNG and check its size. ``.ci/run`` installs chromium and chromium-driver."""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, cli_env

pytestmark = pytest.mark.slow
pytest.importorskip("starlette", reason="cclnn serve needs the web extra: pip install '.[web]'")
pytest.importorskip("selenium", reason="the browser test needs selenium (the test extra)")
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium "
                "chromium-driver; .ci/run installs them)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SET5_LR = ROOT / "cclnn" / "assets" / "Set5" / "LR_bicubic" / "X2" / "babyx2.png"


@pytest.fixture
def server_url():
    """``cclnn serve --port 0`` in a subprocess: the URL it prints; stopped with Ctrl-C, after
    which it shuts down and says so in one line, with the status of every interrupted
    command."""
    proc = subprocess.Popen([sys.executable, "-m", "cclnn", "serve", "--port", "0",
                             "--device", "cpu"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=ROOT)
    line = proc.stdout.readline()
    match = re.fullmatch(r"cclnn serve: (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops\)\n", line)
    if match is None:
        proc.kill()
        raise AssertionError(f"cclnn serve printed {line!r}: {proc.communicate()[1][-2000:]}")
    try:
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert (proc.returncode, err) == (130, "cclnn serve: interrupted\n")


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(tmp_path / "downloads"),
        "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def downloaded(folder: Path, name: str, timeout: float = 10) -> Path:
    path = folder / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and not list(folder.glob("*.crdownload")):
            return path
        time.sleep(0.1)
    raise AssertionError(f"no {name} in {folder}: {sorted(p.name for p in folder.glob('*'))}")


def test_upload_compare_and_download_in_chromium(server_url, browser, tmp_path):
    crop = tmp_path / "baby crop.png"
    Image.open(SET5_LR).crop((100, 60, 164, 124)).save(crop)  # 64 x 64
    wait = WebDriverWait(browser, 30)
    browser.get(server_url)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#scale option"))
    assert browser.find_element(By.ID, "model").get_attribute("value") == "cclnn-t"
    browser.find_element(By.ID, "image").send_keys(str(crop))
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_element(By.ID, "result").get_attribute("data-ready") == "1")
    assert browser.find_element(By.ID, "status").text.startswith("done in")

    network = browser.find_element(By.ID, "sr-img")
    assert network.get_property("naturalWidth") == 128
    assert network.value_of_css_property("clip-path") == "inset(0px 0px 0px 50%)"
    slider = browser.find_element(By.ID, "slider")
    ActionChains(browser).click_and_hold(slider).move_by_offset(slider.size["width"] // 4, 0) \
        .release().perform()
    value = int(slider.get_attribute("value"))
    assert value > 60
    assert network.value_of_css_property("clip-path") == f"inset(0px 0px 0px {value}%)"

    download = browser.find_element(By.ID, "download")
    assert download.get_attribute("download") == "baby_crop_x2.png"
    download.click()
    with Image.open(downloaded(tmp_path / "downloads", "baby_crop_x2.png")) as result:
        assert result.size == (128, 128)
