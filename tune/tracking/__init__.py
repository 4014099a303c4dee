"""Weights & Biases as its users use it: the mode and credentials (`mode`), the W&B Sweep a sweep registers
(`wandb_sweep`) and the artifacts it logs (`artifacts`). No Ray here: export and report use it too.
"""
