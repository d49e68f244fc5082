"""Profiles: the right one is picked, a wrong name is rejected with the valid ones listed."""

import pytest
import torch

from helpers import config
from helpers.config import PROFILES, get_profile, seed_everything


def test_explicit_name_wins_over_environment(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "gpu")
    assert get_profile("tiny").name == "tiny"


def test_environment_variable_picks_profile(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    assert get_profile().name == "cpu"
    monkeypatch.setenv("COURSE_PROFILE", " TINY ")
    assert get_profile().name == "tiny"


def _fake_gpu(monkeypatch, name, memory_gb, bf16):
    device = type("Device", (), {"name": name, "total_memory": int(memory_gb * 2**30)})()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=0: device)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)


def test_fallback_follows_hardware(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_profile().name == "cpu"
    _fake_gpu(monkeypatch, "NVIDIA A100-SXM4-40GB", 39.4, bf16=True)
    assert get_profile().name == "gpu"


def test_a_colab_runtime_without_a_gpu_says_how_to_get_one(monkeypatch):
    import sys
    import warnings

    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a laptop without a GPU is the normal case: no warning
        assert get_profile().name == "cpu"
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    with pytest.warns(UserWarning, match="Colab runtime has no GPU.*Change runtime type"):
        assert get_profile().name == "cpu"


@pytest.mark.parametrize("name, memory_gb, bf16", [("Tesla T4", 15.0, False), ("NVIDIA L4", 22.0, True)])
def test_a_small_gpu_gets_the_cpu_sizes_with_a_warning(monkeypatch, name, memory_gb, bf16):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    _fake_gpu(monkeypatch, name, memory_gb, bf16)
    with pytest.warns(UserWarning, match=f"{name}.*COURSE_PROFILE=gpu"):
        assert get_profile().name == "cpu"
    monkeypatch.setenv("COURSE_PROFILE", "gpu")
    assert get_profile().name == "gpu"  # forcing it still works


def test_unknown_profile_lists_valid_ones(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    with pytest.raises(ValueError) as err:
        get_profile("laptop")
    message = str(err.value)
    assert "'laptop'" in message
    for name in ("tiny", "cpu", "gpu", "t4"):
        assert name in message


def test_unknown_profile_from_environment_is_rejected(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "gpu-large")
    with pytest.raises(ValueError, match="valid profiles are: cpu, gpu, t4, tiny"):
        get_profile()


def test_a_gpu_without_native_bf16_trains_in_fp16_autocast(monkeypatch):
    from helpers.training import hardware_kwargs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for native_bf16, expected in ((True, (True, False)), (False, (False, True))):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, b=native_bf16: b)
        kwargs = hardware_kwargs(PROFILES["t4"])
        assert (kwargs["bf16"], kwargs["fp16"]) == expected
        assert kwargs["activation_checkpointing"] and not kwargs["use_cpu"]
    t4, gpu = PROFILES["t4"], PROFILES["gpu"]
    assert (t4.dtype, t4.source, t4.rl_steps, t4.num_generations) == ("float32", "hub", gpu.rl_steps, gpu.num_generations)


def test_profiles_scale_up_in_order():
    tiny, cpu, gpu = PROFILES["tiny"], PROFILES["cpu"], PROFILES["gpu"]
    for field in ("n_math", "n_countdown", "n_eval", "max_seq_length", "max_new_tokens", "rl_steps"):
        assert getattr(tiny, field) < getattr(cpu, field) <= getattr(gpu, field), field
    assert cpu.n_eval >= 200  # the issues' "at least 200 held-out prompts"
    assert gpu.model_id == "Qwen/Qwen2.5-0.5B-Instruct"
    assert gpu.torch_dtype == torch.bfloat16 and cpu.torch_dtype == torch.float32
    assert cpu.num_generations >= 2 and gpu.num_generations >= 2  # GRPO needs a group


def test_profile_paths_are_separate():
    tiny, cpu = PROFILES["tiny"], PROFILES["cpu"]
    assert tiny.checkpoint_dir != cpu.checkpoint_dir
    assert tiny.checkpoint_dir.parent == config.CHECKPOINT_DIR
    assert cpu.figure_dir == config.FIGURE_DIR / "cpu"
    assert cpu.data_dir("generated") == config.DATA_DIR / "generated" / "cpu"
    with pytest.raises(ValueError, match="raw, generated or processed"):
        cpu.data_dir("cache")


def test_seed_everything_repeats_random_draws():
    seed_everything(7)
    first = torch.rand(3)
    seed_everything(7)
    assert torch.equal(first, torch.rand(3))


def test_cpu_has_native_bf16_reads_the_flags():
    from helpers.config import cpu_has_native_bf16

    assert cpu_has_native_bf16("processor : 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert cpu_has_native_bf16("flags : fpu amx_tile amx_bf16\n")
    assert not cpu_has_native_bf16("flags : fpu sse avx2 avx512f\n")
    assert not cpu_has_native_bf16("")
    assert isinstance(cpu_has_native_bf16(), bool)  # this machine, whatever it has


def test_constraints_pin_every_dependency_within_its_range():
    """constraints.txt (the tested versions) must pin each pyproject.toml dependency to a version its range allows."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    root = config.REPO_ROOT
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{requirement.name}=={pins[name]} is outside {spec!r}"


def test_colab_constraints_are_the_tested_pins_without_torch_and_the_jupyter_stack():
    """Colab installs with constraints-colab.txt: every tested pin but torch and the Jupyter stack (Colab's stay)."""
    import importlib.util

    root = config.REPO_ROOT
    spec = importlib.util.spec_from_file_location("colab_constraints", root / "scripts" / "colab_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (root / "constraints-colab.txt").read_text()
    assert committed == module.colab_constraints((root / "constraints.txt").read_text()), \
        "constraints-colab.txt is stale: run python scripts/colab_constraints.py"
    names = {line.split("==")[0].lower() for line in committed.splitlines() if "==" in line}
    assert not names & {"torch", "jupyterlab", "ipykernel", "ipython", "jupyter_server", "tornado", "pyzmq"}
    assert {"trl", "transformers", "peft", "accelerate", "datasets", "math-verify"} <= names
    assert "pip install -q -c constraints-colab.txt -e ." in (root / "README.md").read_text()


def test_profiles_are_data_not_branches():
    """What differs between profiles is a field (source, accelerator, sizes), never a test of the profile's name."""
    import dataclasses
    import re

    assert {p.source for p in PROFILES.values()} == {"offline", "hub"}
    assert PROFILES["gpu"].accelerator == "cuda" and PROFILES["cpu"].accelerator == "cpu"
    with pytest.raises(ValueError, match="source must be"):
        dataclasses.replace(PROFILES["cpu"], source="s3")
    branches = [f"{path.relative_to(config.REPO_ROOT)}:{number}"
                for path in sorted((config.REPO_ROOT / "helpers").rglob("*.py"))
                for number, line in enumerate(path.read_text().splitlines(), 1)
                if re.search(r"\.name\s*[!=]=\s*[\"'](tiny|cpu|gpu)[\"']", line)]
    assert not branches, branches


def test_course_storage_moves_what_runs_write_and_nothing_shipped(tmp_path):
    import subprocess
    import sys

    code = ("from helpers import config; from helpers.data.instructions import TOPICS_FILE; "
            "print(config.DATA_DIR, config.CHECKPOINT_DIR, config.FIGURE_DIR, TOPICS_FILE, sep='\\n')")
    env = {**__import__("os").environ, "COURSE_STORAGE": str(tmp_path / "drive")}
    lines = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                           cwd=config.REPO_ROOT).stdout.split()
    assert lines[:3] == [str(tmp_path / "drive" / name) for name in ("data", "checkpoints", "figures")]
    assert lines[3] == str(config.REPO_ROOT / "data" / "raw" / "instruction_topics.json")


def test_config_on_cpu_reads_the_gpu_settings_with_only_the_cpu_switches_changed():
    from helpers.config import get_profile
    from helpers.training import compare_profiles, config_on_cpu, grpo_config, sft_config

    gpu = get_profile("gpu")
    grpo = config_on_cpu(grpo_config, gpu)
    assert (grpo.use_vllm, grpo.bf16, grpo.use_cpu) == (False, False, True)
    assert grpo.max_steps == gpu.rl_steps and grpo.max_completion_length == gpu.max_completion_length
    assert config_on_cpu(sft_config, gpu, max_steps=3).max_steps == 3  # overrides still apply
    table = compare_profiles(lambda p: {"steps": config_on_cpu(grpo_config, p).max_steps})
    assert table.index.tolist() == ["cpu", "gpu"]
    assert table["steps"].tolist() == [get_profile("cpu").rl_steps, gpu.rl_steps]


@pytest.mark.parametrize("native, switch, expected", [(True, None, True), (True, "0", False), (True, "1", True),
                                                      (False, None, False), (False, "1", False)])
def test_cpu_bf16_is_used_only_where_native_and_not_switched_off(native, switch, expected, monkeypatch):
    import helpers.config as config

    monkeypatch.setattr(config, "cpu_has_native_bf16", lambda cpuinfo=None: native)
    if switch is None:
        monkeypatch.delenv("COURSE_CPU_BF16", raising=False)
    else:
        monkeypatch.setenv("COURSE_CPU_BF16", switch)
    assert config.cpu_bf16_enabled() is expected
