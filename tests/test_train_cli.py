"""The command-line entry point (``python -m helpers.train``), its batch split over processes, and the accelerate
configurations for more than one GPU. The slow test runs SFT and then GRPO as 2 processes on the gloo backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers.config import REPO_ROOT, get_profile
from helpers.train import parse_args, split_batch, vllm_kwargs
from helpers.training import grpo_config

ACCELERATE_CONFIGS = REPO_ROOT / "configs" / "accelerate"


@pytest.mark.parametrize(("per_device", "accum", "world", "expected"), [
    (16, 2, 1, (16, 2)),  # one process: the notebook's settings, unchanged
    (16, 2, 2, (16, 1)),  # two: accumulation goes first (it costs time, the per-device batch fits)
    (16, 2, 8, (4, 1)),
    (64, 1, 8, (8, 1)),   # GRPO on gpu: 64 completions a step, 8 per process
    (4, 1, 2, (2, 1)),
])
def test_split_batch_keeps_the_global_batch(per_device, accum, world, expected):
    rows, steps = split_batch(per_device, accum, world)
    assert (rows, steps) == expected
    assert rows * steps * world == per_device * accum


def test_split_batch_names_the_way_out_when_the_batch_does_not_split():
    with pytest.raises(ValueError, match="64.*7 processes.*--per-device-batch"):
        split_batch(64, 1, 7)  # 8 GPUs, one of them serving vLLM


def test_vllm_server_mode_reaches_trl_grpo_config(tmp_path):
    args = parse_args(["grpo", "--vllm-mode", "server", "--vllm-server-base-url", "http://10.0.0.2:8000"])
    config = grpo_config(get_profile("gpu"), tmp_path, use_cpu=True, bf16=False, **vllm_kwargs(args))
    assert (config.use_vllm, config.vllm_mode, config.vllm_server_base_url) == (True, "server", "http://10.0.0.2:8000")
    assert vllm_kwargs(parse_args(["grpo"])) == {}  # no flag: the profile decides, as in the notebooks


@pytest.mark.parametrize(("name", "distributed_type", "zero_stage"), [
    ("multi_gpu", "MULTI_GPU", None), ("zero2", "DEEPSPEED", 2), ("zero3", "DEEPSPEED", 3)])
def test_accelerate_configs_have_the_fields_that_matter(name, distributed_type, zero_stage):
    config = yaml.safe_load((ACCELERATE_CONFIGS / f"{name}.yaml").read_text())
    assert config["distributed_type"] == distributed_type
    assert config["mixed_precision"] == "bf16"
    assert config["num_machines"] == 1 and config["num_processes"] == 8 and config["use_cpu"] is False
    assert config.get("deepspeed_config", {}).get("zero_stage") == zero_stage
    if zero_stage == 3:  # the trainer's save gathers the shards only with this flag on
        assert config["deepspeed_config"]["zero3_save_16bit_model"] is True


def torchrun(args: list[str], storage: Path) -> None:
    """``python -m helpers.train`` as 2 processes (``accelerate launch --cpu --num_processes 2`` would start one),
    with data, caches and checkpoints under ``storage``."""
    env = {**os.environ, "COURSE_STORAGE": str(storage), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "helpers.train", *args]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def rank_records(output_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(output_dir.glob("rank*.json"))]


@pytest.mark.slow
def test_sft_then_grpo_train_on_two_gloo_processes(tmp_path):
    from helpers.models import QWEN25_VOCAB_SIZE, initial_checkpoint, load_model

    initial = initial_checkpoint(get_profile("tiny"))  # built once in the repository's checkpoints/, as elsewhere
    storage = tmp_path / "storage"
    # one launch, two stages (GRPO starts from SFT's output, as notebook 5 does); one row per process per step:
    # GRPO's global batch is then one prompt's 2 completions, divisible by num_generations as TRL requires
    torchrun(["sft", "grpo", "--profile", "tiny", "--max-steps", "1", "--per-device-batch", "1", "--init", initial],
             storage)

    checkpoints = storage / "checkpoints" / "tiny"
    for stage in ("sft", "grpo"):
        records = rank_records(checkpoints / stage)
        assert [r["rank"] for r in records] == [0, 1], stage
        assert all(r["world_size"] == 2 and r["steps"] == 1 and r["per_device_train_batch_size"] == 1
                   for r in records), records
    grpo_model = load_model(checkpoints / "grpo")
    assert not hasattr(grpo_model, "peft_config")  # merged: a plain model the next stage loads
    assert grpo_model.config.vocab_size == QWEN25_VOCAB_SIZE


@pytest.mark.slow
def test_rloo_and_dpo_train_on_instructions_from_the_initial_model(tmp_path, monkeypatch):
    """Notebooks 6 and 7 as stages: RLOO needs the reward model and says so; both start from the initial model
    (whatever SFT or GRPO checkpoint exists) and save a merged model where notebook 9 looks."""
    from helpers import config
    from helpers.models import load_model
    from helpers.train import START_FROM, main

    assert START_FROM["rloo"] == START_FROM["dpo"] == ()
    monkeypatch.setattr(config, "CHECKPOINT_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="reward_model stage"):
        main(["rloo", "--profile", "tiny", "--max-steps", "1"])
    records = main(["reward_model", "rloo", "dpo", "--profile", "tiny", "--max-steps", "1"])
    assert [r["steps"] for r in records] == [1, 1, 1]
    for stage in ("rloo", "dpo"):
        assert not hasattr(load_model(tmp_path / "tiny" / stage), "peft_config")  # merged
