"""Run every library notebook's tests (what `nbdev_test` does), one pytest test per notebook.

Cells flagged with a `tst_flags` flag (notest, slow, gpu) are skipped unless named in $PIVOTRL_NB_TEST_FLAGS
(e.g. `PIVOTRL_NB_TEST_FLAGS=slow`, what `make test-slow` sets). Reproduction notebooks (nbs/repro) are
exercised by tests/test_reproduce.py instead.
"""
import os
from pathlib import Path

import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_nb_tests

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))
FORCED = os.environ.get("PIVOTRL_NB_TEST_FLAGS", "").split()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook(notebook, monkeypatch):
    monkeypatch.chdir(ROOT)
    skip = [f for f in get_config().tst_flags.split() if f not in FORCED]
    ok, _ = run_nb_tests(notebook, skip_flags=skip, force_flags=FORCED, showerr=True)
    assert ok, f"{notebook.name}: a cell failed (traceback in the captured stderr above)"
