import pandas as pd

from helpers.tables import text_table


def test_text_table_shows_the_tags_in_html_and_text():
    frame = pd.DataFrame({"completion": ["<think>\n2+2=4\n</think>\n<answer>4</answer>"], "gold": ["4"]})
    table = text_table(frame, font_size="85%")
    html = table._repr_html_()
    assert "&lt;think&gt;" in html and "&lt;answer&gt;4&lt;/answer&gt;" in html
    assert "<think>" not in html  # the browser would swallow it
    assert "white-space: pre-wrap" in html and "font-size: 85%" in html
    text = repr(table)
    assert "<think>" in text and "Styler" not in text
    assert text == frame.to_string()
