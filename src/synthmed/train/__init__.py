"""Classifier training with validation-only model selection."""
