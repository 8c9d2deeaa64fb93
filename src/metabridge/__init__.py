"""metabridge: multi-task learning and meta-learning in one PyTorch library.

One formulation covers every method here (Wang, Zhao & Li, "Bridging Multi-Task
Learning and Meta-Learning", ICML 2021, Sec. 3): shared parameters theta, per-task
parameters phi_i, and a loss on task i's data. See ``metabridge.algorithms``.
"""

__version__ = "0.1.0"
