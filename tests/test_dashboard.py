"""`dropout-tune dashboard`: optuna-dashboard over a search's storage, the search study alone, driven in a real headless
Chromium (the distribution's `chromium` and `chromium-driver`; skipped, with the reason, only where they are absent)."""

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from dropout_tune import cli
from dropout_tune.testing import save_tiny_text_model, write_toy_text_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """A finished 3-trial search with a 1-seed confirm stage (its job study sits in the same storage)."""
    tmp = tmp_path_factory.mktemp("dash")
    save_tiny_text_model(tmp / "model")
    write_toy_text_task(tmp / "data", sizes=(32, 16, 12))
    recipe = {"name": "toy", "model": {"name": str(tmp / "model")},
              "data": {"task": str(tmp / "data"), "max_length": 16}, "dropout": {"schedule": "all=0.1"},
              "training": {"max_steps": 4, "batch_size": 8, "eval_strategy": "steps", "eval_steps": 2, "seed": 1}}
    (tmp / "toy.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp / "out"
    assert cli.main(["tune", str(tmp / "toy.yaml"), "--trials", "3", "--confirm-seeds", "1", "-o", str(out)]) == 0
    return out


def _browser():
    """(chromium, chromedriver) paths, or a skip naming what is missing."""
    pytest.importorskip("selenium", reason="selenium is missing: pip install -e '.[dev]'")
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("no headless browser: apt-get install chromium chromium-driver "
                    f"(chromium: {browser or 'absent'}, chromedriver: {driver or 'absent'})")
    return browser, driver


def test_the_search_study_alone_is_listed_named_after_the_recipe(search):
    import optuna

    from dropout_tune.tune.dashboard import open_search_view, search_info

    info = search_info(search)
    inner = optuna.storages.RDBStorage(info["storage"])
    assert sorted(s.study_name for s in inner.get_all_studies()) == ["toy", "toy.confirm"]  # jobs share the file
    view, name = open_search_view(search)
    assert name == "toy" and [s.study_name for s in view.get_all_studies()] == ["toy"]
    study = optuna.load_study(study_name="toy", storage=view)  # every other call goes to the real storage
    assert len(study.trials) == 3 and study.trials[0].intermediate_values and study.metric_names == [
        "validation accuracy"]


def test_dashboard_bad_input_is_one_line_and_exit_2(search, tmp_path, capsys, free_port):
    import socket

    pytest.importorskip("optuna_dashboard")
    assert cli.main(["dashboard", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no search" in err[0]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert cli.main(["dashboard", str(search), "--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot listen on 127.0.0.1" in err[0]
    assert cli.main(["dashboard", str(search), "--port", "70000"]) == 2
    assert "--port: 70000 must be in 1..65535" in capsys.readouterr().err


def test_dashboard_in_a_real_browser_shows_the_study_its_trials_and_their_values(search, tmp_path, free_port):
    pytest.importorskip("optuna_dashboard")
    browser, driver_path = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "dropout_tune.cli", "dashboard", str(search), "--port", str(port)],
                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"the dashboard exited with {server.returncode}:\n{(tmp_path / 'server.log').read_text()}")
            try:
                urllib.request.urlopen(f"{base}/api/studies", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the dashboard did not answer within 120 s")
                time.sleep(0.5)
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1280,760"):
            options.add_argument(arg)
        chrome = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            body = lambda: chrome.find_element(By.TAG_NAME, "body").text  # noqa: E731
            chrome.get(f"{base}/dashboard/")
            WebDriverWait(chrome, 60).until(lambda _: "toy" in body())
            assert "toy.confirm" not in body()  # the confirm stage's job study is not a study to browse
            chrome.find_element(By.PARTIAL_LINK_TEXT, "toy").click()  # to the study page
            WebDriverWait(chrome, 60).until(lambda _: "toy (id=" in body())
            chrome.get(chrome.current_url.rstrip("/") + "/trials")
            WebDriverWait(chrome, 60).until(lambda _: "3 Trials" in body())
            page = body()
            for needle in ("Trial 0", "Trial 2", "Intermediate Values", "rate.hidden", "shape"):
                assert needle in page, needle
            shot = tmp_path / "dashboard.png"
            assert chrome.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        finally:
            chrome.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
