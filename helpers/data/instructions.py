"""Instruction prompts with checkable constraints (``helpers.rewards.instructions``), built from the facts in
``data/raw/instruction_topics.json``."""

from __future__ import annotations

import json
import random
import re

from helpers.config import REPO_ROOT

from .schema import validate_rows

TOPICS_FILE = REPO_ROOT / "data" / "raw" / "instruction_topics.json"  # shipped with the course


def _load_topics() -> list[dict]:
    with open(TOPICS_FILE, encoding="utf-8") as f:
        topics = json.load(f)["topics"]
    validate_rows(topics, {"topic": str, "category": str, "facts": list[str]}, source=str(TOPICS_FILE))
    for index, topic in enumerate(topics):
        if len(topic["facts"]) < 4:  # bullets, JSON values and rejected answers need four distinct facts
            raise ValueError(f"{TOPICS_FILE} row {index}: field 'facts' needs at least 4 facts, has {len(topic['facts'])}")
    return topics


def _words(text: str) -> int:
    return len(text.split())


def _quoted_list(words: list[str]) -> str:
    quoted = [f'"{w}"' for w in words]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _fit_words(facts: list[str], limit: int) -> str:
    """As many whole facts (in order) as fit in ``limit`` words."""
    kept: list[str] = []
    for fact in facts:
        if _words(" ".join(kept + [fact])) > limit:
            break
        kept.append(fact)
    return " ".join(kept)


def _bullets(facts: list[str]) -> str:
    return "\n".join(f"- {fact}" for fact in facts)


def _instruction_example(topic: dict, kind: str, rng: random.Random) -> dict:
    """One prompt with its constraints, a reference answer that satisfies them and a rejected
    answer that breaks at least one. ``kind`` names the constraint(s)."""
    name, facts = topic["topic"], rng.sample(topic["facts"], len(topic["facts"]))
    everything = " ".join(facts)
    if kind == "max_words":
        limit = rng.randint(_words(facts[0]), min(_words(facts[0]) + 12, _words(everything) - 1))
        prompt = rng.choice(("Describe {t} in at most {k} words.", "In no more than {k} words, tell me about {t}.",
                             "Write a short note about {t}. Use {k} words or fewer."))
        return {"prompt": prompt.format(t=name, k=limit), "constraints": {"max_words": limit},
                "chosen": _fit_words(facts, limit), "rejected": everything}
    if kind == "min_words":
        limit = rng.randint(_words(facts[0]) + 2, _words(everything))
        prompt = rng.choice(("Write at least {k} words about {t}.", "Tell me about {t} in {k} words or more."))
        return {"prompt": prompt.format(t=name, k=limit), "constraints": {"min_words": limit},
                "chosen": everything, "rejected": facts[0]}
    if kind == "num_bullets":
        count = rng.randint(2, 4)
        prompt = rng.choice(("List exactly {k} facts about {t} as bullet points.", "Give me {k} bullet points about {t}."))
        wrong = rng.choice([count - 1, count + 1] if count < len(facts) else [count - 1])
        return {"prompt": prompt.format(t=name, k=count), "constraints": {"num_bullets": count},
                "chosen": _bullets(facts[:count]), "rejected": _bullets(facts[:wrong])}
    if kind == "lowercase":
        prompt = rng.choice(("Explain {t} in two sentences, using only lowercase letters.",
                             "Tell me two facts about {t}. Write everything in lowercase."))
        two = " ".join(facts[:2])
        return {"prompt": prompt.format(t=name), "constraints": {"lowercase": True}, "chosen": two.lower(), "rejected": two}
    if kind == "json_keys":
        values = {"topic": name, "category": topic["category"], "fact": facts[0], "detail": facts[1]}
        picked = set(rng.sample(list(values), rng.choice((2, 3))))
        keys = [k for k in values if k in picked]
        prompt = f"Reply with a JSON object about {name} that has the keys {_quoted_list(keys)}."
        rejected = (json.dumps({k: values[k] for k in keys[:-1]}) if rng.random() < 0.5
                    else "; ".join(f"{k}: {values[k]}" for k in keys))
        return {"prompt": prompt, "constraints": {"json_keys": keys},
                "chosen": json.dumps({k: values[k] for k in keys}), "rejected": rejected}
    if kind == "must_include":
        word, with_word, without_word = _word_to_include(facts, rng)
        prompt = rng.choice(('Write one or two sentences about {t} that use the word "{w}".',
                             'Tell me something about {t}, and include the word "{w}".'))
        return {"prompt": prompt.format(t=name, w=word), "constraints": {"must_include": [word]},
                "chosen": with_word, "rejected": without_word}
    if kind in ("lowercase+max_words", "num_bullets+lowercase"):
        single = kind.replace("lowercase", "").strip("+")  # the constraint lowercase is added to
        base = _instruction_example(topic, single, rng)
        value = base["constraints"][single]
        prompt = (f"Describe {name} in at most {value} words, using only lowercase letters." if single == "max_words"
                  else f"List exactly {value} facts about {name} as bullet points, all in lowercase.")
        rejected = base["chosen"] if rng.random() < 0.5 else base["rejected"].lower()
        return {"prompt": prompt, "constraints": {single: value, "lowercase": True},
                "chosen": base["chosen"].lower(), "rejected": rejected}
    if kind == "must_include+max_words":
        word, with_word, without_word = _word_to_include(facts, rng)
        limit = _words(with_word) + rng.randint(0, 8)
        prompt = f'In at most {limit} words, tell me about {name} and use the word "{word}".'
        return {"prompt": prompt, "constraints": {"max_words": limit, "must_include": [word]},
                "chosen": with_word, "rejected": without_word if rng.random() < 0.5 else with_word + " " + everything}
    raise ValueError(f"unknown instruction kind {kind!r}; known: {INSTRUCTION_KINDS}")


def _word_to_include(facts: list[str], rng: random.Random) -> tuple[str, str, str]:
    """A lowercase word of one fact that some other fact lacks, that fact, and the facts without the word."""
    for fact in facts:
        candidates = sorted({w for w in re.findall(r"\b[a-z]{5,}\b", fact)})
        rng.shuffle(candidates)
        for word in candidates:
            others = [f for f in facts if word not in f.lower()]  # the checker matches substrings
            if others:
                return word, fact, " ".join(others)
    raise ValueError(f"no word to require in facts {facts!r}")


INSTRUCTION_KINDS = ("max_words", "min_words", "num_bullets", "lowercase", "json_keys", "must_include",
                     "lowercase+max_words", "num_bullets+lowercase", "must_include+max_words")


def make_instruction_examples(n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct instruction prompts with checkable constraints, each as
    ``{"prompt", "constraints", "chosen", "rejected"}``: ``chosen`` satisfies every constraint,
    ``rejected`` breaks at least one. Topics and facts come from ``data/raw/instruction_topics.json``."""
    topics = _load_topics()
    rng = random.Random(seed)
    examples: list[dict] = []
    seen: set[str] = set()
    attempts = 0
    while len(examples) < n:
        if attempts == 50 * n + 100:  # the prompt space holds thousands; this bound only stops a bad data file
            raise ValueError(f"only {len(examples)} distinct instruction prompts could be made from {TOPICS_FILE}, {n} asked")
        attempts += 1
        example = _instruction_example(rng.choice(topics), rng.choice(INSTRUCTION_KINDS), rng)
        if example["prompt"] not in seen:
            seen.add(example["prompt"])
            examples.append(example)
    return examples
