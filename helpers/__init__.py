"""The thin package the course notebooks import: one module per idea (the map is ``helpers/README.md``)."""
