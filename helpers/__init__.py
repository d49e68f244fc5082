"""The thin package the course notebooks import: one module per idea (see COURSE_DESIGN.md)."""

import warnings

# Without ipywidgets, tqdm falls back to text progress bars, which read fine in committed notebooks.
warnings.filterwarnings("ignore", message="IProgress not found")
