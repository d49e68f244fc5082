"""Write ``constraints-colab.txt``: the tested versions of ``constraints.txt`` without the packages Colab brings.

Colab's runtime has its own CUDA build of torch and its own Jupyter/IPython stack, which the notebook server
itself runs on: pinning them to this machine's versions would replace a working CUDA torch with a CPU wheel and
restart the kernel into a changed server. Everything else keeps the exact version the course was tested with.

    python scripts/colab_constraints.py      # after regenerating constraints.txt; a test checks they agree
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# torch and the CUDA/compiler wheels that come with it; the Jupyter, IPython and kernel-messaging stack
LEFT_TO_COLAB = re.compile(r"^(torch|triton|nvidia-.*|jupyter.*|ipykernel|ipython.*|ipywidgets|notebook.*|nbclient|"
                           r"nbconvert|nbformat|tornado|traitlets|pyzmq|comm|debugpy|matplotlib-inline)$", re.IGNORECASE)
HEADER = """\
# constraints.txt without torch and the Jupyter stack, which Colab brings (its CUDA torch stays):
#   pip install -c constraints-colab.txt -e .
# Written by scripts/colab_constraints.py from constraints.txt; do not edit by hand.
"""


def colab_constraints(constraints: str) -> str:
    """The pins of ``constraints`` (a constraints file's text) that Colab should take, under a header."""
    pins = [line for line in constraints.splitlines()
            if line.strip() and not line.startswith("#") and not LEFT_TO_COLAB.match(line.split("==")[0].strip())]
    return HEADER + "\n".join(pins) + "\n"


if __name__ == "__main__":
    out = ROOT / "constraints-colab.txt"
    out.write_text(colab_constraints((ROOT / "constraints.txt").read_text()))
    print(f"wrote {out.relative_to(ROOT)}")
