"""The evaluate module of the calibration metric adaptive_ece (see adaptive_ece.py)."""
