"""What trains a helper model to judge synthetic data: the reference classifier behind class fidelity and the
confidence filter (``reference``), and the feature extractors behind FID / KID / precision-recall (``features``).

It sits above ``train`` (it trains classifiers) and below ``experiment``; ``metrics`` stays plain functions
over arrays.
"""
