#!/usr/bin/python3
"""Drives mbd's web UI in a real headless Chromium: log in, open the repository, the
distribution and the package, migrate it, and see it in the target suite. Saves a screenshot
of each page into OUTDIR. Usage: click_path.py URL USER PASSWORD OUTDIR"""
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

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
    driver.find_element(By.ID, "logout").click()
    driver.find_element(By.ID, "login-link")  # waits for the page after logging out
    print("click path ok")
finally:
    driver.quit()
