"""PERSONA Bench: modes, judge, metrics, ablations, human agreement."""
