"""Calibration of the resource formulas against Yosys synthesis.

``configs`` lists the configurations (every component the backend emits, over a spread of
parameters) and the held-out split; ``fit`` fits the formulas' constants and measures the error;
``measured.json`` (the synthesized cells, written by ``bench/calibrate.py synth``) and
``constants.json`` (the fitted constants, read by :mod:`hwseg.estimate.resources`) are data.
"""
