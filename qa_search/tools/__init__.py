"""Operator tools around an index: importers, dedupe, evaluation, fine-tuning and distributed embedding."""
