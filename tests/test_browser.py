"""The notebooks in a real browser: JupyterLab started on loopback, headless Chromium (Debian's, driven by Selenium
through Debian's chromedriver) opens a library notebook and a reproduction notebook (small parameters injected as
papermill does), runs all cells from the Run menu and saves from the File menu. Checked: every cell ran, no error
output, a rendered figure, tqdm's bars as ipywidgets (no "IProgress not found"), a saved notebook cleaned by
nbdev's save hook.

Screenshots and a manifest (timings, versions) go to $PIVOTRL_NB_BROWSER_SHOTS (`make test-browser`:
results/browser_test/) or a temporary folder; the test prints which. The notebooks run on copies in a temporary
folder, and the reproduction notebook writes to a temporary PIVOTRL_NB_OUT: results/ and figures/ are never touched.
"""
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a dev requirement: pip install -e '.[dev]'")
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from pivotrl_nb.core import git_commit

ROOT = Path(__file__).resolve().parent.parent
# name -> (source notebook, parameters injected, whether it shows tqdm progress bars)
NOTEBOOKS = {"25_pivotrl.theory": (ROOT / "nbs" / "25_pivotrl.theory.ipynb", {}, False),
             "ewm_validity": (ROOT / "nbs" / "repro" / "ewm_validity.ipynb", {"n_sims": 200, "horizon": 50}, True)}
# every cell in the DOM (no virtual scrolling), no news or update toasts over the screenshots
LAB_SETTINGS = {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}}
TIMEOUT = 300
BAR = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output .widget-hprogress"   # an ipywidgets progress bar
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (root's `make venv` installs them)")

# the visible notebook's kernel status and code-cell prompts ("[3]:", "[*]:", "[ ]:")
STATE_JS = """
const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
if (!nb) return null;
const status = nb.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status;
return {status, prompts: [...nb.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim())};
"""
FIGURES_JS = """
return [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedImage img')]
  .filter(i => i.complete && i.naturalWidth > 0);
"""


def _free_port() -> int:
    "A free TCP port on loopback."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _copy_notebook(src: Path, params: dict, dest: Path) -> Path:
    "Copy a notebook to `dest`, with an injected-parameters cell (as the runner's papermill does) when `params`."
    nb = load_notebook_node(str(src))
    nbformat.write(parameterize_notebook(nb, params) if params else nbformat.read(src, as_version=4), dest)
    return dest


def _lab_settings(folder: Path) -> Path:
    "Write LAB_SETTINGS as JupyterLab user settings under `folder`."
    for plugin, values in LAB_SETTINGS.items():
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True); path.write_text(json.dumps(values))
    return folder


def _server_env(tmp: Path) -> dict:
    "The server's (and so the kernels') environment: this checkout importable, outputs in `tmp`, inline figures."
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(PIVOTRL_NB_OUT=str(tmp / "out"), PIVOTRL_NB_ROOT=str(ROOT), JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
    return env


def _wait_for_server(proc: subprocess.Popen, url: str, log: Path):
    "Poll the server's status API until it answers."
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"JupyterLab exited: {log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer at {url} within 120 s: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    "JupyterLab on loopback serving a temporary folder with the notebooks' copies; yields (base URL, token, folder)."
    tmp = tmp_path_factory.mktemp("lab")
    work = tmp / "work"; work.mkdir()
    for name, (src, params, _) in NOTEBOOKS.items(): _copy_notebook(src, params, work / f"{name}.ipynb")
    shutil.copy(ROOT / "settings.ini", work)                     # nbdev's save hook reads it (jupyter_hooks)
    port, token, log = _free_port(), secrets.token_hex(16), tmp / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", "--allow-root", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={work}",
           f"--LabApp.user_settings_dir={_lab_settings(tmp / 'settings')}", f"--LabApp.workspaces_dir={tmp}"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=work, env=_server_env(tmp), stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(proc, f"{base}/api/status?token={token}", log)
        yield base, token, work
    finally:
        proc.terminate(); proc.wait(timeout=60)


@pytest.fixture(scope="module")
def browser():
    "Headless Chromium driven through chromedriver."
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def _version(cmd: str) -> str:
    "The first line `cmd --version` prints."
    return subprocess.run([cmd, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()


def _versions() -> dict:
    "What the manifest records the run with."
    pkgs = {p: metadata.version(p) for p in ("jupyterlab", "ipywidgets", "selenium", "ipykernel", "nbdev")}
    return {"chromium": _version(CHROMIUM), "chromedriver": _version(CHROMEDRIVER), **pkgs,
            "python": platform.python_version(), "platform": platform.platform()}


@pytest.fixture(scope="module")
def shots():
    "The screenshot folder and per-notebook records, saved with the whole run's time (set up first) as manifest.json."
    shots_env = os.environ.get("PIVOTRL_NB_BROWSER_SHOTS")
    folder = Path(shots_env) if shots_env else Path(tempfile.mkdtemp(prefix="pivotrl-nb-browser-"))
    folder.mkdir(parents=True, exist_ok=True)
    records, started, t0 = {}, datetime.now(timezone.utc), time.perf_counter()
    yield folder, records
    manifest = {"test": "tests/test_browser.py", "started_utc": started.isoformat(timespec="seconds"),
                "wall_clock_s": round(time.perf_counter() - t0, 1), "git_commit": git_commit(ROOT),
                "notebooks": records, "versions": _versions()}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _wait(driver, what: str, condition, timeout: float = TIMEOUT):
    "Wait until `condition(driver)` is truthy and return it; fail naming `what` and the visible notebook's state."
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25,
                             ignored_exceptions=[StaleElementReferenceException]).until(condition)
    except TimeoutException:
        state = driver.execute_script(STATE_JS)
        pytest.fail(f"timed out after {timeout} s waiting for {what}; the notebook's state: {state}")


def _enabled_entry(driver, menu: str, entry: str):
    "The menu bar's `menu` entry matching `entry` once shown and enabled; else open the menu, or close it if disabled."
    title = [e for e in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if e.text == menu]
    shown = [e for e in driver.find_elements(By.CSS_SELECTOR, entry) if e.is_displayed()]
    if not title: return None
    if shown and "lm-mod-disabled" not in shown[0].get_attribute("class"): return shown[0]
    title[0].click()        # opens the menu, or closes it while its entry is still disabled (reopened next poll)
    return None


def _click_menu(driver, menu: str, command: str):
    "Click the menu bar's `menu` item for the JupyterLab `command`, waiting until the command is enabled."
    entry = f'.lm-Menu-item[data-command="{command}"]'
    _wait(driver, f"{menu} > {command} enabled", lambda d: _enabled_entry(d, menu, entry)).click()


def _kernel_idle(driver) -> bool:
    "Whether the visible notebook's kernel is idle."
    state = driver.execute_script(STATE_JS)
    return bool(state and state["status"] == "idle")


def _run_finished(driver):
    "The prompts once Run All is over: kernel idle, nothing queued, the first cell executed."
    state = driver.execute_script(STATE_JS)
    if not state or state["status"] != "idle" or any("*" in p for p in state["prompts"]): return None
    return state["prompts"] if state["prompts"][0][1:-2].isdigit() else None


def _run_all(driver, base: str, token: str, name: str) -> tuple[list[str], float]:
    "Open `name` in a workspace of its own, run all cells from the Run menu; the prompts and the seconds it took."
    driver.get(f"{base}/lab/workspaces/{name.replace('.', '-')}/tree/{name}.ipynb?token={token}")
    _wait(driver, f"{name}'s kernel to start", _kernel_idle)
    t0 = time.perf_counter()
    _click_menu(driver, "Run", "runmenu:run-all")
    prompts = _wait(driver, f"{name} to finish running", _run_finished)
    return prompts, time.perf_counter() - t0


def _save(driver, path: Path) -> dict:
    "Save from the File menu and return the notebook as written to disk."
    before = path.stat().st_mtime_ns
    _click_menu(driver, "File", "docmanager:save")
    _wait(driver, f"{path.name} to be saved", lambda _: path.stat().st_mtime_ns != before, timeout=60)
    return json.loads(path.read_text())


def _screenshots(driver, figure, folder: Path, name: str) -> list[Path]:
    "The window after Run All (its first figure centred) and the figure alone."
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", figure)
    window, alone = folder / f"{name}_run_all.png", folder / f"{name}_figure.png"
    driver.save_screenshot(str(window)); figure.screenshot(str(alone))
    return [window, alone]


def _outputs(nb: dict, output_type: str) -> list[dict]:
    "The saved notebook's outputs of one type."
    return [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == output_type]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_run_all_in_jupyterlab(shots, lab, browser, name, capsys):
    base, token, work = lab
    folder, records = shots
    prompts, seconds = _run_all(browser, base, token, name)
    saved = _save(browser, work / f"{name}.ipynb")
    errors = [f"{e['ename']}: {e['evalue']}" for e in _outputs(saved, "error")]
    assert not errors and all(p[1:-2].isdigit() for p in prompts), (errors, prompts)
    figures = _wait(browser, f"a rendered figure in {name}", lambda d: d.execute_script(FIGURES_JS), timeout=30)
    pngs = [o for o in _outputs(saved, "display_data") if "image/png" in o["data"]]
    assert pngs, f"{name}: no PNG figure in the saved notebook"
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "IProgress not found" not in body
    if NOTEBOOKS[name][2]:
        _wait(browser, f"tqdm's bars as widgets in {name}", lambda d: d.find_elements(By.CSS_SELECTOR, BAR), timeout=30)
    code = [c for c in saved["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is None for c in code) and "language_info" not in saved["metadata"], \
        "nbdev's save hook did not clean the saved notebook (`make venv` installs it)"
    files = _screenshots(browser, figures[0], folder, name)
    records[name] = {"run_all_s": round(seconds, 1), "code_cells": len(code), "figures": len(figures),
                     "screenshots": [f.name for f in files]}
    with capsys.disabled(): print(f"\n{name}: Run All {seconds:.1f} s, {len(figures)} figures; screenshots in {folder}")
