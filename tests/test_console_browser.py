"""The console in a real browser: Debian's chromium, headless, driven through its
chromium-driver by Selenium, against a real server (real SQLite, real SMPP sessions).

Every page visited is saved as a screenshot at 1280 and 390 px wide, as PNG files in the
directory named by ``HLRSMPP_SCREENSHOTS`` (default: a fresh directory under the system's
temporary directory, printed at the end of the session), named ``<page>-<width>.png``.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = "browser-operator-token"
ACCOUNTS = [{"system_id": "acme", "password": "s3cret", "credit": 50},
            {"system_id": "rival", "password": "other1", "credit": 5}]
WIDTHS = (1280, 390)


def _screenshot_dir() -> Path:
    given = os.environ.get("HLRSMPP_SCREENSHOTS")
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="hlrsmpp-screenshots-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def shots():
    path = _screenshot_dir()
    yield path
    print(f"\nconsole screenshots: {path}")


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are needed: make deps (as root) installs them")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1280,900"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=opts, service=service)
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def st(make_server):
    return make_server(ACCOUNTS, admin={"token": TOKEN}, hlr={"latency_ms": 3000})


class Page:
    """The browser on one server: go, fill, click, wait, and screenshots."""

    def __init__(self, driver, st, shots: Path):
        self.d, self.base, self.shots = driver, f"http://127.0.0.1:{st.http_port}", shots

    def go(self, path: str) -> None:
        self.d.get(self.base + path)

    def el(self, css: str):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def fill(self, css: str, text: str) -> None:
        e = self.el(css)
        e.clear()
        e.send_keys(text)

    def wait(self, condition, timeout: float = 15):
        return WebDriverWait(self.d, timeout).until(condition)

    def wait_text(self, css: str, text: str, timeout: float = 15) -> None:
        self.wait(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text), timeout)

    def login(self, system_id: str, password: str) -> None:
        self.go("/console/login")
        self.fill("#system_id", system_id)
        self.fill("#password", password)
        self.el("form button[type=submit]").click()

    def logout(self) -> None:
        self.el("form.logout button").click()
        self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, "#system_id")))

    def shot(self, name: str) -> None:
        """The page at each width (the height of the whole page), checked for the keyboard
        and for reading (``audit``) at each."""
        for width in WIDTHS:
            self.d.set_window_size(width, 900)
            self.audit(name, keyboard=width == WIDTHS[0])
            self.d.set_window_size(width, 900)
            height = self.d.execute_script("return document.documentElement.scrollHeight")
            self.d.set_window_size(width, min(max(height, 600), 4000))
            if self.d.execute_script("return document.documentElement.scrollWidth") > width:
                wide = self.d.execute_script(
                    "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right"
                    " > arguments[0]).map(e => e.tagName + '.' + e.className).slice(0, 8)", width)
                pytest.fail(f"{name} is wider than {width} px: {wide}")
            self.d.save_screenshot(str(self.shots / f"{name}-{width}.png"))
        self.d.set_window_size(1280, 900)


    def audit(self, name: str, keyboard: bool) -> None:
        """Every form field has a label; every text has a contrast of at least 4.5:1 with
        what is behind it (3:1 when large); and, when ``keyboard``, Tab goes through the
        page's controls, each showing it has the focus."""
        problems = self.d.execute_script(_AUDIT)
        assert not problems, f"{name} at {self.d.get_window_size()['width']} px: {problems[:8]}"
        if not keyboard:
            return
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys
        self.d.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);"
                              "document.body.focus()")
        seen, unfocused = 0, []
        for _ in range(80):
            ActionChains(self.d).send_keys(Keys.TAB).perform()
            focused = self.d.execute_script(_FOCUS_SHOWN)
            if focused == "again":   # round the page once: every control was reached
                break
            if focused is not None:
                seen += 1
                if not focused["shown"]:
                    unfocused.append(focused["what"])
        assert seen and not unfocused, f"{name}: no visible focus on {unfocused[:8]}"
        self.d.execute_script("document.activeElement && document.activeElement.blur()")


#: What ``Page.audit`` checks in the page (returns the problems found).
_AUDIT = r"""
const problems = [];
const visible = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
for (const f of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  if (!visible(f)) continue;
  const named = (f.id && document.querySelector(`label[for="${CSS.escape(f.id)}"]`)) || f.closest('label')
    || f.getAttribute('aria-label') || f.getAttribute('aria-labelledby');
  if (!named) problems.push('no label: ' + (f.name || f.outerHTML.slice(0, 60)));
}
const rgb = c => { const m = c.match(/[\d.]+/g).map(Number); return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1}; };
const lum = c => { const ch = [c.r, c.g, c.b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]; };
const behind = e => { for (let n = e; n; n = n.parentElement) { const c = rgb(getComputedStyle(n).backgroundColor); if (c.a > 0) return c; }
  return {r: 255, g: 255, b: 255, a: 1}; };
for (const e of document.querySelectorAll('body *')) {
  if (e.closest('svg') || !visible(e)) continue;
  const text = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  const placeholder = (e.tagName === 'INPUT' || e.tagName === 'TEXTAREA') && e.placeholder && !e.value;
  if (!text && !placeholder) continue;
  const st = getComputedStyle(e);
  const fg = rgb(placeholder ? getComputedStyle(e, '::placeholder').color : st.color), bg = behind(e);
  const mix = {r: fg.r * fg.a + bg.r * (1 - fg.a), g: fg.g * fg.a + bg.g * (1 - fg.a), b: fg.b * fg.a + bg.b * (1 - fg.a)};
  const [hi, lo] = [lum(mix), lum(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  const size = parseFloat(st.fontSize), large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) problems.push(`contrast ${ratio.toFixed(2)}: ${e.tagName}.${e.className} "${(e.textContent || e.placeholder).trim().slice(0, 30)}"`);
}
return problems;
"""
#: The focused element, and whether it shows it (an outline or a shadow); null for none
#: (or the focus in a field's own parts, e.g. a date's calendar button: the browser draws
#: that ring); "again" for one seen before.
_FOCUS_SHOWN = """
const e = document.activeElement;
if (!e || e === document.body || e === document.documentElement || !e.matches(':focus')) return null;
if (e.dataset.audited && e !== window.auditLast) return 'again';
e.dataset.audited = '1';
window.auditLast = e;
const st = getComputedStyle(e);
const shown = (st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) > 0) || st.boxShadow !== 'none';
return {shown, what: e.tagName + (e.id ? '#' + e.id : '') + ' ' + (e.textContent || e.name || '').trim().slice(0, 30)};
"""


def test_customer_logs_in_looks_up_and_finds_it_in_past_requests(browser, st, shots):
    p = Page(browser, st, shots)
    p.go("/")
    assert browser.current_url.endswith("/console/login?next=/console/")
    p.shot("login")
    p.login("acme", "s3cret")
    p.wait_text("#credit", "50")
    p.shot("dashboard")

    p.go("/console/lookup")
    p.fill("#numbers", "447400123456\n919589123456")
    p.shot("lookup")
    p.el("form.card button[type=submit]").click()
    # The results come in as their simulated HLR latency ends, without a reload.
    p.wait_text("#results", "Waiting for results")
    p.wait_text("#results", "All results are in.")
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert len(rows) == 2 and "447400123456" in rows[0].text
    p.shot("results")

    p.go("/console/history")
    assert "447400123456" in p.el("table.lookups").text
    p.shot("history")
    p.el("#csv").click()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        done = [f for f in browser.downloads.iterdir() if f.suffix == ".csv"]
        if done:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the CSV was not downloaded")
    text = done[0].read_text()
    assert text.startswith("id,batch_id,account") and "447400123456" in text and "919589123456" in text

    p.go("/console/")
    p.wait_text("#credit", "49.8")
    p.go("/console/account")
    assert "system_type" in p.el("main").text
    p.shot("account")


def test_customer_cleans_a_contact_list_premium_and_restores_the_original(browser, st, shots, tmp_path):
    contacts = tmp_path / "clients.csv"
    numbers = [f"4474001234{i:02d}" for i in range(30)]
    contacts.write_text("name,numbers\n" + "".join(f"c{i},{n}\n" for i, n in enumerate(numbers + numbers[:5] + ["12"])))
    p = Page(browser, st, shots)
    p.login("acme", "s3cret")
    p.wait_text("#credit", "50")
    p.go("/console/contacts")
    p.el("#file").send_keys(str(contacts))
    p.shot("contacts")
    p.el("form.card button[type=submit]").click()
    p.wait_text("main h1", "clients.csv")
    p.wait_text("#state", "Not cleaned yet")
    p.el("#mode-premium").click()
    p.el("#clean").click()
    # The progress bar, then the report, without a reload.
    p.wait(EC.presence_of_element_located((By.CSS_SELECTOR, "#state progress")))
    p.wait_text("#state", "Premium cleaning: finished", timeout=30)
    assert p.el("#state progress").get_attribute("value") == "100"
    report = p.el("#report").text
    assert "Contacts read 36" in report and "Duplicates 5" in report and "Looked up (HLR) 30" in report
    p.shot("contact-list")
    p.el("#restore").click()
    browser.switch_to.alert.accept()
    p.wait_text("#state", "Not cleaned yet")
    assert not browser.find_elements(By.CSS_SELECTOR, "#original")
    p.go("/console/")
    p.wait_text("#credit", "47")   # 30 contacts looked up at 0.1


def test_wrong_password_csrf_less_post_and_another_accounts_url_are_refused(browser, st, shots):
    p = Page(browser, st, shots)
    p.login("acme", "wrong")
    p.wait_text(".error", "wrong password")
    p.shot("login-refused")
    p.login("acme", "s3cret")
    p.wait_text("#credit", "50")
    p.go("/console/lookup")
    p.fill("#numbers", "447400123456")
    p.el("form.card button[type=submit]").click()
    p.wait_text("#results", "All results are in.")
    batch = re.search(r"/console/lookup/(\d+)", browser.page_source).group(1)

    # A form without its token (as another site would send it) is refused.
    browser.execute_script("document.querySelector('form.logout input[name=csrf]').value = 'forged';")
    p.el("form.logout button").click()
    p.wait_text("main", "CSRF")
    p.go("/console/")
    p.wait_text("#credit", "49.9")   # still logged in: the forged logout did nothing

    p.logout()
    p.login("rival", "other1")
    p.wait_text(".who", "rival")
    p.go(f"/console/lookup/{batch}")
    assert "447400123456" not in browser.page_source and "Not found" in p.el("h1").text
    p.shot("not-found")


def test_operator_tops_up_and_the_customer_sees_it_then_disconnects_a_session(browser, st, shots):
    from esme import SmpplibEsme
    esme = SmpplibEsme(st.smpp_port)
    esme.bind(system_id="acme", password="s3cret")
    try:
        p = Page(browser, st, shots)
        p.login("admin", TOKEN)
        p.wait_text("main h1", "Accounts")
        p.shot("admin-accounts")
        p.el("a[href='/console/admin/accounts/acme']").click()
        p.fill("#topup-credit", "25")
        p.fill("#topup-note", "invoice <42>")
        p.shot("admin-account")
        p.el("form[action$='/top-up'] button").click()
        p.wait_text(".notice", "credit is now 75")
        assert "invoice <42>" in p.el("main").text   # in the ledger, escaped

        p.go("/console/admin/sessions")
        assert "acme" in p.el("main table").text
        p.shot("admin-sessions")
        p.el("main table button.danger").click()
        p.wait_text(".notice", "Session of acme disconnected")
        p.go("/console/admin/new-account")
        p.shot("admin-new-account")
        p.go("/console/admin/testbench")
        p.shot("admin-testbench")
        p.go("/console/admin/system")
        p.shot("admin-system")
        p.logout()

        p.login("acme", "s3cret")
        p.wait_text("#credit", "75")
    finally:
        esme.close()


def test_the_console_is_usable_by_keyboard(browser, st, shots):
    """Tab from the top of the login page reaches the skip link, then the fields in order;
    Enter logs in."""
    p = Page(browser, st, shots)
    p.go("/console/login")
    active = lambda: browser.switch_to.active_element  # noqa: E731
    # autofocus puts the cursor in the system_id field
    assert active().get_attribute("id") == "system_id"
    active().send_keys("acme")
    from selenium.webdriver.common.keys import Keys
    active().send_keys(Keys.TAB)
    assert active().get_attribute("id") == "password"
    active().send_keys("s3cret" + Keys.ENTER)
    p.wait_text("#credit", "50")
    # Every field of every form has a label.
    for path in ("/console/lookup", "/console/history"):
        p.go(path)
        for field in browser.find_elements(By.CSS_SELECTOR, "main input:not([type=hidden]), main textarea, main select"):
            fid = field.get_attribute("id")
            assert fid and browser.find_elements(By.CSS_SELECTOR, f"label[for='{fid}']"), (path, fid)


def test_chromium_is_the_debian_build(browser):
    try:
        version = browser.capabilities["browserVersion"]
    except (KeyError, WebDriverException):
        version = ""
    assert re.match(r"\d+\.", version)
