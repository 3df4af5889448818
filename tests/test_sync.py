"""CI fails when pivotrl_nb/ is not what nbdev_export makes of the notebooks, a notebook is not clean, a library
notebook lacks its outputs, or a committed notebook shows a machine path, stderr or widget in them."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _copy_project(dst: Path):
    for name in ("settings.ini", "setup.py", "README.md"):
        shutil.copy(ROOT / name, dst / name)
    shutil.copytree(ROOT / "nbs", dst / "nbs")
    shutil.copytree(ROOT / "pivotrl_nb", dst / "pivotrl_nb", ignore=shutil.ignore_patterns("__pycache__"))


def _files(root: Path, sub: str, pattern: str) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / sub).rglob(pattern))
            if ".ipynb_checkpoints" not in p.parts and "__pycache__" not in p.parts}


def test_export_in_sync(tmp_path):
    _copy_project(tmp_path)
    subprocess.run([BIN / "nbdev_export"], cwd=tmp_path, check=True)
    got, want = _files(tmp_path, "pivotrl_nb", "*.py"), _files(ROOT, "pivotrl_nb", "*.py")
    stale = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))
    assert not stale, f"pivotrl_nb/ differs from the notebooks' export; run `make sync` and commit: {stale}"


def test_notebooks_clean(tmp_path):
    _copy_project(tmp_path)
    subprocess.run([BIN / "nbdev_clean"], cwd=tmp_path, check=True)
    got, want = _files(tmp_path, "nbs", "*.ipynb"), _files(ROOT, "nbs", "*.ipynb")
    dirty = sorted(k for k in want if got.get(k) != want[k])
    assert not dirty, f"notebooks not clean (outputs/metadata); run `make sync` and commit: {dirty}"


# Committed outputs (issue #16): library notebooks read well unexecuted, no notebook shows where it ran.
LIBRARY = sorted((ROOT / "nbs").glob("*.ipynb"))
COMMITTED = LIBRARY + sorted((ROOT / "nbs" / "repro").glob("*.ipynb")) + sorted(
    p for p in (ROOT / "results").rglob("*.ipynb") if not {".staging", ".ipynb_checkpoints"} & set(p.parts))
MACHINE_PATH = re.compile(r"/(?:work|root|home|tmp)/")
NOT_DEMONSTRATIONS = re.compile(r"^#\|\s*(?:export|exporti|default_exp|hide|eval:\s*false|notest|slow|gpu)\b", re.M)


def _strings(o, where=""):
    "(where, string) for every string in outputs or metadata; base64 images skipped."
    if isinstance(o, str): yield where, o
    elif isinstance(o, list):
        for v in o: yield from _strings(v, where)
    elif isinstance(o, dict):
        for k, v in o.items():
            if not (k.startswith("image/") and not k.endswith("svg+xml")): yield from _strings(v, where)


def _shown(nb: dict):
    "(where, string) for everything a notebook shows besides its sources: outputs and metadata."
    yield from _strings(nb.get("metadata", {}), "metadata")
    for k, c in enumerate(nb["cells"]):
        yield from _strings(c.get("metadata", {}), f"cell {k} metadata")
        yield from _strings(c.get("outputs", []), f"cell {k}")


def _machine_paths(nb: dict) -> list[str]:
    return [f"{where}: {s[max(0, m.start() - 30):m.end() + 40]!r}" for where, s in _shown(nb)
            for m in MACHINE_PATH.finditer(s)]


def _load(p: Path) -> dict: return json.loads(p.read_text(encoding="utf-8"))


# Library notebooks whose demonstrations are all silent assertions (test_eq, test_fail): nothing to show yet.
SILENT = {"00_core", "02_stats", "11_pivotrl.envs.backends", "13_pivotrl.envs.base", "15_pivotrl.envs.bfcl",
          "19_pivotrl.domains", "31_ewm.protocol", "34_ewm.vllm"}


def test_library_notebooks_are_committed_with_their_outputs():
    "Each library notebook with demonstration cells keeps their outputs: `pivotrl-nb outputs` re-makes them."
    def demonstrates(nb): return any(c["cell_type"] == "code" and "".join(c["source"]).strip()
                                     and not NOT_DEMONSTRATIONS.search("".join(c["source"])) for c in nb["cells"])
    shown = {p.stem: any(c.get("outputs") for c in _load(p)["cells"]) for p in LIBRARY if demonstrates(_load(p))}
    bare = sorted(n for n, has in shown.items() if not has and n not in SILENT)
    assert not bare, f"library notebooks without outputs; run `pivotrl-nb outputs --only NAME` and commit: {bare}"
    loud = sorted(n for n in SILENT if shown.get(n))
    assert not loud, f"these now show outputs, drop them from SILENT: {loud}"


def test_no_committed_notebook_shows_a_machine_path():
    found = {p.relative_to(ROOT).as_posix(): hits[:3] for p in COMMITTED if (hits := _machine_paths(_load(p)))}
    first = dict(list(found.items())[:5])
    assert not found, (f"absolute machine paths in outputs or metadata of {len(found)} notebooks (fix: "
                       f"pivotrl_nb.outputs.scrub_executed_file, `pivotrl-nb outputs`): {first}")


def test_library_notebooks_show_no_stderr_widgets_or_iprogress_warning():
    bad = [f"{p.name} {where}" for p in LIBRARY for k, c in enumerate(_load(p)["cells"]) for o in c.get("outputs", [])
           for where in [f"cell {k}"]
           if o.get("name") == "stderr" or "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    bad += [f"{p.relative_to(ROOT)} {where}" for p in COMMITTED for where, s in _shown(_load(p))
            if "IProgress not found" in s]
    assert not bad, f"stderr streams, widget views or tqdm's IProgress warning in committed notebooks: {bad}"


def test_scrub_rewrites_crafted_outputs():
    "The scrubs on an executed notebook made up of everything they must catch (and what they must leave)."
    from pivotrl_nb.outputs import scrub_executed, tidy_outputs, scrub_paths
    home = str(Path.home())
    warn = (f"{home}/proj/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found. "
            "Please update jupyter and ipywidgets.\n  from .autonotebook import tqdm as notebook_tqdm\n")
    outs = [{"output_type": "stream", "name": "stderr", "text": [warn, "/work/wt-x/.venv/lib/python3.11/site-packages/"
                                                                       "p/main.py:5: UserWarning: w\n"]},
            {"output_type": "stream", "name": "stdout", "text": ["saved /work/wt-x/figures/f.png\n", "z" * 50_000]},
            {"output_type": "display_data", "metadata": {}, "data": {"application/vnd.jupyter.widget-view+json":
                                                                     {"model_id": "1"}, "text/plain": ["0%"]}},
            {"output_type": "execute_result", "execution_count": 4, "metadata": {}, "data": {
                "text/plain": [f"PosixPath('{home}/.cache/pivotrl-nb/runs/20260101-000000-1/results/a/cpu/t.csv')"],
                "image/png": "iVBORw0KGgo/tmp/+/root/"}},
            {"output_type": "stream", "name": "stdout", "text": ["/tmp/tmpab_12xyz/x.json\n"]}]
    nb = {"metadata": {"papermill": {"input_path": "/work/wt-x/nbs/repro/a.ipynb",
                                     "output_path": "/work/wt-x/results/a/cpu/a.ipynb"}},
          "cells": [{"cell_type": "code", "metadata": {}, "source": "print('/work/wt-x')", "outputs": outs}]}
    assert len(_machine_paths(nb)) == 7 and "IProgress" in json.dumps(nb)     # the check sees every one
    pub = scrub_executed(nb)
    assert _machine_paths(pub) == [] and "IProgress" not in json.dumps(pub)
    assert pub["metadata"]["papermill"] == {"input_path": "nbs/repro/a.ipynb", "output_path": "results/a/cpu/a.ipynb"}
    got = pub["cells"][0]["outputs"]
    assert [o["output_type"] for o in got] == ["stream", "stream", "execute_result", "stream"]    # widget dropped
    assert got[0]["text"] == ["<site-packages>/p/main.py:5: UserWarning: w\n"]                   # the run's stderr
    assert got[1]["text"][0] == "saved figures/f.png\n" and len(got[1]["text"][1]) == 50_000      # nothing cut
    assert got[2]["data"] == {"text/plain": ["PosixPath('results/a/cpu/t.csv')"],
                              "image/png": "iVBORw0KGgo/tmp/+/root/"}                            # image untouched
    assert got[3]["text"] == ["<tmp>/x.json\n"]
    assert pub["cells"][0]["source"] == "print('/work/wt-x')"                                    # code as run
    lib = scrub_paths(tidy_outputs(nb, max_chars=1_000), ["/work/wt-x"])["cells"][0]["outputs"]
    assert [o["output_type"] for o in lib] == ["stream", "execute_result", "stream"]            # no stderr, widget
    assert len("".join(lib[0]["text"])) < 1_200 and "output cut by `pivotrl-nb outputs`" in lib[0]["text"][-1]
    assert lib[0]["text"][0] == "saved figures/f.png\n" and lib[0]["text"][1].startswith("z" * 900)
