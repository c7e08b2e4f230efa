"""The web console in a real headless Chromium (Debian chromium + chromium-driver, Selenium).

usage: console_browser.py ADMIN_URL ROOT_TOKEN VIEWER_TOKEN PROXY_URL CLIENT_TOKEN MOCK_URL SHOTS_DIR
Prints one JSON object of what the page showed and did; screenshots go to SHOTS_DIR.
"""
import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

admin, root, viewer, proxy, client_token, mock, shots = sys.argv[1:8]
os.makedirs(shots, exist_ok=True)
out = {}


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900"):
        o.add_argument(flag)
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=o)


def wait(d, cond, timeout=10):
    def attempt(d):
        try:
            return cond(d)
        except StaleElementReferenceException:
            return False
    return WebDriverWait(d, timeout).until(attempt)


def ready(d, page):
    wait(d, lambda d: d.execute_script("return document.body.dataset.ready") == page)


def shot(d, name):
    d.save_screenshot(os.path.join(shots, f"{name}.png"))


LOADS = [0]


def go(d, page):
    """A full page load (the session's token survives it) showing `page`."""
    LOADS[0] += 1
    d.get(f"{admin}/ui/?load={LOADS[0]}#/{page}")
    ready(d, page.split("?")[0])


def sign_in(d, token):
    d.get(f"{admin}/ui/")
    wait(d, lambda d: d.execute_script("return document.body.dataset.loaded") == "1")
    box = d.find_element(By.ID, "token")
    box.clear()
    box.send_keys(token)
    d.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()


def traffic(n):
    for _ in range(n):
        req = urllib.request.Request(
            f"{proxy}/openai/v1/chat/completions",
            data=json.dumps({"model": "gpt-mock", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"Authorization": f"Bearer {client_token}", "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()


def key_counts():
    stats = json.load(urllib.request.urlopen(f"{mock}/_mock/stats", timeout=10))
    creds = stats["credentials"]
    return {k: creds.get(f"authorization: Bearer sk-console-{k}-000000", 0) for k in ("a", "b")}


def renders(d):
    return int(d.execute_script("return document.body.dataset.renders || '0'"))


def click_and_redraw(d, selector):
    """Clicks an action of the providers page and waits for the table it redraws."""
    before = renders(d)
    d.find_element(By.CSS_SELECTOR, selector).click()
    wait(d, lambda d: renders(d) > before)


def set_weight(d, key, weight):
    box = d.find_element(By.CSS_SELECTOR, f"input[aria-label='weight of {key}']")
    box.clear()
    box.send_keys(str(weight))
    click_and_redraw(d, f"button[data-action=set-weight][data-key={key}]")
    wait(d, lambda d: d.find_element(
        By.CSS_SELECTOR, f"input[aria-label='weight of {key}']").get_attribute("value") == str(weight))


d = browser()
try:
    # A wrong token is refused on the page.
    d.get(f"{admin}/ui/")
    wait(d, lambda d: d.execute_script("return document.body.dataset.loaded") == "1")
    nav = d.execute_script("return performance.getEntriesByType('navigation')[0].toJSON()")
    resources = d.execute_script(
        "return performance.getEntriesByType('resource').map(r => [r.name, r.transferSize])")
    out["time_to_interactive_ms"] = round(nav["domInteractive"] - nav["startTime"], 1)
    out["page_load_ms"] = round(nav["loadEventEnd"] - nav["startTime"], 1)
    out["page_weight_kb"] = round((nav["transferSize"] + sum(s for _, s in resources)) / 1024, 1)
    shot(d, "00-sign-in")
    sign_in(d, "not-a-token")
    wait(d, lambda d: d.find_element(By.ID, "signin-error").text != "")
    out["bad_token_message"] = d.find_element(By.ID, "signin-error").text

    # The admin signs in: providers with live key state.
    sign_in(d, root)
    ready(d, "providers")
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-state=healthy]")) == 2)
    out["who"] = d.find_element(By.ID, "who").text
    shot(d, "01-providers")

    # Weights 3:1 move the proxy's traffic; draining b sends everything to a.
    set_weight(d, "a", 3)
    set_weight(d, "b", 1)
    before = key_counts()
    traffic(40)
    after = key_counts()
    out["split_3_1"] = {k: after[k] - before[k] for k in after}
    click_and_redraw(d, "button[data-action=drain][data-key=b]")
    wait(d, lambda d: d.find_element(
        By.CSS_SELECTOR, "input[aria-label='weight of b']").get_attribute("value") == "0")
    before = key_counts()
    traffic(20)
    after = key_counts()
    out["after_drain"] = {k: after[k] - before[k] for k in after}
    # The request rate column fills in on the next refresh.
    time.sleep(2.5)
    shot(d, "02-providers-drained")

    # A token is created and its plaintext shown once.
    go(d, "tokens")
    d.find_element(By.CSS_SELECTOR, "input[name=name]").send_keys("from-console")
    d.find_element(By.CSS_SELECTOR, "input[name=owner]").send_keys("app")
    d.find_element(By.XPATH, "//button[text()='Create']").click()
    wait(d, lambda d: d.find_elements(By.ID, "secret-once"))
    plaintext = d.find_element(By.ID, "secret-once").text
    out["token_prefix"] = plaintext[:7]
    wait(d, lambda d: "from-console" in d.find_element(By.TAG_NAME, "main").text)
    shot(d, "03-token-created")
    go(d, "tokens")
    out["token_shown_again"] = plaintext in d.page_source
    out["token_listed"] = "from-console" in d.find_element(By.TAG_NAME, "main").text

    # A secret with a bad name: the API's error is shown next to the field it names.
    go(d, "secrets")
    forms = d.find_elements(By.CSS_SELECTOR, "form")
    create = forms[-1]
    create.find_element(By.CSS_SELECTOR, "input[name=name]").send_keys("bad name")
    create.find_element(By.CSS_SELECTOR, "input[name=value]").send_keys("sk-x")
    create.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, ".field-error[data-field=name]"))
    out["field_error"] = d.find_element(By.CSS_SELECTOR, ".field-error[data-field=name]").text
    out["secrets_used_by"] = d.find_element(By.TAG_NAME, "table").text
    shot(d, "04-secrets")

    # Usage charts from the audit records, the other pages.
    go(d, "usage?by=provider&hours=1&bucket=60")
    out["usage_bars"] = len(d.find_elements(By.CSS_SELECTOR, "svg.chart rect"))
    out["usage_legend"] = d.find_element(By.CSS_SELECTOR, ".legend").text
    shot(d, "05-usage")
    for i, page in enumerate(["limits", "mcp"]):
        go(d, page)
        out[f"page_{page}"] = d.find_element(By.TAG_NAME, "main").text[:200]
        shot(d, f"{6 + i:02d}-{page}")

    # An OAuth provider from the presets catalog: the redirect URI to register is shown.
    go(d, "oauth")
    from selenium.webdriver.support.ui import Select
    Select(d.find_element(By.CSS_SELECTOR, "select[name=preset]")).select_by_value("github")
    out["preset_token_endpoint"] = d.find_element(
        By.CSS_SELECTOR, "input[name=token_endpoint]").get_attribute("value")
    d.find_element(By.CSS_SELECTOR, "input[name=client_id]").send_keys("console-client")
    d.find_element(By.CSS_SELECTOR, "input[name=client_secret]").send_keys("console-secret-value")
    d.find_element(By.XPATH, "//form//button[text()='Create']").click()
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "code[data-redirect=github]"))
    out["redirect_uri"] = d.find_element(By.CSS_SELECTOR, "code[data-redirect=github]").text
    out["oauth_row"] = d.find_element(By.TAG_NAME, "table").text
    shot(d, "08-oauth")

    # An agent environment: OAuth turned on provisions an app (secret once); a test token with
    # its invoke URL and curl line.
    go(d, "agents")
    d.find_element(By.CSS_SELECTOR, "button[data-action=oauth-toggle][data-env=prod]").click()
    wait(d, lambda d: d.find_elements(By.ID, "secret-once"))
    out["app_secret_len"] = len(d.find_element(By.ID, "secret-once").text)
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "button[data-action=test][data-env=prod]"))
    d.find_element(By.CSS_SELECTOR, "button[data-action=test][data-env=prod]").click()
    wait(d, lambda d: d.find_elements(By.ID, "test-token"))
    out["test_token_card"] = d.find_element(By.ID, "test-token").text
    shot(d, "09-agents")

    # A viewer: no write action anywhere, and a write forged from the page's session is
    # refused by the API.
    d.find_element(By.ID, "signout").click()
    wait(d, lambda d: d.find_elements(By.ID, "token"))
    sign_in(d, viewer)
    ready(d, "providers")
    out["viewer_who"] = d.find_element(By.ID, "who").text
    writes = []
    for page in ["providers", "tokens", "secrets", "oauth", "mcp", "agents"]:
        go(d, page)
        writes += [b.text for b in d.find_elements(By.CSS_SELECTOR, "main button")]
        writes += [f.get_attribute("outerHTML")[:60] for f in d.find_elements(By.CSS_SELECTOR, "main form")]
    out["viewer_write_controls"] = writes
    shot(d, "10-viewer-providers")
    out["forged_write_status"] = d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/v1/providers/openai/keys/b', {method: 'PATCH',
          headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('sluice.token'),
                    'Content-Type': 'application/json'},
          body: JSON.stringify({weight: 100})}).then(r => done(r.status), e => done(String(e)));
    """)
    out["csp"] = True
finally:
    d.quit()
print(json.dumps(out))
