"""The thin package the course notebooks import: one module per idea (see COURSE_DESIGN.md).

Notebooks import it first, so these filters apply before any library loads.
"""

import warnings

# Without ipywidgets, tqdm falls back to text progress bars, which read fine in committed notebooks.
warnings.filterwarnings("ignore", message="IProgress not found")
# Emitted inside transformers when PEFT wraps a model: library-internal, nothing a learner can change.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
