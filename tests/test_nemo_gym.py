"""Exports and the `nemo_gym_*` verifier presets checked by NeMo-Gym's own code (`make test-nemo-gym`).

NeMo-Gym needs Python >= 3.12, so its release (nemo-gym 0.4.0 from PyPI) lives in `.venv-nemo-gym` and answers through
`tests/nemo_gym_check.py`; these tests are skipped where that venv is missing. They check that (1) rows and configs
exported from every compact domain pass the pivot server's request model and Gym's config model, and (2) our
`nemo_gym_*` presets give the reward and category of the server's `verify` on thousands of fuzzed single actions.
"""
import json
import random
import subprocess
from pathlib import Path

import pytest
from datasets import Dataset

from pivotrl_nb.pivotrl.domains import DOMAINS, get_domain, make_env
from pivotrl_nb.pivotrl.nemo_gym import GYM_PRESETS, export_nemo_gym, from_nemo_gym, gym_action, to_gym_category
from pivotrl_nb.pivotrl.pivots import extract_candidates
from pivotrl_nb.pivotrl.rewards import functional_reward
from pivotrl_nb.pivotrl.trajectories import trajectory_dataset

ROOT = Path(__file__).resolve().parent.parent
GYM_PYTHON = ROOT / ".venv-nemo-gym/bin/python"
pytestmark = [pytest.mark.nemo_gym,
              pytest.mark.skipif(not GYM_PYTHON.exists(), reason="no .venv-nemo-gym: run `make test-nemo-gym`")]


def gym(mode: str, path: Path):
    "What tests/nemo_gym_check.py says about a file, run by NeMo-Gym's venv."
    out = subprocess.run([str(GYM_PYTHON), str(ROOT / "tests/nemo_gym_check.py"), mode, str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def domain_candidates(name: str, n_tasks: int = 40) -> Dataset:
    "Candidates of the first tasks of a compact domain, with its candidate policy and verifier."
    d, env = get_domain(name), make_env(name)
    traj = trajectory_dataset(env, env.tasks()[:n_tasks])
    rows = [r for split in traj.values() for r in split]
    return extract_candidates(Dataset.from_list(rows), d.candidates, verifier=d.verifier)


@pytest.mark.parametrize("name", [n for n, d in DOMAINS.items() if d.size == "compact"])
def test_exported_rows_and_configs_pass_nemo_gym(name, tmp_path):
    metrics = export_nemo_gym(domain_candidates(name), tmp_path, name.replace("-", "_"))
    jsonls = sorted(tmp_path.glob("*_*.jsonl"))
    exported = [p for p in jsonls if not p.name.endswith("_skipped.jsonl")]
    assert exported and sum(metrics[p.stem.rsplit("_", 1)[1]]["rows"] for p in exported) > 0
    for p in exported:
        assert gym("rows", p) == [None] * len(p.read_text().splitlines()), p.name
        assert gym("config", p.with_suffix(".yaml")) == [None, None], p.name


def test_the_validator_rejects_what_it_should(tmp_path):
    good = json.loads((ROOT / "tests/fixtures/nemo_gym/example.jsonl").read_text().splitlines()[0])
    bad = [{**good, "expected_action": {"role": "assistant", "content": "x"}},
           {**good, "responses_create_params": {**good["responses_create_params"], "unknown_field": 1}}]
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    assert all(gym("rows", tmp_path / "bad.jsonl"))


def mutations(args: dict, rng: random.Random) -> list:
    "Variants of an argument object: equal, reordered, retyped, re-worded, keys added or dropped."
    out, keys = [dict(args), dict(reversed(list(args.items())))], list(args)
    for k in keys:
        v = args[k]
        alts = [None, True, 1, 1.0, "1", [v], {"v": v}]
        if isinstance(v, str):
            words = v.split()
            alts += [v.upper(), v + " extra words here", " ".join(reversed(words)), v.strip() + " ",
                     " ".join(words[: max(1, len(words) // 2)]), "completely different text", ""]
        elif isinstance(v, bool): alts += [not v, int(v)]
        elif isinstance(v, int): alts += [v + 1, float(v), bool(v), str(v)]
        elif isinstance(v, float): alts += [v + 1e-7, v + 0.1, int(v)]
        elif isinstance(v, list): alts += [v[:-1], v + v[-1:], list(reversed(v))] if v else [[1]]
        elif isinstance(v, dict): alts += [{}, {**v, "x": 1}]
        out += [{**args, k: a} for a in rng.sample(alts, min(6, len(alts)))]
        out.append({x: y for x, y in args.items() if x != k})
    out.append({**args, "surplus": "value"})
    return out


def test_nemo_gym_presets_score_like_the_gym_verifier(tmp_path):
    rng = random.Random(0)
    cands = [domain_candidates(n, 15) for n in ("tau2-retail-compact", "bfcl-compact", "search-compact")]
    expected = [json.loads(e) for c in cands for e in c["expected"]]
    expected += [json.loads(e) for e in from_nemo_gym(ROOT / "tests/fixtures/nemo_gym/example.jsonl")["expected"]]
    pairs, ours = [], []
    for exp in expected:
        action, _ = gym_action(exp)
        if action is None: continue
        if action["type"] == "message":
            actuals = [{"type": "message", "content": "Sure."}, {"type": "function_call", "name": "f",
                                                                  "arguments": "{}"}, None]
        else:
            args = json.loads(action["arguments"])
            actuals = [{"type": "function_call", "name": action["name"], "arguments": json.dumps(a)}
                       for a in mutations(args, rng)]
            actuals += [{"type": "function_call", "name": action["name"] + "_x", "arguments": action["arguments"]},
                        {"type": "function_call", "name": action["name"], "arguments": "{not json"},
                        {"type": "function_call", "name": action["name"], "arguments": "[1, 2]"},
                        {"type": "message", "content": "Let me check."}, None]
        for preset, p in GYM_PRESETS.items():
            for act in actuals:
                pairs.append({"threshold": p.threshold, "expected_action": action, "actual": act})
                msg = (None if act is None else {"role": "assistant", "content": act["content"]}
                       if act["type"] == "message" else
                       {"role": "assistant", "content": None,
                        "tool_calls": [{"function": {"name": act["name"], "arguments": act["arguments"]}}]})
                r = functional_reward(msg, exp, None, p.verifier)
                ours.append([r.value, to_gym_category(r)])
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    theirs = gym("rewards", tmp_path / "pairs.jsonl")
    assert len(pairs) > 2000
    diff = [(p, o, t) for p, o, t in zip(pairs, ours, theirs) if o != t]
    assert not diff, f"{len(diff)} of {len(pairs)} differ, e.g. {diff[:3]}"
    assert 0.1 < sum(o[0] for o in ours) / len(ours) < 0.9      # the pairs exercise both outcomes
    assert len({o[1] for o in ours}) >= 8                          # and most of the categories
