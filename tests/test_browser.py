"""End to end in a real headless Chromium: search, filter by a Disease facet, open a document.

The app runs on waitress on a loopback port over a real index of the sample corpus. Needs
Debian's chromium and chromium-driver (`.ci/setup` installs them); skips, saying so, without.
Screenshots go to var/screenshots/.
"""
from __future__ import annotations

import shutil
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.sample_index import REPO, sample_index

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SHOTS = REPO / "var" / "screenshots"


@pytest.fixture(scope="module")
def server():
    """The web app over a fresh sample index, served by waitress on a free loopback port."""
    from waitress import create_server

    from web import create_app
    from web.client import InProcessClient

    settings = sample_index()
    client = InProcessClient(settings)
    app = create_app(settings, search=client)
    srv = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.effective_port}", client.service()
    srv.close()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver; "
                    ".ci/setup does this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1360,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _shot(driver, name: str) -> Path:
    """A full-page screenshot under var/screenshots/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(max(height, 700), 4000))
    path = SHOTS / name
    driver.save_screenshot(str(path))
    driver.set_window_size(width, 1000)
    return path


def test_search_filter_by_disease_and_open_a_document(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, service = server
    wait = WebDriverWait(browser, 30)
    browser.get(base + "/")
    box = wait.until(ec.element_to_be_clickable((By.ID, "q")))
    assert browser.switch_to.active_element == box, "the query box has focus on the landing page"
    box.send_keys("veteran service connection for PTSD", Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ol.hits li.hit")))
    total = int(browser.find_element(By.CSS_SELECTOR, "h1.count").text.split()[0].replace(",", ""))
    _shot(browser, "browser-results.png")

    # The Disease facet: the most frequent value that still narrows the results.
    facet = browser.find_element(By.XPATH, "//details[summary[normalize-space()='Disease']]")
    values = facet.find_elements(By.CSS_SELECTOR, "a.facet-value")
    assert values, "the Disease facet lists values"
    counts = [int(v.find_element(By.CLASS_NAME, "facet-count").text.replace(",", "")) for v in values]
    narrowing = [i for i, c in enumerate(counts) if c < total]
    assert narrowing, f"some Disease value covers fewer than all {total} results"
    choice, expected = values[narrowing[0]], counts[narrowing[0]]
    wanted = parse_qs(urlsplit(choice.get_attribute("href")).query)["disease"][0]
    choice.click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".chips .chip")))

    assert parse_qs(urlsplit(browser.current_url).query)["disease"] == [wanted], "the URL holds the filter"
    hits = browser.find_elements(By.CSS_SELECTOR, "li.hit h2 a")
    assert 0 < len(hits) == min(expected, 10)
    assert browser.find_element(By.CSS_SELECTOR, "h1.count").text.startswith(f"{expected} document")
    for link in hits:  # every hit really mentions the chosen disease
        doc_id = int(urlsplit(link.get_attribute("href")).path.rsplit("/", 1)[1])
        assert wanted in {b.norm_id for b in service.document(doc_id).entities}
    chip = browser.find_element(By.CSS_SELECTOR, ".chips .chip").text
    assert chip.startswith("Disease:")
    _shot(browser, "browser-filtered.png")

    title = hits[0].text
    hits[0].click()
    wait.until(ec.presence_of_element_located((By.ID, "doc-title")))
    assert browser.find_element(By.ID, "doc-title").text == title
    assert browser.find_elements(By.CSS_SELECTOR, ".doc-text mark.ent"), "mentions are highlighted"
    assert browser.find_elements(By.CSS_SELECTOR, ".similar li"), "similar documents are listed"
    shot = _shot(browser, "browser-document.png")
    assert shot.stat().st_size > 10_000

    browser.find_element(By.LINK_TEXT, "‹ Back to results").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".chips .chip")))
    assert parse_qs(urlsplit(browser.current_url).query)["disease"] == [wanted], "back keeps the filter"


def test_keyboard_only_search_and_narrow_screen(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = server
    browser.set_window_size(400, 900)
    try:
        browser.get(base + "/?q=warfarin+bleeding&mode=keyword")
        wait = WebDriverWait(browser, 30)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "li.hit")))
        page_width = browser.execute_script("return document.documentElement.scrollWidth")
        assert page_width <= 400, f"no horizontal scrolling on a narrow screen (page is {page_width}px wide)"
        _shot(browser, "browser-narrow.png")
        browser.find_element(By.TAG_NAME, "body").click()
        ActionChains(browser).send_keys("/").perform()  # "/" focuses the query box
        assert browser.switch_to.active_element.get_attribute("id") == "q"
        ActionChains(browser).send_keys(Keys.TAB, Keys.TAB).perform()  # past the Search button to the mode switch
        radio = browser.switch_to.active_element
        assert (radio.get_attribute("name"), radio.get_attribute("value")) == ("mode", "keyword")
        ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()  # arrows move the mode; the page re-runs
        wait.until(lambda d: parse_qs(urlsplit(d.current_url).query).get("mode") == ["hybrid"])
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "li.hit")))
    finally:
        browser.set_window_size(1360, 1000)
