"""Run stages of the course from the command line, on one device or many: the notebooks' recipe, no notebook.

    python -m helpers.train {sft,reward_model,grpo,rloo,dpo} [more stages, in order] --profile gpu [--max-steps N]

One process trains as the notebook does. Launched by ``torchrun --nproc_per_node N`` or ``accelerate launch``
(``configs/accelerate/``: data parallel, DeepSpeed ZeRO-2, ZeRO-3), each process trains on its share of every
batch; the stage's global batch stays the notebook's (``split_batch``), data are prepared by the main process
first, only the main process saves and prints, and every process writes ``rank<k>.json`` into the output folder
to say it took part. GRPO and RLOO can generate on a separate ``trl vllm-serve`` (``--vllm-mode server``).

Stages start where their notebook starts (GRPO from the SFT checkpoint, else the initial model; RLOO and DPO, on
instruction following, from the initial model) and write where the notebook writes (``checkpoints/<profile>/<stage>``,
trainer runs in ``<stage>_run``). RLOO needs the reward model (run ``reward_model`` first, or notebook 6).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from accelerate import PartialState
from datasets import Dataset
from peft import PeftModel

from helpers.chat import row_prompt, task_prompt, to_prompt_completion
from helpers.config import PROFILES, Profile, get_profile, seed_everything
from helpers.data import load_task
from helpers.evaluation import pass_rate_filter, training_problems
from helpers.models import holds_model, load_model, load_tokenizer, merge_lora, save_model, stage_checkpoint
from helpers.preferences import RewardModelReward, load_reward_model
from helpers.rewards import format_reward, math_accuracy_reward
from helpers.training import (
    dpo_config,
    grpo_config,
    lora_config,
    prepare_run_dir,
    reward_config,
    reward_model_lora_config,
    rloo_config,
    run_dpo,
    run_grpo,
    run_reward_model,
    run_rloo,
    run_sft,
    sft_config,
)

STAGES = ("sft", "reward_model", "grpo", "rloo", "dpo")
# Where each stage starts when --init is not given: the first of these checkpoints that exists, else the
# profile's initial model (as in notebooks 3, 5, 6 and 7).
START_FROM = {"sft": (), "reward_model": (), "grpo": ("sft",), "rloo": (), "dpo": ()}
# Notebook 5's rewards: correctness, plus a little for the <think>/<answer> format.
RL_REWARDS = [math_accuracy_reward, format_reward]
RL_REWARD_WEIGHTS = [1.0, 0.2]


def distributed_state() -> PartialState:
    """This process's place in the launch (rank, world size), started as the trainer will start it (gloo on a
    CPU), so that data preparation can run on the main process first, before any trainer exists."""
    return PartialState(cpu=not torch.cuda.is_available())


def split_batch(per_device: int, grad_accum: int, world_size: int) -> tuple[int, int]:
    """Per-device batch and accumulation steps that keep a stage's global batch (``per_device x grad_accum`` on
    one device) over ``world_size`` processes: as few accumulation steps as possible, and no more rows per
    device than on one device (the profile's batch is what fits its memory)."""
    total = per_device * grad_accum
    for accum in range(1, grad_accum + 1):
        rows, rest = divmod(total, world_size * accum)
        if rest == 0 and 1 <= rows <= per_device:
            return rows, accum
    raise ValueError(f"a global batch of {total} ({per_device} per device x {grad_accum} accumulation steps) does "
                     f"not split over {world_size} processes: pass --per-device-batch (the global batch is then "
                     f"that x {world_size} processes x {grad_accum} accumulation steps)")


def batch_kwargs(args, per_device: int, grad_accum: int = 1) -> dict:
    """Config overrides for the batch (``--per-device-batch``, else the notebook's global batch split) and steps."""
    if args.per_device_batch:
        per_device = args.per_device_batch
    else:
        per_device, grad_accum = split_batch(per_device, grad_accum, distributed_state().num_processes)
    kwargs = {"per_device_train_batch_size": per_device, "gradient_accumulation_steps": grad_accum}
    if args.max_steps:
        kwargs["max_steps"] = args.max_steps
    return kwargs


def vllm_kwargs(args) -> dict:
    """``--vllm-mode server``: generate on a running ``trl vllm-serve``; ``colocate``: a vLLM engine in each
    training process; neither: the profile's choice (colocated vLLM on a GPU where it is installed)."""
    if args.vllm_mode is None:
        return {}
    kwargs = {"use_vllm": True, "vllm_mode": args.vllm_mode}
    if args.vllm_server_base_url:
        kwargs["vllm_server_base_url"] = args.vllm_server_base_url
    return kwargs


def rl_dataset(policy, tokenizer, profile: Profile) -> Dataset:
    """Notebook 5's training problems: math candidates with a mixed pass rate under the start model (all
    candidates when too few are mixed, as on ``tiny``). The pass rates are cached, so the processes after the
    main one read them instead of sampling again."""
    math_train = load_task("math", profile, split="train")
    candidates = list(math_train.select(range(min(profile.rl_candidate_prompts, len(math_train)))))
    _, mixed = pass_rate_filter(policy, tokenizer, candidates, profile)
    rows = training_problems(mixed, candidates, profile.rl_prompts_per_step)
    return Dataset.from_list([{"prompt": task_prompt(row), "answer": row["answer"]} for row in rows])


def train_sft(args, profile: Profile, start: str, run_dir: Path):
    """Notebook 3: LoRA SFT on the warm-start traces, loss on the completion only."""
    tokenizer, model = load_tokenizer(start), load_model(start, dtype=profile.torch_dtype)
    with distributed_state().main_process_first():
        warmstart = load_task("warmstart", profile, split="train")
    n_train = min(len(warmstart), profile.sft_max_examples or len(warmstart))
    dataset = Dataset.from_list([to_prompt_completion(row["messages"]) for row in warmstart.select(range(n_train))])
    config = sft_config(profile, run_dir, **batch_kwargs(args, profile.sft_batch_size, profile.sft_grad_accum))
    return run_sft(model, tokenizer, dataset, config, peft_config=lora_config())


def train_reward_model(args, profile: Profile, start: str, run_dir: Path):
    """Notebook 6, first half: a Bradley-Terry reward model (LoRA + a fresh score head) on preference pairs."""
    tokenizer = load_tokenizer(start)
    model = load_reward_model(start, tokenizer, dtype=profile.torch_dtype)
    with distributed_state().main_process_first():
        pairs = load_task("preferences", profile, split="train").select_columns(["prompt", "chosen", "rejected"])
    config = reward_config(profile, run_dir, **batch_kwargs(args, profile.reward_model_batch_size))
    return run_reward_model(model, tokenizer, pairs, config, peft_config=reward_model_lora_config())


def train_grpo(args, profile: Profile, start: str, run_dir: Path):
    """Notebook 5: GRPO with LoRA on the pass-rate-filtered math problems, rewards for correctness and format."""
    tokenizer, policy = load_tokenizer(start), load_model(start, dtype=profile.torch_dtype)
    with distributed_state().main_process_first():
        dataset = rl_dataset(policy, tokenizer, profile)
    completions_per_step = profile.num_generations * profile.rl_prompts_per_step
    config = grpo_config(profile, run_dir, reward_weights=RL_REWARD_WEIGHTS, **vllm_kwargs(args),
                         **batch_kwargs(args, completions_per_step))
    return run_grpo(policy, tokenizer, dataset, RL_REWARDS, config,
                    peft_config=lora_config(target=profile.rl_lora_target))


def train_rloo(args, profile: Profile, start: str, run_dir: Path):
    """Notebook 6: RLOO on the training instructions with the learned reward model as the only reward."""
    reward_dir = profile.checkpoint_dir / "reward_model"
    if not holds_model(reward_dir):
        raise FileNotFoundError(f"No reward model at {reward_dir}: train the reward_model stage (or notebook 6) first")
    reward_tokenizer = load_tokenizer(str(reward_dir))
    reward = RewardModelReward(load_reward_model(str(reward_dir), reward_tokenizer, dtype=profile.torch_dtype),
                               reward_tokenizer, batch_size=profile.eval_batch_size)
    tokenizer, policy = load_tokenizer(start), load_model(start, dtype=profile.torch_dtype)
    with distributed_state().main_process_first():
        instructions = load_task("instructions", profile, split="train")
    dataset = Dataset.from_list([{"prompt": row_prompt(row)} for row in instructions]).shuffle(seed=0)
    completions_per_step = profile.num_generations * profile.rl_prompts_per_step
    config = rloo_config(profile, run_dir, temperature=1.0, **vllm_kwargs(args), **batch_kwargs(args, completions_per_step))
    return run_rloo(policy, tokenizer, dataset, [reward], config, peft_config=lora_config(target=profile.rl_lora_target))


def train_dpo(args, profile: Profile, start: str, run_dir: Path):
    """Notebook 7: DPO with LoRA on the written (off-policy) instruction pairs, the kind the validation split kept
    on ``cpu``; notebook 7 also trains on the model's own answers ranked by the reward model, and compares."""
    tokenizer, policy = load_tokenizer(start), load_model(start, dtype=profile.torch_dtype)
    with distributed_state().main_process_first():
        pairs = load_task("preferences", profile, split="train").select_columns(["prompt", "chosen", "rejected"])
    config = dpo_config(profile, run_dir, **batch_kwargs(args, profile.dpo_batch_size))
    return run_dpo(policy, tokenizer, pairs.shuffle(seed=0), config,
                   peft_config=lora_config(target=profile.rl_lora_target))


TRAIN = {"sft": train_sft, "reward_model": train_reward_model, "grpo": train_grpo, "rloo": train_rloo,
         "dpo": train_dpo}


def save_merged(trainer, stage: str, start: str, output_dir: Path, profile: Profile) -> None:
    """Save the adapter through the trainer (it gathers ZeRO-3 shards; only the main process writes), then, on
    the main process, merge it into a fresh copy of the start model and save a plain model where the next
    stage looks for it."""
    adapter_dir = Path(trainer.args.output_dir) / "adapter"
    trainer.save_model(str(adapter_dir))
    if trainer.is_world_process_zero():
        tokenizer = trainer.processing_class
        base = (load_reward_model(start, tokenizer, dtype=profile.torch_dtype) if stage == "reward_model"
                else load_model(start, dtype=profile.torch_dtype))
        save_model(merge_lora(PeftModel.from_pretrained(base, adapter_dir)), output_dir, tokenizer)
    trainer.accelerator.wait_for_everyone()


def write_rank_record(trainer, output_dir: Path) -> dict:
    """``rank<k>.json`` in ``output_dir``: this process's rank, the world size, the steps it took and its batch."""
    accelerator = trainer.accelerator
    record = {"rank": accelerator.process_index, "world_size": accelerator.num_processes,
              "steps": trainer.state.global_step,
              "per_device_train_batch_size": trainer.args.per_device_train_batch_size,
              "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps}
    (output_dir / f"rank{record['rank']}.json").write_text(json.dumps(record) + "\n")
    return record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m helpers.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("stages", nargs="+", choices=STAGES, metavar="stage",
                        help=f"one or more of {', '.join(STAGES)}, run in order in one launch")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="default: $COURSE_PROFILE, else by hardware")
    parser.add_argument("--output-dir", type=Path, help="one stage only: where the merged model goes (default: "
                        "checkpoints/<profile>/<stage>, where the next stage looks; the trainer's run folder is "
                        "<output-dir>_run)")
    parser.add_argument("--init", help="model the first stage starts from: a checkpoint folder, Hub id or profile "
                        "name (default, and for later stages: where the stage's notebook starts)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps per stage (default: the profile's)")
    parser.add_argument("--per-device-batch", type=int, help="rows per device per step, replacing the split of "
                        "the profile's global batch (for GRPO and RLOO, completions; the global batch must stay "
                        "divisible by num_generations)")
    parser.add_argument("--vllm-mode", choices=("colocate", "server"), help="GRPO and RLOO: generate with vLLM "
                        "in each training process (colocate) or on a running `trl vllm-serve` (server)")
    parser.add_argument("--vllm-server-base-url", help="with --vllm-mode server (TRL's default: port 8000 here)")
    args = parser.parse_args(argv)
    if args.output_dir and len(args.stages) > 1:
        parser.error("--output-dir takes one stage; several stages write to checkpoints/<profile>/<stage>")
    return args


def run_stage(stage: str, args, profile: Profile, init: str | None) -> dict:
    """Train one stage, save its merged model, and record this process's part in ``rank<k>.json``."""
    seed_everything()
    output_dir = args.output_dir or profile.checkpoint_dir / stage
    run_dir = output_dir.with_name(f"{output_dir.name}_run")
    start = init or stage_checkpoint(profile, START_FROM[stage]).name
    with distributed_state().main_process_first():
        prepare_run_dir(run_dir)  # the main process clears a finished run before the others look at it
    trainer = TRAIN[stage](args, profile, start, run_dir)
    save_merged(trainer, stage, start, output_dir, profile)
    record = write_rank_record(trainer, output_dir)
    if trainer.is_world_process_zero():
        print(f"{stage} on {profile.name}: {record['steps']} steps on {record['world_size']} process(es), "
              f"from {start}; model saved to {output_dir}")
    return record


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    profile = get_profile(args.profile)
    return [run_stage(stage, args, profile, args.init if i == 0 else None) for i, stage in enumerate(args.stages)]


if __name__ == "__main__":
    main()
