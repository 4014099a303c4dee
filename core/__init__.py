"""Pure-PyTorch engine of polyp-kd-tune: config, data, models, losses, metrics, training and evaluation.

Nothing in this package imports Ray; `tune/` wraps it.
"""
