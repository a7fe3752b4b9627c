#!/usr/bin/python3
"""Drives mbd's web UI in a real headless Chromium: log in, open the repository, the
distribution and the package, migrate it, and see it in the target suite; then watch the home
page update itself when the next migration happens. Saves a screenshot of each page into
OUTDIR. Usage: click_path.py URL USER PASSWORD OUTDIR"""
import base64
import re
import sys
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, user, password, outdir = sys.argv[1:5]
options = webdriver.ChromeOptions()
for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--window-size=1280,900"):
    options.add_argument(arg)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
# Lookups wait for the next page after a click instead of racing it.
driver.implicitly_wait(10)
try:
    driver.get(url + "/")
    driver.save_screenshot(f"{outdir}/home.png")
    assert "Log in" in driver.find_element(By.ID, "login-link").text
    driver.find_element(By.ID, "login-link").click()
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()
    whoami = driver.find_element(By.ID, "whoami").text
    assert whoami.startswith(user), whoami
    driver.find_element(By.LINK_TEXT, "test").click()
    driver.save_screenshot(f"{outdir}/repository.png")
    driver.find_element(By.CSS_SELECTOR, "a[href='/ui/dist/bookworm-test-unstable']").click()
    driver.find_element(By.LINK_TEXT, "mbd-hello").click()
    before = driver.find_element(By.CSS_SELECTOR, "#dist-bookworm-test-testing .version").text
    assert before == "", f"testing already has {before!r}"
    driver.find_element(By.ID, "migrate-bookworm-test-unstable").click()
    message = driver.find_element(By.ID, "message").text
    assert message.startswith("migrate "), message
    after = driver.find_element(By.CSS_SELECTOR, "#dist-bookworm-test-testing .version").text
    assert after == "1.0-2~test12+1", after
    driver.save_screenshot(f"{outdir}/package.png")
    driver.find_element(By.LINK_TEXT, "bookworm-test-testing").click()
    driver.find_element(By.ID, "snapshot-name").send_keys("ui1")
    driver.find_element(By.ID, "snapshot-create").click()
    snapshots = driver.find_element(By.ID, "snapshots").text
    assert "ui1" in snapshots, snapshots
    driver.get(url + "/")
    events = driver.find_element(By.ID, "events").text
    assert "migrate" in events and user in events, events
    # Live: the home page follows the event stream, without a reload (the marker set in
    # the page survives), and shows times as dates in UTC with a relative hint.
    driver.get(url + "/")
    WebDriverWait(driver, 20).until(
        lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("data-live-stream") == "open")
    driver.execute_script("window.mbdMarker = 42;")
    form = b"source=mbd-hello&distribution=bookworm-test-testing"
    request = urllib.request.Request(url + "/api/migrate", data=form, method="POST")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    urllib.request.urlopen(request).read()
    # The table is replaced under the reader's feet: a stale element is read again.
    WebDriverWait(driver, 20, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: "bookworm-test-stable" in d.find_element(By.ID, "uploads").text)
    assert driver.execute_script("return window.mbdMarker") == 42, "the page was reloaded"
    uploads = driver.find_element(By.ID, "uploads").text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC, (just now|\d+ min ago)", uploads), uploads
    driver.save_screenshot(f"{outdir}/live.png")
    driver.find_element(By.ID, "logout").click()
    driver.find_element(By.ID, "login-link")  # waits for the page after logging out
    print("click path ok")
finally:
    driver.quit()
