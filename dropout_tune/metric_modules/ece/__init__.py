"""The evaluate module of the calibration metric ece (see ece.py)."""
