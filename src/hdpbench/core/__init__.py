"""Base layer: errors, argument checks, the project's paths, safe file writes, torch set-up, and the
structure and trajectory types every other layer exchanges. Imports nothing else of hdpbench."""
