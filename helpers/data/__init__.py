"""The course's data: one loader per task of the data table, the offline generators, and splits.

Every task has one row schema (``SCHEMAS``) that all three profiles produce, so notebooks never
branch on the profile:

=============  ===========================================================================
task           columns
=============  ===========================================================================
math           ``prompt`` (the question), ``solution`` (worked text), ``answer`` (a string:
               "42", "-3/4"), ``difficulty`` (1..3 for generated problems, the MATH level
               for MATH-500, 0 where the source does not grade)
countdown      ``nums`` (list[int]), ``target`` (int)
warmstart      ``messages`` (a user turn and an assistant turn; no system prompt, the chat
               module adds it), ``task`` ("countdown", "math" or "stratos")
instructions   ``messages``, ``constraints`` (a dict in ``helpers.rewards``' constraint key
               schema; ``{}`` for Hub rows, which carry no checkable constraints)
preferences    ``prompt`` (a list holding one user message), ``chosen`` and ``rejected``
               (lists holding one assistant message), ``constraints`` (as above)
=============  ===========================================================================

Preference rows are conversational in every profile: UltraFeedback ships them that way, and
TRL's DPOTrainer applies the chat template to conversational rows, which an instruct model needs.

Where the rows come from depends on the profile:

- ``gpu``: ``datasets.load_dataset`` on the Hub source (``HUB_SOURCES``), then one
  ``normalize_*_row`` function per source turns each row into the schema above.
- ``tiny`` and ``cpu``: seeded generators in this package (Countdown problems and an exact solver,
  search traces, math word problems, instruction prompts with checkable constraints built from the
  facts shipped in ``data/raw/instruction_topics.json``). They take well under a second, and each
  load writes what it produced to ``data/generated/<profile>/<task>.jsonl`` for learners to read.

Splits are ``train``, ``validation`` and ``test``. A source without a validation split gets a
seeded 90/10 split of its train rows (``train_validation_split``); a source without a test split
is evaluated on that held-out validation part. Offline tasks generate ``n`` rows (the profile's
size for the task) for train/validation plus ``n_eval`` distinct rows for test, and no prompt
appears twice within a task. Every loader checks its rows with ``validate_rows``, which names the
row and the field of anything missing or mistyped.

Modules, one idea each: ``schema`` (row schemas, validation), ``splits``, ``prompts`` (task wording),
``countdown``, ``math_problems``, ``instructions`` (the offline generators), ``hub`` (Hub sources and their
normalizers), ``loaders`` (``load_task`` and one ``load_<task>`` per task).
"""

from .countdown import (
    GIVE_UP_SHARE,
    GIVE_UP_TRIES,
    MAX_NUMBER,
    MAX_TARGET,
    THINK_CHAR_BUDGET,
    countdown_trace,
    make_countdown,
    solve_countdown,
)
from .hub import (
    HUB_SOURCES,
    HubSource,
    normalize_bespoke_row,
    normalize_cog_behav_row,
    normalize_countdown_row,
    normalize_gsm8k_row,
    normalize_math500_row,
    normalize_numina_row,
    normalize_openr1_row,
    normalize_smoltalk_row,
    normalize_ultrafeedback_row,
)
from .instructions import INSTRUCTION_KINDS, TOPICS_FILE, make_instruction_examples
from .loaders import load_countdown, load_instructions, load_math, load_preferences, load_task, load_warmstart
from .math_problems import make_math_problems
from .prompts import countdown_prompt, math_prompt
from .references import reference_trace
from .schema import FEATURES, SCHEMAS, SPLITS, TASKS, Message, task_of, validate_rows
from .splits import VALIDATION_FRACTION, train_validation_split

__all__ = [
    "TASKS",
    "SPLITS",
    "VALIDATION_FRACTION",
    "MAX_NUMBER",
    "MAX_TARGET",
    "THINK_CHAR_BUDGET",
    "GIVE_UP_SHARE",
    "GIVE_UP_TRIES",
    "TOPICS_FILE",
    "Message",
    "SCHEMAS",
    "FEATURES",
    "validate_rows",
    "task_of",
    "train_validation_split",
    "countdown_prompt",
    "math_prompt",
    "solve_countdown",
    "make_countdown",
    "countdown_trace",
    "make_math_problems",
    "INSTRUCTION_KINDS",
    "make_instruction_examples",
    "normalize_gsm8k_row",
    "normalize_numina_row",
    "normalize_openr1_row",
    "normalize_math500_row",
    "normalize_countdown_row",
    "normalize_cog_behav_row",
    "normalize_bespoke_row",
    "normalize_smoltalk_row",
    "normalize_ultrafeedback_row",
    "HubSource",
    "HUB_SOURCES",
    "load_math",
    "load_countdown",
    "load_warmstart",
    "load_instructions",
    "load_preferences",
    "load_task",
    "reference_trace",
]
