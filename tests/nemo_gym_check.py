"""Check pivotrl-nb's NeMo-Gym exports with NeMo-Gym's own code (run by `.venv-nemo-gym/bin/python`, nemo-gym 0.4.0).

    nemo_gym_check.py rows ROWS.jsonl      -> [error or null] per row (the pivot server's run-request model)
    nemo_gym_check.py config CONFIG.yaml   -> [error or null] per block (Gym's server-instance config model)
    nemo_gym_check.py rewards PAIRS.jsonl  -> [[reward, category]] per {threshold, expected_action, actual}, as the
                                              server's `verify` scores one action (actual: an action dict or null)
Prints JSON on stdout.
"""
import json
import sys

from omegaconf import OmegaConf
from nemo_gym.config_types import maybe_get_server_instance_config
from nemo_gym.openai_utils import NeMoGymResponseFunctionToolCall
from pydantic import ValidationError
from resources_servers.single_step_tool_use_with_argument_comparison.app import (
    SingleStepToolUseArgumentComparisonRunRequest as RunRequest)
from resources_servers.single_step_tool_use_with_argument_comparison.common.verification_utils import (
    StepRewardCategory, ToolCallComparator, ToolCallComparatorConfig)


def rows(path):
    out = []
    for line in open(path):
        try: RunRequest.model_validate(json.loads(line)); out.append(None)
        except ValidationError as e: out.append(str(e))
    return out


def config(path):
    out = []
    for name, block in OmegaConf.load(path).items():
        cfg, err = maybe_get_server_instance_config(name, block)
        out.append(None if cfg is not None else str(err))
    return out


def score(p):
    expected, actual = RunRequest.model_validate(
        {"responses_create_params": {"input": []}, "expected_action": p["expected_action"]}).expected_action, p["actual"]
    if actual is None: return 0.0, StepRewardCategory.NO_ACTION_FOUND.name
    if expected.type == "message":
        ok = actual["type"] == "message"
        return (1.0, "EXPECTED_CHAT_MESSAGE_FOUND") if ok else (0.0, "NO_EXPECTED_CHAT_MESSAGE")
    if actual["type"] != "function_call": return 0.0, StepRewardCategory.NO_EXPECTED_TOOL_CALL.name
    comparator = ToolCallComparator(config=ToolCallComparatorConfig(word_count_similarity_threshold=p["threshold"]))
    call = NeMoGymResponseFunctionToolCall(call_id="c", name=actual["name"], arguments=actual["arguments"])
    reward, category = comparator.compare_tool_call(expected, call)
    return reward, category.name


if __name__ == "__main__":
    mode, path = sys.argv[1:3]
    if mode == "rewards": result = [score(json.loads(line)) for line in open(path)]
    else: result = {"rows": rows, "config": config}[mode](path)
    json.dump(result, sys.stdout)
