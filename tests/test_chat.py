"""Label masking: the loss sees exactly what the assistant wrote, nothing else."""

import warnings

import pytest
import torch
from datasets import Dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.chat import (
    IGNORE_INDEX,
    R1_SYSTEM_PROMPT,
    PaddingCollator,
    prompt_messages,
    task_prompt,
    to_prompt_completion,
    tokenize_conversation,
    tokenize_dataset,
)
from helpers.models import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny")


def trained_runs(tokenizer, example):
    """Decode each maximal run of trained tokens."""
    runs, current = [], []
    for token_id, label in zip(example["input_ids"], example["labels"]):
        if label != IGNORE_INDEX:
            current.append(token_id)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run) for run in runs]


def test_single_turn_masks_everything_but_the_answer(tokenizer):
    messages = prompt_messages("What is 3 + 4?") + [{"role": "assistant", "content": "<think>3+4=7</think>\n<answer>7</answer>"}]
    example = tokenize_conversation(tokenizer, messages)
    assert len(example["input_ids"]) == len(example["labels"]) == len(example["attention_mask"])
    assert trained_runs(tokenizer, example) == ["<think>3+4=7</think>\n<answer>7</answer><|im_end|>\n"]
    assert tokenizer.decode(example["input_ids"]) == tokenizer.apply_chat_template(messages, tokenize=False)
    # the prompt, including the assistant header, is masked
    first_trained = next(i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX)
    assert tokenizer.decode(example["input_ids"][:first_trained]).endswith("<|im_start|>assistant\n")
    assert R1_SYSTEM_PROMPT in tokenizer.decode(example["input_ids"][:first_trained])


def test_minus_100_removes_a_token_from_the_loss():
    logits = torch.randn(1, 4, 10)
    labels = torch.tensor([[1, 2, 3, 4]])
    masked = labels.clone()
    masked[0, :2] = IGNORE_INDEX
    loss_all = torch.nn.functional.cross_entropy(logits[0], labels[0], reduction="none")
    loss_masked = torch.nn.functional.cross_entropy(logits[0], masked[0], ignore_index=IGNORE_INDEX)
    assert torch.isclose(loss_masked, loss_all[2:].mean())


message_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789+-*/=.,?!()<>é你", min_size=1, max_size=30).map(str.strip).filter(bool)


@st.composite
def conversations(draw):
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(message_text)})
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(message_text)})
        messages.append({"role": "assistant", "content": draw(message_text)})
    if draw(st.booleans()):  # a trailing user turn with no answer
        messages.append({"role": "user", "content": draw(message_text)})
    return messages


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=conversations())
def test_labels_equal_input_ids_exactly_on_assistant_tokens(tokenizer, messages):
    example = tokenize_conversation(tokenizer, messages)
    for token_id, label in zip(example["input_ids"], example["labels"]):
        assert label in (IGNORE_INDEX, token_id)
    assistant_texts = [m["content"] + "<|im_end|>\n" for m in messages if m["role"] == "assistant"]
    runs = trained_runs(tokenizer, example)
    # consecutive turns are never adjacent (a user turn sits between), so each run is one assistant turn
    assert runs == assistant_texts
    assert tokenizer.decode(example["input_ids"]) == tokenizer.apply_chat_template(messages, tokenize=False)


def test_truncation_that_removes_all_answers_warns_and_dataset_drops_the_row(tokenizer):
    long_prompt = prompt_messages("word " * 200) + [{"role": "assistant", "content": "short answer"}]
    with pytest.warns(UserWarning, match="removed every assistant token"):
        example = tokenize_conversation(tokenizer, long_prompt, max_length=32)
    assert len(example["input_ids"]) == 32 and set(example["labels"]) == {IGNORE_INDEX}
    ok = prompt_messages("hi", system_prompt=None) + [{"role": "assistant", "content": "hello"}]
    dataset = Dataset.from_dict({"messages": [long_prompt, ok]})
    with pytest.warns(UserWarning, match="dropped 1 of 2 conversations"):
        tokenized = tokenize_dataset(tokenizer, dataset, max_length=64)
    assert len(tokenized) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(tokenize_dataset(tokenizer, dataset)) == 2  # no truncation, no warning


def test_malformed_messages_are_rejected_with_the_index(tokenizer):
    with pytest.raises(ValueError, match="message 1 must be a dict with 'role' and 'content'"):
        tokenize_conversation(tokenizer, [{"role": "user", "content": "hi"}, {"role": "assistant"}])
    with pytest.raises(ValueError, match="message 0 content must be a string"):
        tokenize_conversation(tokenizer, [{"role": "user", "content": 42}])
    with pytest.raises(ValueError, match="unknown role 'bot'"):
        tokenize_conversation(tokenizer, [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}])
    with pytest.raises(ValueError, match="non-empty list"):
        tokenize_conversation(tokenizer, [])


def test_collator_pads_right_for_training_and_left_for_generation(tokenizer):
    short = {"input_ids": [1, 2], "attention_mask": [1, 1], "labels": [IGNORE_INDEX, 2]}
    long = {"input_ids": [5, 6, 7, 8], "attention_mask": [1, 1, 1, 1], "labels": [5, 6, 7, 8]}
    pad = tokenizer.pad_token_id
    batch = PaddingCollator(tokenizer)([short, long])
    assert batch["input_ids"].tolist() == [[1, 2, pad, pad], [5, 6, 7, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX], [5, 6, 7, 8]]
    left = PaddingCollator(tokenizer, padding_side="left", pad_to_multiple_of=8)([short, long])
    assert left["input_ids"].shape == (2, 8) and left["input_ids"][0, -2:].tolist() == [1, 2]
    assert left["attention_mask"][0].tolist() == [0] * 6 + [1, 1]


def test_prompt_completion_split_adds_system_prompt():
    split = to_prompt_completion([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    assert split["prompt"][0] == {"role": "system", "content": R1_SYSTEM_PROMPT}
    assert split["completion"] == [{"role": "assistant", "content": "a"}]
    with pytest.raises(ValueError, match="end with an assistant"):
        to_prompt_completion([{"role": "user", "content": "q"}])


def test_row_prompt_asks_instructions_as_plain_chat_and_math_with_the_r1_system_prompt():
    from helpers.chat import row_prompt

    instruction = {"messages": [{"role": "user", "content": "Describe cats in at most 5 words."},
                                {"role": "assistant", "content": "Small, soft, proud hunters."}],
                   "constraints": {"max_words": 5}}
    assert row_prompt(instruction) == [{"role": "user", "content": "Describe cats in at most 5 words."}]
    math = {"prompt": "What is 2+2?", "answer": "4"}
    assert row_prompt(math) == task_prompt(math) and row_prompt(math)[0]["content"] == R1_SYSTEM_PROMPT
    assert row_prompt(math, system_prompt="Be brief.")[0] == {"role": "system", "content": "Be brief."}


def test_task_prompt_for_every_row_shape():
    from helpers.data import countdown_prompt, math_prompt

    countdown = task_prompt({"nums": [3, 5, 7], "target": 22})
    assert countdown == prompt_messages(countdown_prompt([3, 5, 7], 22))
    math = task_prompt({"prompt": "What is 2+2?", "answer": "4"}, system_prompt=None)
    assert math == [{"role": "user", "content": math_prompt("What is 2+2?")}]
    chat = task_prompt({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    assert [m["role"] for m in chat] == ["system", "user"]
    preference = task_prompt({"prompt": [{"role": "user", "content": "hi"}], "chosen": [], "rejected": []})
    assert preference[-1] == {"role": "user", "content": "hi"} and preference[0]["content"] == R1_SYSTEM_PROMPT
    with pytest.raises(ValueError, match="cannot build a prompt"):
        task_prompt({"messages": [{"role": "assistant", "content": "orphan"}]})
