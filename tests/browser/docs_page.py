"""The API page as an app developer uses it, in a real headless Chromium (Debian's `chromium`
and `chromium-driver`, driven by Selenium).

It starts the gateway binary with embedded defaults on free loopback ports, opens `/docs`,
checks that Swagger UI rendered both CAMARA operations of the configured version and that no
network request failed, then runs the whole flow through the page's own controls: Authorize
with the prefilled demo client, send-code with "Try it out", the SMS read in the sandbox inbox
through the link in the page description, validate-code with "Try it out", and the 204 the
page shows. A screenshot of the final page is saved under target/.

Usage: python3 tests/browser/docs_page.py <otp-gateway binary> <screenshot.png>
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/debug/otp-gateway"
SCREENSHOT = sys.argv[2] if len(sys.argv) > 2 else "target/docs-page.png"
PHONE = "+34600000001"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def stop(proc):
    proc.terminate()
    proc.wait(timeout=10)
    proc.stdout.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(version=None):
    """The binary with embedded defaults; the issuer is the page's origin, as it is with the
    defaults on port 8080 (Swagger UI reads the discovery document from it)."""
    api, admin = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        OTPGW_HTTP__LISTEN=f"127.0.0.1:{api}",
        OTPGW_ADMIN__LISTEN=f"127.0.0.1:{admin}",
        OTPGW_AUTH__ISSUER=f"http://127.0.0.1:{api}",
        OTPGW_HTTP__SHUTDOWN_GRACE="0s",
    )
    if version:
        env["OTPGW_API__CAMARA_VERSION"] = version
    proc = subprocess.Popen(
        [BINARY, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 30
    banner = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        banner.append(line)
        if "Try it:" in line:
            # Keep reading, so the simulator's SMS lines never fill the pipe.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, f"http://127.0.0.1:{api}", f"http://127.0.0.1:{admin}", banner
    proc.kill()
    raise RuntimeError("the gateway did not start:\n" + "".join(banner))


def browser():
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(tool):
            raise RuntimeError(f"{tool} is missing: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,2200", "--no-first-run", "--disable-extensions",
                "--disable-component-update", "--disable-background-networking"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # The Debian driver, never one Selenium Manager would download.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def network_events(driver):
    """Every CDP Network event since the last call."""
    out = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"].startswith("Network."):
            out.append(msg)
    return out


def failed_requests(events):
    """Requests that failed to load, or were answered 4xx/5xx, as (url, reason)."""
    urls = {}
    failures = []
    for e in events:
        p = e["params"]
        if e["method"] == "Network.requestWillBeSent":
            urls[p["requestId"]] = p["request"]["url"]
        elif e["method"] == "Network.responseReceived":
            status = p["response"]["status"]
            if status >= 400:
                failures.append((p["response"]["url"], status))
        elif e["method"] == "Network.loadingFailed":
            failures.append((urls.get(p["requestId"], "?"), p.get("errorText")))
    return failures, sorted(set(urls.values()))


class DocsPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gateway, cls.api, cls.admin, cls.banner = start_gateway()
        cls.driver = browser()
        cls.wait = WebDriverWait(cls.driver, 20)

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        stop(cls.gateway)

    def find(self, css, root=None):
        return self.wait.until(
            lambda d: (root or d).find_element(By.CSS_SELECTOR, css)
        )

    def click(self, css, root=None):
        el = self.wait.until(lambda d: (root or d).find_element(By.CSS_SELECTOR, css))
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        self.wait.until(lambda d: el.is_displayed() and el.is_enabled())
        el.click()
        return el

    def try_it(self, operation_id, body):
        """Expands an operation, Try it out, replaces the body, Execute; returns (status,
        response body text) as the page shows them."""
        op = self.find(f"#operations-OTP_Management-{operation_id}")
        if "is-open" not in op.get_attribute("class"):
            self.click(".opblock-summary-control", op)
        self.click(".try-out__btn", op)
        area = self.find("textarea.body-param__text", op)
        area.clear()
        area.send_keys(json.dumps(body))
        self.click(".execute", op)
        status = self.wait.until(
            lambda d: op.find_element(
                By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_status"
            ).text.strip() or False
        )
        bodies = op.find_elements(By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_description pre")
        text = bodies[0].text if bodies else ""
        return status, text

    def test_an_app_developer_runs_the_whole_flow_from_the_page(self):
        d = self.driver
        d.get(f"{self.api}/docs")
        # Both operations of the configured (default) version rendered.
        self.wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) == 2)
        paths = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")]
        self.assertEqual(paths, ["/send-code", "/validate-code"])
        self.assertIn("1.1.1", self.find(".info .title").text)
        self.assertIn("Try it from this page", self.find(".info .description").text)

        # Authorize: the OpenID Connect scheme, read from the discovery document, offers the
        # client-credentials flow; the demo client is prefilled.
        self.click(".auth-wrapper .btn.authorize")
        modal = self.find(".modal-ux")
        self.wait.until(lambda d: "client_credentials" in modal.text)
        client_id = self.find("input[data-name='clientId']", modal)
        self.assertEqual(client_id.get_attribute("value"), "demo")
        self.assertEqual(self.find("input[data-name='clientSecret']", modal).get_attribute("value"), "demo-secret")
        self.click(".auth-btn-wrapper .btn.modal-btn.auth.authorize", modal)
        self.wait.until(lambda d: "Logout" in modal.text)
        self.assertNotIn("Auth Error", modal.text)
        self.click(".btn-done", modal)

        # send-code through "Try it out".
        status, text = self.try_it(
            "sendCode", {"phoneNumber": PHONE, "message": "{{code}} is your code"}
        )
        self.assertEqual(status, "200", text)
        authentication_id = json.loads(text)["authenticationId"]

        # The SMS, in the sandbox inbox linked from the page description.
        link = self.find(".info .description a[href*='/sandbox/v1/messages']")
        inbox = link.get_attribute("href")
        self.assertTrue(inbox.startswith(self.admin), inbox)
        page = d.current_window_handle
        d.switch_to.new_window("tab")
        d.get(inbox)
        code = None
        deadline = time.time() + 10
        while code is None and time.time() < deadline:
            messages = json.loads(d.find_element(By.TAG_NAME, "body").text)
            texts = [m["text"] for m in messages if m["phoneNumber"] == PHONE]
            match = re.match(r"^(\d+) is your code$", texts[-1]) if texts else None
            if match:
                code = match.group(1)
            else:
                time.sleep(0.2)
                d.refresh()
        self.assertIsNotNone(code, "no SMS in the inbox")
        d.close()
        d.switch_to.window(page)

        # validate-code through "Try it out": the page shows the 204.
        status, _ = self.try_it(
            "validateCode", {"authenticationId": authentication_id, "code": code}
        )
        self.assertEqual(status, "204")
        # What the developer sees: validate-code's request body, the curl line with the
        # token Swagger UI obtained, and the 204; then the whole page beside it.
        os.makedirs(os.path.dirname(SCREENSHOT) or ".", exist_ok=True)
        d.set_window_size(1280, 1300)
        answer = self.find("#operations-OTP_Management-validateCode .live-responses-table")
        d.execute_script("arguments[0].scrollIntoView({block: 'end'});", answer)
        d.save_screenshot(SCREENSHOT)
        height = d.execute_script("return document.documentElement.scrollHeight")
        d.set_window_size(1280, min(height + 100, 8000))
        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(SCREENSHOT.replace(".png", "-full.png"))

        # No request failed (the inbox tab included), and nothing left the gateway's origins.
        failures, urls = failed_requests(network_events(d))
        # The browser's own favicon probe on the inbox tab: the admin listener serves JSON
        # only, and no page asked for it.
        failures = [f for f in failures if f[0] != f"{self.admin}/favicon.ico"]
        self.assertEqual(failures, [], f"failed requests among {urls}")
        foreign = [u for u in urls if not (u.startswith(self.api) or u.startswith(self.admin))
                   and not u.startswith("data:")]
        self.assertEqual(foreign, [], "requests beyond the gateway")
        for needed in ("/docs/swagger-ui-bundle.js", "/openapi.json",
                       "/.well-known/openid-configuration", "/oauth2/token",
                       "/one-time-password-sms/v1/send-code",
                       "/one-time-password-sms/v1/validate-code"):
            self.assertTrue(any(needed in u for u in urls), f"{needed} not requested: {urls}")
        severe = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"
                  and not e["message"].startswith(f"{self.admin}/favicon.ico ")]
        self.assertEqual(severe, [], "console errors")

    def test_the_page_follows_the_configured_camara_version(self):
        gateway, api, _, _ = start_gateway("1.1.0")
        try:
            d = self.driver
            d.get(f"{api}/docs")
            self.wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) == 2)
            self.assertIn("1.1.0", self.find(".info .title").text)
            # v1.1.0 has no XCorrelator schema; v1.1.1 (the other test's gateway) lists it.
            models = self.find(".models").text
            self.assertIn("SendCodeBody", models)
            self.assertNotIn("XCorrelator", models)
            d.get(f"{self.api}/docs")
            self.wait.until(lambda d: "XCorrelator" in d.find_element(By.CSS_SELECTOR, ".models").text)
        finally:
            stop(gateway)


if __name__ == "__main__":
    result = unittest.main(argv=sys.argv[:1], exit=False).result
    failed = len(result.failures) + len(result.errors)
    print(f"browser: {result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed or not result.wasSuccessful() or result.testsRun == 0 else 0)
