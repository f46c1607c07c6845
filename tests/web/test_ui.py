"""The web UI in a real browser, in order (each test goes on from the
last one's page and sandbox): log in, create a sandbox, the terminal
(echo, resize and `stty size`, scrollback after a reload, a dropped
connection reattached), files (upload,
view, download), exec, the console panel (the agent's boot line), a port link that appears when the guest listens
(and opens the guest's page), stop and start, the resource lists, destroy,
a create from a template with a new volume. Each
page's screenshot is saved. Every wait is a WebDriverWait on what the
page shows, never a fixed sleep.
"""

import json
import os
import re
import urllib.request

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

NAME = "webui"


def shot(driver, shots, name):
    driver.save_screenshot(os.path.join(shots, f"{name}.png"))


def css(driver, sel):
    return driver.find_element(By.CSS_SELECTOR, sel)


def click(wait, sel):
    """Clicks `sel`, finding it again if the live list replaced it."""
    wait.until(lambda d: css(d, sel).click() or True)


def row(driver):
    return css(driver, f'tr[data-name="{NAME}"]')


def term_text(driver):
    return driver.execute_script("return window.bhattiTerm ? window.bhattiTermText() : ''")


def term_lines(driver):
    return [line.rstrip() for line in term_text(driver).split("\n")]


def type_in_terminal(driver, text):
    area = css(driver, ".xterm-helper-textarea")
    ActionChains(driver).click(css(driver, "#terminal")).perform()
    area.send_keys(text)


def open_terminal(driver, wait, base):
    driver.get(f"{base}/ui/#/sb/{NAME}/term")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#terminal[data-state="connected"]')))
    # The shell's prompt: something is on the screen.
    wait.until(lambda d: term_text(d).strip() != "")


def test_login(driver, wait, base, api_key, shots):
    driver.get(f"{base}/")
    wait.until(EC.url_contains("/ui/"))
    key = wait.until(EC.visibility_of_element_located((By.ID, "login-key")))
    assert driver.switch_to.active_element == key, "the key field has focus"
    shot(driver, shots, "01-login")
    key.send_keys("bht_" + "0" * 64 + "\n")
    wait.until(EC.text_to_be_present_in_element((By.ID, "login-error"), "not valid"))
    key = css(driver, "#login-key")
    key.clear()
    key.send_keys(api_key + "\n")
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "main h1"), "Sandboxes"))
    assert driver.execute_script("return localStorage.getItem('bhatti.key')") == api_key


def test_create(driver, wait, shots):
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#sandboxes[aria-busy=false]")))
    css(driver, "#c-name").send_keys(NAME)
    css(driver, "#create-form button[type=submit]").click()
    wait.until(lambda d: "running" in row(d).text)
    if css(driver, "#live").text == "● live":
        # The event stream's `created` of this sandbox is in the activity list.
        wait.until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, f'#events li[data-type="created"][data-name="{NAME}"]')))
    else:
        assert css(driver, "#live").text == "○ polling"
    shot(driver, shots, "02-list")


def test_terminal_echo(driver, wait, base, shots):
    open_terminal(driver, wait, base)
    type_in_terminal(driver, "echo hi\n")
    wait.until(lambda d: "hi" in term_lines(d))
    shot(driver, shots, "03-terminal")


def stty_size(driver, wait, tag):
    """Runs `stty size` marked with `tag`; returns (rows, cols) the guest says."""
    type_in_terminal(driver, f"echo {tag}-$((1+1)); stty size\n")
    pattern = re.compile(rf"^{tag}-2\n(\d+) (\d+)$", re.M)
    found = wait.until(lambda d: pattern.search("\n".join(term_lines(d))))
    return int(found.group(1)), int(found.group(2))


def test_resize_changes_stty_size(driver, wait, shots):
    size = lambda d: tuple(d.execute_script("return [window.bhattiTerm.rows, window.bhattiTerm.cols]"))
    before_term = size(driver)
    before = stty_size(driver, wait, "sizeA")
    assert before == before_term, f"guest says {before}, terminal is {before_term}"
    driver.set_window_size(760, 560)
    wait.until(lambda d: size(d) != before_term)
    after_term = size(driver)
    # The resize message reaches the guest before the keys typed after it.
    after = stty_size(driver, wait, "sizeB")
    assert after == after_term, f"guest says {after}, terminal is {after_term}"
    assert after != before
    shot(driver, shots, "04-terminal-resized")
    driver.set_window_size(1200, 900)


def test_reload_keeps_scrollback(driver, wait, shots):
    type_in_terminal(driver, "echo scroll-$((6*7))\n")
    wait.until(lambda d: "scroll-42" in term_lines(d))
    driver.refresh()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#terminal[data-state="connected"]')))
    # The daemon replays the session's scrollback on the reattach.
    wait.until(lambda d: "scroll-42" in term_lines(d))
    shot(driver, shots, "05-terminal-reloaded")


def test_dropped_connection_reattaches(driver, wait):
    driver.execute_script("window.oldSocket = window.bhattiTermSocket(); window.oldSocket.close();")
    wait.until(lambda d: d.execute_script(
        "const s = window.bhattiTermSocket(); return s !== window.oldSocket && s.readyState === 1"))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#terminal[data-state="connected"]')))
    type_in_terminal(driver, "echo again-$((2+3))\n")
    wait.until(lambda d: "again-5" in term_lines(d))
    # Reattached, not a new shell: the earlier output is still there.
    assert "scroll-42" in term_lines(driver)


def test_files_upload_view_download(driver, wait, base, shots, downloads, tmp_path):
    driver.get(f"{base}/ui/#/sb/{NAME}")
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "main h1"), NAME))
    path = css(driver, "#files-path")
    path.clear()
    path.send_keys("/tmp\n")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#files-list table")))
    # Usage, where the daemon serves GET /sandboxes/ID/stats.
    wait.until(lambda d: any(t in css(d, "#stats").text for t in ("Disk used", "does not report usage")))
    local = tmp_path / "hello-web.txt"
    content = "uploaded from the browser\nline 2\n"
    local.write_text(content)
    css(driver, "#files-upload").send_keys(str(local))
    entry = '#files-list tr[data-name="hello-web.txt"]'
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, entry)))
    css(driver, f"{entry} button.link").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "files-view"), "uploaded from the browser"))
    css(driver, f'{entry} [data-action="download"]').click()
    target = os.path.join(downloads, "hello-web.txt")
    wait.until(lambda d: os.path.isfile(target) and open(target).read() == content)
    shot(driver, shots, "06-detail-files")


def test_exec_streams_output(driver, wait, shots):
    cmd = css(driver, "#exec-cmd")
    cmd.send_keys("echo out-$((1+1)); echo err >&2; exit 3\n")
    wait.until(EC.text_to_be_present_in_element((By.ID, "exec-status"), "exit code 3"))
    out = css(driver, "#exec-out").text
    assert "out-2" in out and "err" in out, out
    shot(driver, shots, "07-detail-exec")


def test_console_shows_the_boot(driver, wait, shots):
    log = css(driver, "#console-out")
    assert log.get_attribute("role") == "log"
    assert log.get_attribute("aria-live") == "off"
    # Guests boot with `quiet`: the first line is the agent's.
    def booted(d):
        return "starting as PID 1" in css(d, "#console-out").get_attribute("textContent")

    wait.until(booted)
    Select(css(driver, "#console-lines")).select_by_value("1000")
    # Refresh from the keyboard: focus the button, press Enter.
    refresh = css(driver, "#console-refresh")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", refresh)
    refresh.send_keys("\n")
    wait.until(EC.text_to_be_present_in_element((By.ID, "console-status"), "lines"))
    wait.until(booted)
    shot(driver, shots, "07b-detail-console")


def test_port_link_appears_and_opens(driver, wait, base, shots):
    cmd = css(driver, "#exec-cmd")
    cmd.clear()
    cmd.send_keys("mkdir -p /tmp/www && echo page-from-guest > /tmp/www/index.html && "
                  "(busybox httpd -f -p 8000 -h /tmp/www </dev/null >/dev/null 2>&1 &)\n")
    wait.until(EC.text_to_be_present_in_element((By.ID, "exec-status"), "exit code 0"))
    driver.get(f"{base}/ui/#/")
    link = f'tr[data-name="{NAME}"] a[data-port="8000"]'
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, link)))
    shot(driver, shots, "08-list-port")
    driver.get(wait.until(lambda d: css(d, link).get_attribute("href")))
    wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "page-from-guest"))


def test_session_attach_shows_scrollback(driver, wait, base, shots):
    driver.get(f"{base}/ui/#/sb/{NAME}")
    wait.until(EC.element_to_be_clickable((By.ID, "sessions-show"))).click()
    try:
        attach = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, '#sessions a[aria-label^="Attach"]')))
    except Exception:
        print("sessions:", css(driver, "#sessions").get_attribute("innerHTML"))
        raise
    shot(driver, shots, "09-detail-sessions")
    attach.click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#terminal[data-state="connected"]')))
    wait.until(lambda d: "scroll-42" in term_lines(d))


def test_two_windows_do_not_fight_over_a_session(driver, wait, shots):
    first = driver.current_window_handle
    url = driver.current_url
    driver.switch_to.new_window("tab")
    driver.get(url)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#terminal[data-state="connected"]')))
    driver.switch_to.window(first)
    # Detached by the second window, the first asks instead of taking the
    # session back.
    wait.until(EC.visibility_of_element_located((By.ID, "term-again")))
    shot(driver, shots, "10-terminal-displaced")
    driver.switch_to.window(driver.window_handles[-1])
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#terminal[data-state="connected"]')))
    type_in_terminal(driver, "echo two-$((1+1))\n")
    wait.until(lambda d: "two-2" in term_lines(d))
    driver.close()
    driver.switch_to.window(first)
    css(driver, "#term-again").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#terminal[data-state="connected"]')))
    wait.until(lambda d: "two-2" in term_lines(d))


def confirm(driver, wait):
    ok = wait.until(EC.element_to_be_clickable((By.ID, "confirm-ok")))
    ok.click()


def test_stop_and_start(driver, wait, base, shots):
    driver.get(f"{base}/ui/#/")
    wait.until(lambda d: "running" in row(d).text)
    click(wait, f'tr[data-name="{NAME}"] [data-action="stop"]')
    shot(driver, shots, "11-confirm-stop")
    confirm(driver, wait)
    wait.until(lambda d: "stopped" in row(d).text)
    click(wait, f'tr[data-name="{NAME}"] [data-action="start"]')
    wait.until(lambda d: "running" in row(d).text)
    shot(driver, shots, "12-list-restarted")


def test_resources_page(driver, wait, base, shots):
    driver.get(f"{base}/ui/#/resources")
    for name in ("snapshots", "templates", "volumes", "secrets"):
        wait.until(lambda d: css(d, f"#res-{name}").text not in ("", "Loading…"))
    shot(driver, shots, "13-resources")


UNNAMED = """
const named = (el) => (el.labels && el.labels.length) || el.getAttribute("aria-label")
  || el.getAttribute("aria-labelledby") || (el.textContent || "").trim() || el.title;
return [...document.querySelectorAll("input, select, textarea, button, a[href]")]
  .filter((el) => !el.closest(".xterm") && el.offsetParent !== null && !named(el))
  .map((el) => el.outerHTML.slice(0, 120));
"""


def test_every_control_has_a_name(driver, wait, base):
    """Screen readers: every visible form control, button and link of the
    list and a sandbox's page has a label or a name."""
    driver.get(f"{base}/ui/#/")
    wait.until(lambda d: "running" in row(d).text)
    assert driver.execute_script(UNNAMED) == []
    driver.get(f"{base}/ui/#/sb/{NAME}")
    wait.until(EC.presence_of_element_located((By.ID, "sb-state")))
    assert driver.execute_script(UNNAMED) == []


def test_theme_toggle_and_phone(driver, wait, base, shots):
    driver.get(f"{base}/ui/#/")
    wait.until(lambda d: "running" in row(d).text)
    css(driver, "#theme").click()
    assert driver.execute_script("return document.documentElement.dataset.theme") == "dark"
    driver.set_window_size(390, 844)
    wait.until(lambda d: "running" in row(d).text)
    shot(driver, shots, "14-phone-dark")
    css(driver, "#theme").click()
    driver.set_window_size(1200, 900)


def test_destroy(driver, wait, shots):
    click(wait, f'tr[data-name="{NAME}"] [data-action="destroy"]')
    confirm(driver, wait)
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, f'tr[data-name="{NAME}"]'))
    shot(driver, shots, "15-list-empty")


def test_create_from_template_with_volume(driver, wait, base, api_key, shots):
    req = urllib.request.Request(
        f"{base}/templates", method="POST", data=json.dumps({"name": "webtpl", "memory_mb": 256}).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    # Straight to the daemon on loopback, whatever proxy the environment names.
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req).read()
    driver.get(f"{base}/ui/#/")
    driver.refresh()
    wait.until(lambda d: [o.text for o in d.find_elements(By.CSS_SELECTOR, "#c-template option")].count("webtpl") == 1)
    Select(css(driver, "#c-template")).select_by_visible_text("webtpl")
    css(driver, "#c-name").send_keys("webvol")
    css(driver, "#c-volume").send_keys("webdata")
    css(driver, "#create-form button[type=submit]").click()
    sel = 'tr[data-name="webvol"]'
    wait.until(lambda d: "running" in css(d, sel).text and "256 MB" in css(d, sel).text)
    click(wait, f'{sel} [data-action="destroy"]')
    confirm(driver, wait)
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, sel))
    # The volume outlives its sandbox.
    driver.get(f"{base}/ui/#/resources")
    wait.until(EC.text_to_be_present_in_element((By.ID, "res-volumes"), "webdata"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "res-templates"), "webtpl"))


def test_no_script_errors_or_policy_violations(driver):
    """Nothing the UI did threw, and nothing broke its Content Security
    Policy (which allows this origin only: no CDN, nothing from outside)."""
    bad = [e["message"] for e in driver.get_log("browser")
           if "Uncaught" in e["message"] or "Content Security Policy" in e["message"]]
    assert not bad, bad
