#!/usr/bin/env python3
"""Drives the web console in headless Chromium (Debian's chromium and
chromium-driver, Python selenium) for tests/console_browser.rs.

Input: a JSON file (argv[1]) with the console's base URL, the accounts to
sign in with (name, password, TOTP secret, language), the screenshot
directory, the path of axe-core's axe.min.js and the marker text of the
hostile subject. For each account: the login page, sign-in with password
and TOTP, the dashboard, the inbox, the outbox, sign-out; on every page
the `lang` and `dir` of <html>, a screenshot and an axe-core run.
Prints one JSON object (pages checked, problems) and exits 1 on any
problem. Runs only on loopback addresses it is given.
"""
import base64
import hashlib
import hmac
import json
import struct
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.support.ui import WebDriverWait

AXE_RUN = """
var done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']})
  .then(function (r) { done(r.violations.map(function (v) {
      return {id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length}; })); })
  .catch(function (e) { done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: 0}]); });
"""


def totp(secret_b32, now=None):
    secret = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((now or time.time()) // 30)
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000
    return "%06d" % code


def browser(profile):
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
              "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1280,900",
              "--user-data-dir=" + profile]:
        o.add_argument(a)
    d = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=o)
    d.set_page_load_timeout(20)
    d.set_script_timeout(20)
    return d


def submit(d, button):
    """Clicks a form's button and waits until the next page has loaded: the
    mark set on the old page's window is gone and the new one is complete
    (Chromium can answer a query about the old page's nodes with an
    inspector error while it navigates, so errors mean "not yet")."""
    d.execute_script("window.__isnad_old_page = true")
    button.click()
    WebDriverWait(d, 20, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script(
            "return window.__isnad_old_page === undefined && document.readyState === 'complete'"))


def main():
    cfg = json.load(open(sys.argv[1]))
    base, shots, marker = cfg["base"], cfg["shots"], cfg["marker"]
    axe = open(cfg["axe"]).read()
    problems, pages = [], []

    def check(d, who, page, lang):
        html = d.find_element(By.TAG_NAME, "html")
        want_dir = "rtl" if lang == "ar" else "ltr"
        if html.get_attribute("lang") != lang or html.get_attribute("dir") != want_dir:
            problems.append("%s %s: html lang=%r dir=%r, want %s %s" % (
                who, page, html.get_attribute("lang"), html.get_attribute("dir"), lang, want_dir))
        d.save_screenshot("%s/%s-%s.png" % (shots, page, lang))
        d.execute_script(axe)
        for v in d.execute_async_script(AXE_RUN):
            if v["impact"] in ("serious", "critical"):
                problems.append("%s %s (%s): axe %s %s: %s (%d nodes)" % (
                    who, page, lang, v["impact"], v["id"], v["help"], v["nodes"]))
        pages.append("%s/%s" % (lang, page))

    for u in cfg["users"]:
        lang, who = u["lang"], u["name"]
        with tempfile.TemporaryDirectory() as profile:
            d = browser(profile)
            try:
                d.get(base + "/console/login?lang=" + lang)
                check(d, who, "login", lang)
                d.find_element(By.ID, "user").send_keys(u["name"])
                d.find_element(By.ID, "password").send_keys(u["password"])
                d.find_element(By.ID, "totp").send_keys(totp(u["totp"]))
                submit(d, d.find_element(By.CSS_SELECTOR, "form.login button[type=submit]"))
                if not d.current_url.endswith("/console/dashboard"):
                    problems.append("%s: sign-in ended at %s: %s" % (
                        who, d.current_url, d.find_element(By.TAG_NAME, "main").text))
                    continue
                check(d, who, "dashboard", lang)
                d.get(base + "/console/inbox")
                check(d, who, "inbox", lang)
                subjects = [e.text for e in d.find_elements(By.CSS_SELECTOR, "td.subject")]
                if not any(marker in s and "<script>" in s for s in subjects):
                    problems.append("%s inbox: the hostile subject is not shown as text: %r" % (who, subjects))
                if d.execute_script("return window.__isnad_xss === undefined") is not True:
                    problems.append("%s inbox: the subject's script ran" % who)
                if d.find_elements(By.CSS_SELECTOR, "main script"):
                    problems.append("%s inbox: a <script> element is in the page" % who)
                d.get(base + "/console/outbox")
                check(d, who, "outbox", lang)
                submit(d, d.find_element(By.CSS_SELECTOR, "form[action='/console/logout'] button"))
                check(d, who, "logout", lang)
                d.get(base + "/console/dashboard")
                if not d.current_url.split("?")[0].endswith("/console/login"):
                    problems.append("%s: after sign-out the dashboard opened (%s)" % (who, d.current_url))
            finally:
                d.quit()
    print(json.dumps({"pages": pages, "problems": problems}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
