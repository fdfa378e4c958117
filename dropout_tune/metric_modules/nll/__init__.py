"""The evaluate module of the calibration metric nll (see nll.py)."""
