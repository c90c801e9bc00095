"""What judges synthetic data: the reference classifier behind class fidelity and the confidence filter
(``reference``), the feature extractors behind FID / KID / precision-recall (``features``), the audit of one
synthetic set (``synthetic.audit_set``, a ``SyntheticAudit``) and FID over a generator's epochs (``fid_tracking``).

It sits above ``train`` (it trains classifiers) and ``augment`` (it samples generators), below ``experiment``;
``metrics`` stays plain functions over arrays.
"""
