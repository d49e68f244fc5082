"""Tables of model text (completions side by side) that show the text as it is.

A pandas ``Styler`` puts cell values into HTML unescaped, so the browser reads ``<think>`` and ``<answer>`` as
tags and drops them: the table hides the very format the course teaches. And its text form, the one a
terminal or a text diff of the notebook shows, is ``<pandas.io.formats.style.Styler at 0x...>``.
``text_table`` escapes the HTML, keeps line breaks, and gives the same table as plain text.
"""

from __future__ import annotations

import pandas as pd

_TEXT_STYLE = {"white-space": "pre-wrap", "text-align": "left"}


class TextTable:
    """A DataFrame of text shown with its tags: escaped HTML in a notebook, ``DataFrame.to_string`` as text."""

    def __init__(self, frame: pd.DataFrame, **css: str):
        self.frame = frame
        self.css = {**_TEXT_STYLE, **{key.replace("_", "-"): value for key, value in css.items()}}

    def _repr_html_(self) -> str:
        return self.frame.style.format(escape="html").set_properties(**self.css).to_html()

    def __repr__(self) -> str:
        return self.frame.to_string()


def text_table(frame: pd.DataFrame, **css: str) -> TextTable:
    """``frame`` for display: tags such as ``<think>`` visible, line breaks kept; ``css`` adds cell styles
    (``font_size="85%"`` becomes ``font-size: 85%``)."""
    return TextTable(frame, **css)
