"""Scoring: vector index, lexical index, fusion maths, pair signals, calibration, metrics."""
