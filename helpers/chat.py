"""Prompts, chat templates, tokenization with label masking, and the padding collator.

The one rule of SFT label masking: the loss sees only what the assistant wrote. Everything else
(system prompt, user turns, the ``<|im_start|>assistant\\n`` header the template adds) gets label
-100, which ``torch.nn.CrossEntropyLoss`` skips. Padding gets -100 too.

What counts as "the assistant wrote it" follows TRL's SFTTrainer for prompt-completion data: for an
assistant turn, the tokens the chat template adds beyond the generation prompt, i.e. the
message content, the end-of-turn token (``<|im_end|>``, so the model learns to stop) and the
newline the template puts after it.
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from helpers.data import countdown_prompt, math_prompt, task_of  # the task wording lives with the data

IGNORE_INDEX = -100

R1_SYSTEM_PROMPT = (
    "You are a helpful assistant. You first think about the reasoning process and then give the answer. "
    "Put the reasoning inside <think> </think> tags and the final answer inside <answer> </answer> tags, "
    "i.e. <think> reasoning here </think>\n<answer> answer here </answer>."
)


def prompt_messages(user_text: str, system_prompt: str | None = R1_SYSTEM_PROMPT) -> list[dict]:
    """A conversational prompt: the R1 system prompt (unless ``None``) and one user turn."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": user_text}]


def task_prompt(row: dict, system_prompt: str | None = R1_SYSTEM_PROMPT) -> list[dict]:
    """The conversational prompt for one dataset row of any task: Countdown (``nums``, ``target``),
    math (``prompt`` text with an ``answer``), a preference row (``prompt`` as messages), or a
    conversation (``messages``: everything before the last assistant turn)."""
    task = task_of(row)
    if task == "countdown":
        return prompt_messages(countdown_prompt(row["nums"], row["target"]), system_prompt)
    if task == "math" and isinstance(row.get("prompt"), str):
        return prompt_messages(math_prompt(row["prompt"]), system_prompt)
    messages = list(row.get("messages") or row.get("prompt") or [])
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    if not messages:
        raise ValueError(f"cannot build a prompt from a row with columns {sorted(row)}: "
                         "expected nums/target, a prompt, or messages with a non-assistant turn")
    if system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}] + messages
    return messages


def row_prompt(row: dict, system_prompt: str | None = R1_SYSTEM_PROMPT) -> list[dict]:
    """The prompt a row is trained and evaluated with: ``task_prompt`` with the R1 system prompt for math and
    Countdown (answers in ``<think>``/``<answer>`` tags), and without it for instruction rows (plain chat answers)."""
    return task_prompt(row, None if task_of(row) == "instructions" else system_prompt)


def to_prompt_completion(messages: list[dict], system_prompt: str | None = R1_SYSTEM_PROMPT) -> dict:
    """Split a conversation ending in an assistant turn into TRL's conversational prompt-completion form,
    adding the system prompt when the conversation has none."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("the conversation must end with an assistant message")
    prompt = list(messages[:-1])
    if system_prompt and prompt and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system_prompt}] + prompt
    return {"prompt": prompt, "completion": [messages[-1]]}


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def conversation_segments(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> list[tuple[str, bool]]:
    """The rendered conversation cut into ``(text, trained)`` pieces: assistant-written text is trained.

    Found by rendering growing prefixes of the conversation: what an assistant turn adds beyond
    the generation prompt is what the assistant wrote.
    """
    _validate_messages(messages)
    segments: list[tuple[str, bool]] = []
    done = ""  # the text already assigned to segments
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:index], add_generation_prompt=True) if index else ""
        after = _render(tokenizer, messages[: index + 1])
        if not before.startswith(done) or not after.startswith(before):
            raise ValueError(
                "the chat template does not render conversations prefix-stably (an earlier turn renders differently "
                "once later turns follow), so assistant tokens cannot be located"
            )
        segments.append((before[len(done):], False))
        segments.append((after[len(before):], True))
        done = after
    rest = _render(tokenizer, messages)[len(done):]
    if rest:
        segments.append((rest, False))
    return [(text, trained) for text, trained in segments if text]


def _validate_messages(messages: list[dict]) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"message {index} must be a dict with 'role' and 'content', got {message!r}")
        if message["role"] not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"message {index} has unknown role {message['role']!r}")
        if not isinstance(message["content"], str):
            raise ValueError(f"message {index} content must be a string, got {type(message['content']).__name__}")
    if messages[0]["role"] == "assistant":
        raise ValueError("message 0 is an assistant turn; a conversation starts with a system or user message")


def tokenize_conversation(tokenizer: PreTrainedTokenizerBase, messages: list[dict], max_length: int | None = None) -> dict:
    """Tokenize a conversation for SFT: ``input_ids``, ``attention_mask`` and ``labels``.

    ``labels`` equals ``input_ids`` on assistant-written tokens and is -100 everywhere else.
    Each segment is tokenized on its own, as at inference time, where the prompt is tokenized
    alone and the answer is generated after it. ``max_length`` truncates from the end; if that
    cuts away every trained token, a warning says so (``tokenize_dataset`` drops such rows).
    """
    input_ids: list[int] = []
    labels: list[int] = []
    for text, trained in conversation_segments(tokenizer, messages):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids += ids
        labels += ids if trained else [IGNORE_INDEX] * len(ids)
    if max_length is not None and len(input_ids) > max_length:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
        if all(label == IGNORE_INDEX for label in labels):
            warnings.warn(
                f"truncating to max_length={max_length} removed every assistant token; this sample teaches nothing",
                stacklevel=2,
            )
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def tokenize_dataset(tokenizer: PreTrainedTokenizerBase, dataset: Dataset, max_length: int | None = None,
                     messages_column: str = "messages") -> Dataset:
    """Tokenize every conversation of ``dataset``; rows left with no trained token are dropped, with a warning."""

    def tokenize_row(row):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # counted and reported once below instead
            return tokenize_conversation(tokenizer, row[messages_column], max_length)

    tokenized = dataset.map(tokenize_row, remove_columns=dataset.column_names)
    keep = [i for i, labels in enumerate(tokenized["labels"]) if any(label != IGNORE_INDEX for label in labels)]
    if len(keep) < len(tokenized):
        warnings.warn(
            f"dropped {len(tokenized) - len(keep)} of {len(tokenized)} conversations: truncation to "
            f"max_length={max_length} left no assistant token to train on",
            stacklevel=2,
        )
        tokenized = tokenized.select(keep)
    return tokenized


@dataclass
class PaddingCollator:
    """Pad a list of tokenized examples into a batch: pad id / attention 0 / label -100 on padding.

    Right padding for training; ``padding_side="left"`` for generation, so every prompt ends where
    the new tokens begin.
    """

    tokenizer: PreTrainedTokenizerBase
    padding_side: str = "right"
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', not {self.padding_side!r}")
        longest = max(len(example["input_ids"]) for example in examples)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        pad_values = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        batch = {}
        for key, pad_value in pad_values.items():
            if key not in examples[0]:
                continue
            rows = []
            for example in examples:
                values = list(example[key])
                padding = [pad_value] * (longest - len(values))
                rows.append(padding + values if self.padding_side == "left" else values + padding)
            batch[key] = torch.tensor(rows, dtype=torch.long)
        return batch


def render_masked_html(tokenizer: PreTrainedTokenizerBase, example: dict) -> str:
    """HTML of a tokenized example: trained tokens on green, masked tokens grey, token borders visible."""
    spans = []
    for token_id, label in zip(example["input_ids"], example["labels"]):
        text = html.escape(tokenizer.decode([token_id])).replace("\n", "\\n<br>")
        style = "background:#b7ebc0;color:#0b3d17" if label != IGNORE_INDEX else "background:#eeeeee;color:#888888"
        spans.append(f'<span style="{style};border-right:1px solid #fff;font-family:monospace">{text}</span>')
    legend = ('<p><span style="background:#b7ebc0;padding:2px">trained (label = token id)</span> '
              '<span style="background:#eeeeee;color:#888;padding:2px">masked (label = -100)</span></p>')
    return legend + '<div style="line-height:1.9">' + "".join(spans) + "</div>"
