"""The hostile-code suite: every attack of `pivotrl_nb.pivotrl.hostile.ATTACKS` on the sandbox and on both graders, under
every sandbox mode this machine has, checked from outside; each mode may leave open exactly its `KNOWN_GAPS`.

On CI (CI=true) the strongest mode, bubblewrap, must be available: the set-up path installs it.
"""
import os

import pytest

from pivotrl_nb.pivotrl.hostile import ATTACKS, KNOWN_GAPS, try_attacks
from pivotrl_nb.sandbox import SandboxUnavailable, isolation


def available(mode: str) -> bool:
    try: return isolation(mode).mode == mode
    except SandboxUnavailable: return False


@pytest.mark.parametrize("mode", ["bubblewrap", "seccomp"])
def test_attacks_are_contained(mode):
    if not available(mode):
        assert not (os.environ.get("CI") and mode == "bubblewrap"), "CI must have bubblewrap (make venv installs it)"
        pytest.skip(f"sandbox mode {mode} is not available here")
    df = try_attacks(mode)
    faked = sum(a.family == "faked pass" for a in ATTACKS)
    assert len(df) == 3 * len(ATTACKS) - faked   # faked passes are tried on the graders only
    open_ = df[~df.contained]
    assert set(zip(open_.target, open_.attack)) == KNOWN_GAPS[mode], open_[["target", "attack", "breach"]]


def test_no_isolation_refuses_to_run(monkeypatch):
    from pivotrl_nb import sandbox
    monkeypatch.setattr(sandbox, "_bwrap", lambda: None)
    monkeypatch.setattr(sandbox, "_seccomp", lambda: None)
    with pytest.raises(SandboxUnavailable, match="install bubblewrap"):
        sandbox.run_python("print(1)")
    with pytest.warns(RuntimeWarning, match="unsafe"):
        assert sandbox.run_python("print(1)", mode="unsafe").stdout == "1\n"
