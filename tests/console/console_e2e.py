"""The console end to end in headless Chromium (Debian's chromium + chromedriver, driven by
selenium): sign in with the API token, start a run and watch it finish, answer a task from the
inbox, redrive a failed run. Screenshots of each page go to --shots.

Called by cli/tests/console.rs, which starts `baton serve` and prepares the runs."""
import argparse
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--token", required=True)
p.add_argument("--workflow", required=True, help="a published workflow that ends by itself")
p.add_argument("--failed", required=True, help="a failed run to redrive")
p.add_argument("--waiting", required=True, help="a run waiting on a task with a `reference` field")
p.add_argument("--shots", required=True)
a = p.parse_args()

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1400,1000"]:
    opts.add_argument(flag)
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
# The pages re-render as runs move: an element found a moment ago may be gone, so look again.
wait = WebDriverWait(d, 20, ignored_exceptions=[NoSuchElementException, StaleElementReferenceException])


def status_is(word):
    return lambda drv: drv.find_element(By.CSS_SELECTOR, "#run-status .status").get_attribute("data-status") == word


try:
    # Without a token the API answers 401 and the page asks for one.
    d.get(a.url + "/")
    wait.until(ec.text_to_be_present_in_element((By.ID, "error"), "API token"))
    d.find_element(By.ID, "token").send_keys(a.token)
    d.find_element(By.CSS_SELECTOR, "#token-form button").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-run-id="{a.failed}"]')))
    d.save_screenshot(f"{a.shots}/console-runs.png")

    # Start a run and watch it finish.
    d.find_element(By.ID, "start-workflow").send_keys(a.workflow)
    d.find_element(By.ID, "start-run").click()
    wait.until(status_is("succeeded"))
    assert d.find_elements(By.CSS_SELECTOR, '#dag g[data-status="succeeded"]'), "the DAG shows succeeded steps"
    assert d.find_elements(By.CSS_SELECTOR, "#decisions tr[data-decision=complete_run]"), "decisions are listed"
    wait.until(ec.text_to_be_present_in_element((By.ID, "verify"), "intact"))

    # Answer the task from the inbox.
    d.get(a.url + "/#/tasks")
    task = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".task")))
    assert "Handover" in task.text or task.find_elements(By.TAG_NAME, "p"), "the task shows its prompt"
    d.save_screenshot(f"{a.shots}/console-tasks.png")
    task.find_element(By.NAME, "reference").send_keys("R-42")
    task.find_element(By.CSS_SELECTOR, "button.approve").click()
    d.get(a.url + f"/#/runs/{a.waiting}")
    wait.until(status_is("succeeded"))

    # Redrive the failed run.
    d.get(a.url + f"/#/runs/{a.failed}")
    wait.until(status_is("failed"))
    d.find_element(By.ID, "action-reason").send_keys("the API is back")
    d.find_element(By.ID, "btn-redrive").click()
    wait.until(status_is("succeeded"))
    assert d.find_elements(By.CSS_SELECTOR, "#decisions tr[data-decision=redrive_run]"), "the redrive is audited"
    wait.until(ec.text_to_be_present_in_element((By.ID, "verify"), "intact"))
    d.save_screenshot(f"{a.shots}/console-run.png")
    print("console flow passed")
except Exception as e:  # noqa: BLE001 - report what the page showed, then fail
    d.save_screenshot(f"{a.shots}/console-failure.png")
    print(f"console flow failed: {e!r}\n{d.find_element(By.TAG_NAME, 'body').text[:3000]}", file=sys.stderr)
    sys.exit(1)
finally:
    d.quit()
