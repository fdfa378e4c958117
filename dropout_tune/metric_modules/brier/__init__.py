"""The evaluate module of the calibration metric brier (see brier.py)."""
