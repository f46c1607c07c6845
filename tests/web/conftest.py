"""Browser tests of the web UI: Debian's headless Chromium driven by
selenium through /usr/bin/chromedriver, against a daemon on loopback.

Environment (set by the VM trial web_ui::browser in
crates/server/tests/vm/web_ui.rs): BHATTI_URL (the daemon), BHATTI_KEY
(a user's API key), BHATTI_SCREENSHOTS (where each page's screenshot is
saved). Chromium reaches nothing but loopback: no proxy, every host name
resolves to nothing except 127.0.0.1, background networking, component
updates, sync and the like are off, and Selenium Manager never runs (the
driver's path is given).
"""

import os
import tempfile

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Generous: a sandbox boots under TCG on a loaded 2-core machine.
WAIT = float(os.environ.get("BHATTI_WEB_WAIT", "120"))

LOOPBACK_ONLY = [
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--safebrowsing-disable-auto-update",
    "--password-store=basic",
    "--use-mock-keychain",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions",
]


@pytest.fixture(scope="session")
def base():
    return os.environ["BHATTI_URL"].rstrip("/")


@pytest.fixture(scope="session")
def api_key():
    return os.environ["BHATTI_KEY"]


@pytest.fixture(scope="session")
def shots():
    d = os.environ.get("BHATTI_SCREENSHOTS") or tempfile.mkdtemp(prefix="bhatti-shots-")
    os.makedirs(d, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def downloads():
    with tempfile.TemporaryDirectory(prefix="bhatti-dl-") as d:
        yield d


@pytest.fixture(scope="session")
def driver(downloads):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in LOOPBACK_ONLY:
        opts.add_argument(a)
    opts.add_argument("--window-size=1200,900")
    profile = tempfile.mkdtemp(prefix="bhatti-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_experimental_option("prefs", {
        "download.default_directory": downloads,
        "download.prompt_for_download": False,
        "safebrowsing.enabled": False,
    })
    # The console is read by the last test (script errors, CSP violations).
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(WAIT)
    yield d
    d.quit()


@pytest.fixture(scope="session")
def wait(driver):
    # The live list is rebuilt on every event: an element found a moment
    # ago may be gone; look again.
    return WebDriverWait(driver, WAIT, poll_frequency=0.25,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
