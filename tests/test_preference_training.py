"""Reward model, RLOO and DPO: on-policy pairs, reward-model scores as TRL computes them, configs and runs."""

import pandas as pd
import pytest
import torch
from datasets import Dataset
from peft import get_peft_model

from helpers import config as course_config
from helpers.chat import prompt_messages, task_prompt
from helpers.config import PROFILES, get_profile
from helpers.data import load_task, reference_trace
from helpers.generation import sample_completions
from helpers.models import load_model, load_tokenizer, merge_lora, save_model, stage_checkpoint
from helpers.preferences import (
    RewardModelReward,
    RewardProbe,
    best_vs_worst_pairs,
    build_onpolicy_pairs,
    constraint_kind,
    conversation_ids,
    group_outcomes,
    load_reward_model,
    pair_logprobs,
    pairwise_accuracy,
    score_conversations,
    score_pairs,
    verifier_score,
)
from helpers.rewards import format_reward, math_accuracy_reward
from helpers.training import (
    COMPLETED_MARKER,
    HISTORY_FILE,
    dpo_config,
    lora_config,
    reward_config,
    reward_model_lora_config,
    rloo_config,
    run_dpo,
    run_reward_model,
    run_rloo,
)

TINY = get_profile("tiny")
MATH_ROW = {"prompt": "What is 3 + 4?", "solution": "Sum: 3+4=7.\nThe answer is 7.", "answer": "7"}
PAIRS = [
    {"prompt": [{"role": "user", "content": "Write one word in lowercase."}],
     "chosen": [{"role": "assistant", "content": "hello"}], "rejected": [{"role": "assistant", "content": "HELLO"}],
     "constraints": {"lowercase": True}},
    {"prompt": [{"role": "user", "content": "Give 2 bullet points about cats."}],
     "chosen": [{"role": "assistant", "content": "- purr\n- nap"}],
     "rejected": [{"role": "assistant", "content": "- purr"}], "constraints": {"num_bullets": 2}},
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny")


@pytest.fixture(scope="module")
def reward_model(tokenizer):
    torch.manual_seed(0)
    return load_reward_model("tiny", tokenizer)


# --- on-policy pairs --------------------------------------------------------------------------


def test_best_vs_worst_keeps_only_prompts_whose_samples_differ():
    prompts = [["p0"], ["p1"], ["p2"]]
    samples = [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]]
    scores = [[0.2, 1.2, 0.0], [0.0, 0.0, 0.0], [1.2, 1.2, 1.2]]
    pairs = best_vs_worst_pairs(prompts, samples, scores)
    assert len(pairs) == 1
    pair = pairs[0]
    assert pair["chosen"] == [{"role": "assistant", "content": "b"}]
    assert pair["rejected"] == [{"role": "assistant", "content": "c"}]
    assert (pair["chosen_score"], pair["rejected_score"], pair["source"], pair["prompt_index"]) == (1.2, 0.0, "on-policy", 0)


def test_ties_go_to_the_earliest_sample_not_the_shortest():
    pairs = best_vs_worst_pairs([["p"]], [["a long correct answer", "short", "x", "another long wrong one"]],
                                [[1.0, 1.0, 0.0, 0.0]])
    assert pairs[0]["chosen"][0]["content"] == "a long correct answer"
    assert pairs[0]["rejected"][0]["content"] == "x"


def test_reference_fills_a_tied_group_only_when_it_scores_higher():
    prompts, samples = [["p0"], ["p1"]], [["a", "b"], ["c", "d"]]
    scores = [[0.0, 0.0], [1.2, 1.2]]
    pairs = best_vs_worst_pairs(prompts, samples, scores, references=[("ref0", 1.2), ("ref1", 1.2)])
    assert [(p["prompt_index"], p["source"], p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        (0, "reference", "ref0", "a")]


def test_pair_inputs_must_line_up():
    with pytest.raises(ValueError, match="2 prompts"):
        best_vs_worst_pairs([["p"], ["q"]], [["a"]], [[0.0]])
    with pytest.raises(ValueError, match="2 samples but 1 scores"):
        best_vs_worst_pairs([["p"]], [["a", "b"]], [[0.0]])


def test_verifier_score_ranks_math_countdown_and_instruction_answers():
    assert verifier_score("<think>3+4=7</think>\n<answer>7</answer>", MATH_ROW) == pytest.approx(1.2)
    assert verifier_score("<think>3+4=8</think>\n<answer>8</answer>", MATH_ROW) == pytest.approx(0.2)
    assert verifier_score("The answer is 7.", MATH_ROW) == pytest.approx(1.0)
    assert verifier_score("no idea", MATH_ROW) == 0.0
    countdown = {"nums": [3, 5, 7], "target": 22}
    assert verifier_score("<think>x</think>\n<answer>3*5+7</answer>", countdown) == 1.0
    assert verifier_score("<think>x</think>\n<answer>3+5+7</answer>", countdown) == pytest.approx(0.1)
    instruction = {"constraints": {"lowercase": True}}
    assert verifier_score("all lowercase", instruction) == 1.0 and verifier_score("Not Lowercase", instruction) == 0.0


def test_reference_solutions_of_generated_math_rows_score_full_marks():
    rows = list(load_task("math", TINY, split="train").select(range(10)))
    assert all(verifier_score(reference_trace(row), row) == pytest.approx(1.2) for row in rows)


@pytest.mark.slow
def test_sampling_gives_k_completions_per_prompt_and_pairs_are_topped_up(tokenizer):
    model = load_model("tiny")
    prompts = [prompt_messages("What is 1 + 1?"), prompt_messages("What is 2 + 2?")]
    torch.manual_seed(0)
    groups = sample_completions(model, tokenizer, prompts, k=3, max_new_tokens=4, batch_size=2, progress=False)
    assert [len(group) for group in groups] == [3, 3] and all(isinstance(t, str) for g in groups for t in g)

    rows = [dict(MATH_ROW), {**MATH_ROW, "prompt": "What is 2 + 5?"}]
    pairs, samples = build_onpolicy_pairs(model, tokenizer, rows, k=2, max_new_tokens=4, min_pairs=2, progress=False)
    assert len(samples) == 4 and set(samples.columns) >= {"prompt_index", "sample", "score", "completion"}
    # a random model never answers, so every group ties at 0 and the reference solution becomes `chosen`
    assert [p["source"] for p in pairs] == ["reference", "reference"]
    assert pairs[0]["prompt"] == task_prompt(rows[0])
    assert pairs[0]["chosen"][0]["content"] == reference_trace(rows[0])
    outcomes = group_outcomes(samples.groupby("prompt_index")["score"].apply(list).tolist())
    assert outcomes.to_dict() == {"prompts": 2, "samples differ (pair)": 0, "all samples tie": 2}


@pytest.mark.slow
def test_instruction_pairs_are_asked_without_the_r1_prompt_and_keep_their_constraints(tokenizer, monkeypatch):
    from helpers import preferences

    rows = [{"messages": [{"role": "user", "content": "Describe cats in at most 2 words."}],
             "constraints": {"max_words": 2}},
            {"messages": [{"role": "user", "content": "Describe dogs in lowercase."}], "constraints": {"lowercase": True}}]
    answers = {"cats": ["Small cats.", "Cats are small and soft."], "dogs": ["Loyal dogs.", "loyal dogs"]}
    seen = []

    def fake_samples(model, tok, prompts, k, max_new_tokens, **kwargs):
        seen.extend(prompts)
        return [answers["cats" if "cats" in p[-1]["content"] else "dogs"] for p in prompts]

    monkeypatch.setattr(preferences, "sample_completions", fake_samples)
    pairs, samples = build_onpolicy_pairs(None, tokenizer, rows, k=2, max_new_tokens=8, progress=False)
    assert all(p[0]["role"] == "user" for p in seen)  # no R1 system prompt on instruction rows
    assert samples["score"].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert [p["constraints"] for p in pairs] == [{"max_words": 2}, {"lowercase": True}]
    assert [p["chosen"][0]["content"] for p in pairs] == ["Small cats.", "loyal dogs"]


def test_pairs_ranked_by_a_learned_reward_keep_the_rule_s_score_beside_it(tokenizer, monkeypatch):
    from helpers import preferences

    rows = [{"messages": [{"role": "user", "content": "Describe cats in at most 2 words."}],
             "constraints": {"max_words": 2}}]
    monkeypatch.setattr(preferences, "sample_completions",
                        lambda *args, **kwargs: [["Small cats.", "Cats are small and soft.", "Cats."]])
    seen = {}

    def longer_is_better(prompts, completions):  # a reward model that prefers long answers, as a bad one might
        seen["prompts"] = prompts
        return [float(len(c[0]["content"])) for c in completions]

    pairs, samples = build_onpolicy_pairs(None, tokenizer, rows, k=3, max_new_tokens=8, progress=False,
                                          reward=longer_is_better)
    assert len(seen["prompts"]) == 3 and seen["prompts"][0][-1]["content"] == rows[0]["messages"][0]["content"]
    assert samples["score"].tolist() == [11.0, 24.0, 5.0]
    assert samples["verifier"].tolist() == [1.0, 0.0, 1.0]  # the checker disagrees with the reward's choice
    assert pairs[0]["chosen"][0]["content"] == "Cats are small and soft."
    assert pairs[0]["rejected"][0]["content"] == "Cats."
    assert (pairs[0]["chosen_score"], pairs[0]["rejected_score"]) == (24.0, 5.0)


# --- reward model scores ---------------------------------------------------------------------------


@pytest.mark.slow
def test_reward_model_reads_the_sequences_reward_trainer_trains_on(tokenizer, reward_model, tmp_path):
    from trl import RewardTrainer

    trainer = RewardTrainer(model=reward_model, args=reward_config(TINY, tmp_path, disable_tqdm=True),
                            train_dataset=Dataset.from_list(PAIRS).remove_columns(["constraints"]),
                            processing_class=tokenizer)
    for index, pair in enumerate(PAIRS):
        example = trainer.train_dataset[index]
        assert example["chosen_ids"] == conversation_ids(tokenizer, pair["prompt"], pair["chosen"])
        assert example["rejected_ids"] == conversation_ids(tokenizer, pair["prompt"], pair["rejected"])
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    with torch.no_grad():
        logits = reward_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
    ours = score_pairs(reward_model, tokenizer, PAIRS)
    expected = ours["chosen_score"].tolist() + ours["rejected_score"].tolist()  # TRL stacks chosen, then rejected
    assert logits.tolist() == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
def test_score_pairs_table_and_accuracy(tokenizer, reward_model):
    table = score_pairs(reward_model, tokenizer, PAIRS)
    assert list(table.columns) == ["chosen_score", "rejected_score", "margin", "correct", "kind"]
    assert table["kind"].tolist() == ["lowercase", "num_bullets"]
    assert (table["margin"] == table["chosen_score"] - table["rejected_score"]).all()
    assert pairwise_accuracy(pd.DataFrame({"correct": [True, False, True, True]})) == 0.75
    assert constraint_kind({"max_words": 5, "lowercase": True}) == "lowercase+max_words" and constraint_kind({}) == "none"


@pytest.mark.slow
def test_reward_function_scores_like_trl_scores_a_reward_model(tokenizer, reward_model):
    """TRL's own path for an nn.Module in reward_funcs: chat template to text, right-padded batch, logits[:, 0]."""
    from trl.data_utils import apply_chat_template

    prompts = [pair["prompt"] for pair in PAIRS]
    completions = [pair["chosen"] for pair in PAIRS]
    texts = [apply_chat_template({"messages": p + c}, tokenizer)["text"] for p, c in zip(prompts, completions)]
    inputs = tokenizer(text=texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    with torch.no_grad():
        trl_scores = reward_model(**inputs).logits[:, 0].tolist()
    reward = RewardModelReward(reward_model, tokenizer, batch_size=1)
    ours = reward(prompts=prompts, completions=completions, completion_ids=[[1], [2]], trainer_state=None,
                  constraints=[{}, {}])
    assert reward.__name__ == "reward_model"
    assert ours == pytest.approx(trl_scores, abs=1e-5)
    assert ours == pytest.approx(score_conversations(reward_model, tokenizer, prompts, completions), abs=1e-5)
    # plain-string prompts and completions work too, and odd strings never raise
    assert len(reward(prompts=["Say hi", ""], completions=["hi", ""])) == 2


@pytest.mark.slow
def test_scores_come_back_in_input_order_whatever_the_batches(tokenizer, reward_model):
    from helpers.preferences import score_ids

    sequences = [[5, 6, 7, 8, 9, 10], [11], [12, 13, 14], [15, 16]]  # batches are formed by length, not by position
    one_by_one = [score_ids(reward_model, tokenizer.pad_token_id, [ids], batch_size=1)[0] for ids in sequences]
    assert score_ids(reward_model, tokenizer.pad_token_id, sequences, batch_size=3) == pytest.approx(one_by_one, abs=1e-5)


@pytest.mark.slow
def test_reward_function_needs_prompts(tokenizer, reward_model):
    with pytest.raises(ValueError, match="prompts"):
        RewardModelReward(reward_model, tokenizer)(completions=["hi"])


# --- configs -------------------------------------------------------------------------------------------


class LengthReward:
    """A stand-in reward model that pays the length of the answer: easy to predict."""
    __name__ = "length"

    def __call__(self, prompts=None, completions=None, **kwargs):
        return [float(len(c[0]["content"])) for c in completions]


@pytest.mark.slow
def test_reward_probe_records_reward_and_checker_on_its_schedule(tokenizer, monkeypatch):
    from transformers import TrainerControl, TrainerState

    from helpers import preferences

    rows = [{"messages": [{"role": "user", "content": "Say hi in lowercase."}], "constraints": {"lowercase": True}},
            {"messages": [{"role": "user", "content": "Describe cats in at most 2 words."}],
             "constraints": {"max_words": 2}}]
    outputs = iter([["hi", "Cats are soft animals."], ["HI THERE", "Soft cats."]])
    monkeypatch.setattr(preferences, "generate", lambda *args, **kwargs: next(outputs))
    probe = RewardProbe(tokenizer, rows, LengthReward(), max_new_tokens=8, every=2)
    assert probe.measure(torch.nn.Linear(1, 1), step=0) == {"step": 0, "reward_model": 12.0, "checker": 0.5}
    model = torch.nn.Linear(1, 1).train()
    state = TrainerState()
    for step in (1, 2):  # only step 2 is on the schedule
        state.global_step = step
        probe.on_step_end(None, state, TrainerControl(), model=model)
    assert probe.curve[-1] == {"step": 2, "reward_model": 9.0, "checker": 0.5}
    assert len(probe.curve) == 2 and model.training
    assert probe.answers["checker"].tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="every"):
        RewardProbe(tokenizer, rows, LengthReward(), max_new_tokens=8, every=0)


def test_reward_probe_accepts_a_right_math_answer_as_evaluation_does(tokenizer, monkeypatch):
    """The checker's verdict is evaluation's ``correct``, not a reward value: a right, well-formatted math answer
    (verifier score 1.2) is accepted, a wrong one is not."""
    from helpers import preferences

    monkeypatch.setattr(preferences, "generate", lambda *args, **kwargs: [
        "<think>\n3+4=7\n</think>\n<answer>7</answer>", "<think>\n3+4=8\n</think>\n<answer>8</answer>"])
    probe = RewardProbe(tokenizer, [MATH_ROW, MATH_ROW], LengthReward(), max_new_tokens=8, every=1)
    assert probe.measure(torch.nn.Linear(1, 1), step=0)["checker"] == 0.5
    assert probe.answers["checker"].tolist() == [1.0, 0.0]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_preference_configs_build_on_every_profile(name, tmp_path):
    """Drift guard: every field the course sets still exists in the pinned TRL, with the defaults the notebooks teach."""
    profile = PROFILES[name]
    rm = reward_config(profile, tmp_path, use_cpu=True, bf16=False)
    assert rm.center_rewards_coefficient is None
    rloo = rloo_config(profile, tmp_path, use_cpu=True, bf16=False, use_vllm=False)
    # TRL derives how many completions it samples per round: whole groups, one per prompt of the step
    assert rloo.generation_batch_size % rloo.num_generations == 0
    assert rloo.generation_batch_size // rloo.num_generations == profile.rl_prompts_per_step
    assert (rloo.beta, rloo.normalize_advantages) == (0.05, False)
    dpo = dpo_config(profile, tmp_path, use_cpu=True, bf16=False)
    assert (dpo.beta, dpo.loss_type) == (0.1, ["sigmoid"])
    for config in (rm, rloo, dpo):
        assert config.report_to == []  # TRL reads "none" as no logger at all
    assert profile.rl_pass_rate_samples >= 2 and profile.rl_candidate_prompts >= 1


@pytest.mark.slow
def test_reward_model_lora_trains_the_new_score_head_in_full(tokenizer):
    model = get_peft_model(load_reward_model("tiny", tokenizer), reward_model_lora_config(r=4, alpha=8))
    trained = [name for name, p in model.named_parameters() if p.requires_grad]
    head = [name for name in trained if ".score." in name]
    assert head and all("modules_to_save" in name for name in head)  # the random head: every weight trains
    assert {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trained if name not in head} == {
        "q_proj", "k_proj", "v_proj", "o_proj"}  # the backbone: LoRA on the attention projections only


def test_stage_checkpoint_prefers_later_stages(tmp_path, monkeypatch):
    monkeypatch.setattr(course_config, "CHECKPOINT_DIR", tmp_path)
    assert stage_checkpoint(TINY, ("grpo", "sft")) == ("tiny", "initial", ["grpo", "sft"])
    (tmp_path / "tiny" / "sft").mkdir(parents=True)
    (tmp_path / "tiny" / "sft" / "config.json").write_text("{}")
    assert stage_checkpoint(TINY, ("grpo", "sft")) == (str(tmp_path / "tiny" / "sft"), "sft", ["grpo"])
    (tmp_path / "tiny" / "grpo").mkdir()
    assert stage_checkpoint(TINY, ("grpo", "sft"))[1] == "sft"  # a folder without a model does not count
    (tmp_path / "tiny" / "grpo" / "config.json").write_text("{}")
    assert stage_checkpoint(TINY, ("grpo", "sft")) == (str(tmp_path / "tiny" / "grpo"), "grpo", [])
    assert stage_checkpoint(TINY, stages=("sft",))[1] == "sft"


# --- runs ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_reward_model_trains_logs_accuracy_and_reloads(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = load_reward_model("tiny", tokenizer)
    train = Dataset.from_list(list(load_task("preferences", TINY, split="train").select(range(8)))).remove_columns(
        ["constraints"])
    config = reward_config(TINY, tmp_path / "rm", disable_tqdm=True)
    trainer = run_reward_model(model, tokenizer, train, config, peft_config=reward_model_lora_config(r=4, alpha=8))
    history = pd.read_csv(tmp_path / "rm" / HISTORY_FILE)
    for column in ("loss", "accuracy", "margin"):
        assert history[column].notna().sum() == TINY.reward_model_steps, column
    assert (tmp_path / "rm" / COMPLETED_MARKER).exists()
    adapter_scores = score_pairs(trainer.model, tokenizer, PAIRS)
    merged = merge_lora(trainer.model)
    before = score_pairs(merged, tokenizer, PAIRS)
    # merging keeps the trained score head (modules_to_save) and folds LoRA in: the scores do not change
    assert before["chosen_score"].to_numpy() == pytest.approx(adapter_scores["chosen_score"].to_numpy(), abs=1e-5)
    save_model(merged, tmp_path / "reward_model", tokenizer)
    reloaded = load_reward_model(tmp_path / "reward_model")
    assert reloaded.config.num_labels == 1 and reloaded.config.pad_token_id == tokenizer.pad_token_id
    after = score_pairs(reloaded, tokenizer, PAIRS)
    assert after["chosen_score"].to_numpy() == pytest.approx(before["chosen_score"].to_numpy(), abs=1e-5)


@pytest.mark.slow
def test_rloo_trains_with_rule_based_and_learned_rewards(tokenizer, reward_model, tmp_path):
    rows = [{"prompt": task_prompt({"prompt": f"What is {a} + 1?"}), "answer": str(a + 1)} for a in range(4)]
    config = rloo_config(TINY, tmp_path / "rloo", max_steps=1, disable_tqdm=True, reward_weights=[1.0, 0.2, 0.1])
    trainer = run_rloo(load_model("tiny"), tokenizer, Dataset.from_list(rows),
                       [math_accuracy_reward, format_reward, RewardModelReward(reward_model, tokenizer)], config,
                       peft_config=lora_config(r=4, alpha=8))
    assert trainer.state.global_step == 1
    history = pd.read_csv(tmp_path / "rloo" / HISTORY_FILE)
    for column in ("reward", "rewards/math_accuracy_reward/mean", "rewards/reward_model/mean", "kl",
                   "completions/mean_length"):
        assert column in history and history[column].notna().sum() == 1, column


@pytest.mark.slow
def test_dpo_trains_on_pairs_and_logs_implicit_rewards(tokenizer, tmp_path):
    pairs = best_vs_worst_pairs([task_prompt(MATH_ROW)] * 2, [["<answer>7</answer>", "<answer>8</answer>"]] * 2,
                                [[1.0, 0.0]] * 2)
    model = load_model("tiny")
    ours = pair_logprobs(model, tokenizer, pairs)  # before training: policy = reference
    config = dpo_config(TINY, tmp_path / "dpo", max_steps=1, per_device_train_batch_size=1, disable_tqdm=True)
    trainer = run_dpo(model, tokenizer, Dataset.from_list(pairs), config, peft_config=lora_config(r=4, alpha=8))
    assert trainer.state.global_step == 1
    history = pd.read_csv(tmp_path / "dpo" / HISTORY_FILE)
    for column in ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"):
        assert column in history and history[column].notna().sum() == 1, column
    assert history["loss"].iloc[0] == pytest.approx(0.6931, abs=1e-3)  # policy = reference at step 1: log 2
    # TRL's log-probs of the first batch (one pair, before the update) are ours: same tokens, same sum
    assert history["logps/chosen"].iloc[0] == pytest.approx(ours["chosen_logp"].iloc[0], abs=1e-2)
    assert history["logps/rejected"].iloc[0] == pytest.approx(ours["rejected_logp"].iloc[0], abs=1e-2)
    assert (ours["chosen_tokens"] > 0).all() and (ours["rejected_tokens"] > 0).all()
