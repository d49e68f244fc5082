"""Rejection sampling, distillation data and the optional teacher endpoint (tested on a local server only)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

import helpers.config
from helpers.chat import R1_SYSTEM_PROMPT
from helpers.config import get_profile
from helpers.distillation import (
    TEACHER_PREFERENCE,
    TeacherClient,
    TeacherConfig,
    TeacherError,
    cache_key,
    reference_completions,
    rejection_summary,
    sample_scored,
    select_verified,
    to_sft_rows,
)
from helpers.jsonl import read_jsonl
from helpers.models import load_model, load_tokenizer, stage_checkpoint

# ---------------------------------------------------------------------------------------------
# Which checkpoint teaches
# ---------------------------------------------------------------------------------------------


def test_the_teacher_is_the_best_rl_checkpoint_then_the_initial_model(tmp_path, monkeypatch):
    monkeypatch.setattr(helpers.config, "CHECKPOINT_DIR", tmp_path)
    profile = get_profile("tiny")

    def best_checkpoint(profile, preference=TEACHER_PREFERENCE):
        name, stage, _ = stage_checkpoint(profile, preference)
        return stage, name

    assert best_checkpoint(profile) == ("initial", "tiny")
    for stage in ("sft", "dpo"):
        (tmp_path / "tiny" / stage).mkdir(parents=True)
        (tmp_path / "tiny" / stage / "config.json").write_text("{}")
    (tmp_path / "tiny" / "grpo").mkdir()  # an empty folder (an interrupted save) does not count
    # RLOO and DPO train on instructions (notebooks 6 and 7): never the math teacher
    assert best_checkpoint(profile) == ("sft", str(tmp_path / "tiny" / "sft"))
    (tmp_path / "tiny" / "rloo").mkdir()
    (tmp_path / "tiny" / "rloo" / "config.json").write_text("{}")
    assert best_checkpoint(profile)[0] == "sft"
    (tmp_path / "tiny" / "grpo" / "adapter_config.json").write_text("{}")
    assert best_checkpoint(profile)[0] == "grpo"
    assert best_checkpoint(profile, preference=("sft",))[0] == "sft"


# ---------------------------------------------------------------------------------------------
# Rejection sampling
# ---------------------------------------------------------------------------------------------


def scored_table():
    """Three prompts x three samples: prompt 0 has two verified samples, prompt 1 one correct but
    badly formatted sample, prompt 2 nothing correct."""
    records = [
        # prompt_index, sample, correct, format_ok, completion
        (0, 0, True, True, "<think>long long long</think><answer>4</answer>"),
        (0, 1, True, True, "<think>short</think><answer>4</answer>"),
        (0, 2, False, True, "<think>x</think><answer>5</answer>"),
        (1, 0, True, False, "4"),
        (1, 1, False, False, "no idea"),
        (1, 2, False, True, "<think>y</think><answer>3</answer>"),
        (2, 0, False, True, "<think>z</think><answer>1</answer>"),
        (2, 1, False, False, ""),
        (2, 2, False, False, "?"),
    ]
    table = pd.DataFrame(records, columns=["prompt_index", "sample", "correct", "format_ok", "completion"])
    table["length_chars"] = table["completion"].str.len()
    return table


def test_select_verified_keeps_the_shortest_correct_formatted_sample_per_prompt():
    kept = select_verified(scored_table())
    assert kept["prompt_index"].tolist() == [0]
    assert kept["completion"].tolist() == ["<think>short</think><answer>4</answer>"]
    lenient = select_verified(scored_table(), require_format=False)
    assert lenient["prompt_index"].tolist() == [0, 1] and lenient["completion"].iloc[1] == "4"
    two = select_verified(scored_table(), max_per_prompt=2)
    assert two["sample"].tolist() == [1, 0]  # shortest first within the prompt
    assert select_verified(scored_table(), max_length=20).empty  # both verified samples are longer
    with pytest.raises(ValueError):
        select_verified(scored_table(), max_per_prompt=0)


def test_select_verified_breaks_length_ties_by_sampling_order():
    table = scored_table()
    table.loc[[0, 1], "completion"] = ["<think>aa</think><answer>4</answer>", "<think>bb</think><answer>4</answer>"]
    table["length_chars"] = table["completion"].str.len()
    assert select_verified(table)["sample"].tolist() == [0]


def test_rejection_summary_counts_each_filter():
    table = scored_table()
    summary = rejection_summary(table, select_verified(table))
    assert summary == {"prompts": 3, "samples": 9, "correct samples": 3, "correct and formatted": 2,
                       "prompts with a verified sample": 1, "kept (one per prompt)": 1}


def test_to_sft_rows_builds_conversational_prompt_completion_rows():
    rows = [{"prompt": "What is 2+2?", "answer": "4"}, {"nums": [3, 5], "target": 8}]
    kept = pd.DataFrame({"prompt_index": [1, 0], "completion": ["<think>3+5=8</think><answer>3+5</answer>", "c0"]})
    sft = to_sft_rows(rows, kept)
    assert sft[0]["prompt"][0] == {"role": "system", "content": R1_SYSTEM_PROMPT}
    assert "[3, 5]" in sft[0]["prompt"][1]["content"] and "What is 2+2?" in sft[1]["prompt"][1]["content"]
    assert sft[0]["completion"] == [{"role": "assistant", "content": "<think>3+5=8</think><answer>3+5</answer>"}]


@pytest.mark.slow
def test_sample_scored_returns_k_scored_samples_per_prompt():
    model, tokenizer = load_model("tiny"), load_tokenizer("tiny")
    rows = [{"prompt": "1+1?", "answer": "2"}, {"nums": [3, 5], "target": 8}, {"prompt": "2+3?", "answer": "5"}]
    scored = sample_scored(model, tokenizer, rows, n_samples=3, max_new_tokens=3, batch_size=2, progress=False)
    assert len(scored) == 9
    assert scored["prompt_index"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert scored["sample"].tolist() == [0, 1, 2] * 3
    assert {"correct", "format_ok", "length_chars", "completion"} <= set(scored.columns)
    with pytest.raises(ValueError):
        sample_scored(model, tokenizer, rows, n_samples=0, max_new_tokens=3)


# ---------------------------------------------------------------------------------------------
# The teacher endpoint: configuration from the environment only
# ---------------------------------------------------------------------------------------------


def test_teacher_config_needs_a_key_and_hides_it():
    assert TeacherConfig.from_env({}) is None
    assert TeacherConfig.from_env({"TEACHER_API_KEY": "  ", "TEACHER_MODEL": "m"}) is None
    config = TeacherConfig.from_env({"TEACHER_API_KEY": "sk-secret"})
    assert config.base_url == "https://api.openai.com/v1" and config.model == "gpt-4o-mini"
    config = TeacherConfig.from_env({"TEACHER_API_KEY": "sk-secret", "TEACHER_BASE_URL": "http://127.0.0.1:9/v1/",
                                     "TEACHER_MODEL": "teacher-7b"})
    assert config.base_url == "http://127.0.0.1:9/v1" and config.model == "teacher-7b"
    assert "sk-secret" not in repr(config)


def test_cache_key_depends_on_model_prompt_and_settings():
    messages = [{"role": "user", "content": "hi"}]
    key = cache_key("m", messages, temperature=0.0)
    assert key == cache_key("m", [{"content": "hi", "role": "user"}], temperature=0.0)
    assert key != cache_key("m2", messages, temperature=0.0)
    assert key != cache_key("m", [{"role": "user", "content": "hi!"}], temperature=0.0)
    assert key != cache_key("m", messages, temperature=0.7)


# ---------------------------------------------------------------------------------------------
# The teacher endpoint: a tiny OpenAI-compatible server on 127.0.0.1
# ---------------------------------------------------------------------------------------------


class FakeChatServer:
    """Answers POST /v1/chat/completions; ``statuses`` lists the HTTP codes of the next replies (then 200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                status = server.statuses.pop(0) if server.statuses else 200
                if self.path != "/v1/chat/completions":
                    status = 404
                if status == 200:
                    question = body["messages"][-1]["content"]
                    payload = {"choices": [{"message": {"role": "assistant", "content": f"<answer>{question}</answer>"}}]}
                else:
                    payload = {"error": {"message": f"status {status} from the fake server"}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def client_for(server, tmp_path, **kwargs):
    config = TeacherConfig(base_url=server.url, model="fake-teacher", api_key="sk-test-key")
    return TeacherClient(config, tmp_path / "teacher_cache.jsonl", backoff=0.0, **kwargs)


def test_teacher_client_posts_openai_requests_and_caches_answers(tmp_path):
    prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "7"}]
    with FakeChatServer() as server:
        client = client_for(server, tmp_path, max_tokens=64)
        assert client.complete(prompt) == "<answer>7</answer>"
        request = server.requests[0]
        assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test-key"
        assert request["body"]["model"] == "fake-teacher" and request["body"]["messages"] == prompt
        assert request["body"]["max_tokens"] == 64
        assert client.complete(prompt) == "<answer>7</answer>"  # from the cache
        assert len(server.requests) == 1 and client.requests_made == 1 and client.cached(prompt)
        # a fresh client (a re-run of the notebook) reads the cache file and makes no request either
        again = client_for(server, tmp_path, max_tokens=64)
        other = [{"role": "user", "content": "8"}]
        assert again.complete_many([prompt, other], progress=False) == ["<answer>7</answer>", "<answer>8</answer>"]
        assert len(server.requests) == 2 and again.requests_made == 1
    cache = read_jsonl(tmp_path / "teacher_cache.jsonl")
    assert len(cache) == 2 and {"key", "model", "messages", "completion"} <= set(cache[0])
    assert "sk-test-key" not in (tmp_path / "teacher_cache.jsonl").read_text()


def test_teacher_cache_survives_a_line_cut_short(tmp_path):
    """An interrupted run leaves half a line; the next run keeps every paid-for answer and pays only for the rest."""
    first, second = [{"role": "user", "content": "7"}], [{"role": "user", "content": "8"}]
    with FakeChatServer() as server:
        client_for(server, tmp_path).complete(first)
        with (tmp_path / "teacher_cache.jsonl").open("a") as handle:
            handle.write('{"key": "abc", "compl')  # the write of a second answer, cut short
        again = client_for(server, tmp_path)
        assert again.cached(first) and not again.cached(second)
        assert again.complete(second) == "<answer>8</answer>" and again.requests_made == 1
    assert [r["completion"] for r in read_jsonl(tmp_path / "teacher_cache.jsonl")] == ["<answer>7</answer>",
                                                                                       "<answer>8</answer>"]


def test_teacher_client_raises_a_clear_error_on_http_failure(tmp_path):
    prompt = [{"role": "user", "content": "7"}]
    with FakeChatServer() as server:
        server.statuses = [401]
        client = client_for(server, tmp_path, retries=2)
        with pytest.raises(TeacherError, match=r"HTTP 401: .*status 401 from the fake server") as err:
            client.complete(prompt)
        assert len(server.requests) == 1  # 401 is not retried
        assert "sk-test-key" not in str(err.value)
        server.statuses = [500, 500]
        with pytest.raises(TeacherError, match="HTTP 500"):
            client_for(server, tmp_path, retries=1).complete(prompt)
        assert not (tmp_path / "teacher_cache.jsonl").exists()  # failures are not cached


def test_teacher_client_retries_rate_limits_and_server_errors(tmp_path):
    with FakeChatServer() as server:
        server.statuses = [429, 503]
        client = client_for(server, tmp_path, retries=2)
        assert client.complete([{"role": "user", "content": "9"}]) == "<answer>9</answer>"
        assert client.requests_made == 3


def test_teacher_client_reports_an_unreachable_endpoint(tmp_path):
    with FakeChatServer() as server:
        url = server.url
    config = TeacherConfig(base_url=url, model="m", api_key="k")  # the server is closed now
    client = TeacherClient(config, tmp_path / "cache.jsonl", retries=0, timeout=5)
    with pytest.raises(TeacherError, match="unreachable"):
        client.complete([{"role": "user", "content": "1"}])


def test_reference_completions_are_verified_r1_traces():
    rows = [{"prompt": "Zoe buys 5 cookies at 5 dollars each and pays with 50. Change?", "answer": "25",
             "solution": "Cost: 5*5=25.\nChange: 50-25=25.\nThe answer is 25."},
            {"nums": [46, 45, 78], "target": 78}]
    scored = reference_completions(rows)
    assert scored["completion"][0] == "<think>\nCost: 5*5=25.\nChange: 50-25=25.\n</think>\n<answer>25</answer>"
    assert scored["correct"].all() and scored["format_ok"].all() and scored["sample"].tolist() == [0, 0]
    assert select_verified(scored)["prompt_index"].tolist() == [0, 1]
