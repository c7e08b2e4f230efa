"""Console sign-in at the company IdP in a real headless Chromium (Selenium).

usage: console_signin.py ADMIN_URL SHOTS_DIR LOGIN...
For each LOGIN, a fresh browser opens the console, follows "Sign in with your … account" to the
IdP (oidc-provider's login and consent pages), and comes back; prints one JSON object per login
of what the console showed.
"""
import json
import os
import sys

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

admin, shots, logins = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(shots, exist_ok=True)


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1280,900"):
        o.add_argument(flag)
    return webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=o)


def wait(d, cond, timeout=15):
    def attempt(d):
        try:
            return cond(d)
        except (StaleElementReferenceException, NoSuchElementException):
            return False
    return WebDriverWait(d, timeout).until(attempt)


def at_console(d):
    return d.current_url.startswith(f"{admin}/ui/") and d.execute_script(
        "return document.body && document.body.dataset.loaded") == "1"


def sign_in(login):
    d = browser()
    out = {"login": login}
    try:
        d.get(f"{admin}/ui/")
        wait(d, lambda d: d.find_element(By.ID, "sso").is_displayed())
        link = d.find_element(By.ID, "sso-link")
        out["button"] = link.text
        link.click()
        # The IdP: log in, then consent; back at the console when done.
        for _ in range(6):
            # Back at the console (loaded), or on one of the IdP's pages (a form).
            at_idp = lambda d: not d.current_url.startswith(admin) and d.find_elements(By.CSS_SELECTOR, "form [type=submit]")
            wait(d, lambda d: at_console(d) or at_idp(d))
            if at_console(d):
                break
            before = d.current_url
            boxes = d.find_elements(By.NAME, "login")
            if boxes:
                boxes[0].send_keys(login)
                d.find_element(By.NAME, "password").send_keys("x")
            d.find_element(By.CSS_SELECTOR, "form [type=submit]").click()
            wait(d, lambda d: d.current_url != before)
        wait(d, at_console)
        def error(d):
            # The sign-in form (and its error line) is replaced once signed in.
            boxes = d.find_elements(By.ID, "signin-error")
            return boxes[0].text if boxes else ""
        wait(d, lambda d: d.find_element(By.ID, "who").text or error(d))
        out["who"] = d.find_element(By.ID, "who").text
        out["error"] = error(d)
        out["url"] = d.current_url
        if out["who"]:
            wait(d, lambda d: d.execute_script("return document.body.dataset.ready"))
            out["page"] = d.execute_script("return document.body.dataset.ready")
            out["may_create_tokens"] = d.execute_script(
                "return !!(state.me && state.me.allowed.includes('token_create'))")
            # The MCP page lists the clients people signed in with (operators and up).
            d.get(f"{admin}/ui/#/mcp")
            wait(d, lambda d: d.execute_script("return document.body.dataset.ready") == "mcp")
            out["clients"] = [td.text for td in d.find_elements(By.CSS_SELECTOR, "#oauth-clients tbody td:first-child")]
        d.save_screenshot(os.path.join(shots, f"signin-{login}.png"))
    except Exception as e:  # noqa: BLE001 - reported, the test decides
        out["exception"] = f"{type(e).__name__}: {e} at {d.current_url}"
        d.save_screenshot(os.path.join(shots, f"signin-{login}-failed.png"))
    finally:
        d.quit()
    return out


print(json.dumps([sign_in(login) for login in logins]))
