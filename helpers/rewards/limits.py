"""Bounds on what a reward reads: every one is there so that no string a model writes can stall a training step.
"""

from __future__ import annotations

MAX_ANSWER_CHARS = 1_000  # an extracted answer longer than this is cut to its last 1,000 characters
MAX_BOXED_SCAN = 2_000  # characters scanned to balance the braces of one \boxed{...}
MAX_BOXED_TRIES = 20  # \boxed occurrences tried, from the last one backwards
MAX_PHRASE_TRIES = 100  # "The answer is" / "Answer:" phrases tried, from the last one backwards
MAX_NUMBER_DIGITS = 100  # longer digit runs are not treated as numbers
MAX_MV_CHARS = 120  # longest answer handed to math-verify
MAX_MV_DEPTH = 4  # deepest bracket nesting handed to math-verify (its LaTeX parser slows sharply past this)
MV_TIME_LIMIT = 0.5  # seconds math-verify may spend on one comparison (main thread)
MAX_EQUATION_CHARS = 256  # Countdown equations: length, tokens, nesting depth, literal size, magnitude
MAX_EQUATION_TOKENS = 128
MAX_EQUATION_DEPTH = 20
MAX_LITERAL_DIGITS = 9
MAX_MAGNITUDE = 10**30
MAX_REPETITION_WORDS = 50_000  # words looked at by the repetition penalty
MAX_STEP_LINES = 5_000  # lines looked at by the reasoning-steps reward
MAX_JSON_CHARS = 100_000
