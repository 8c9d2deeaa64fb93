"""First-order MAML (Finn et al. 2017, Sec. 5.2): MAML with the second-order terms
dropped, i.e. the meta-gradient is grad_phi L(phi_i^(k); D_i^ts) evaluated at the
adapted parameters and applied to theta (d phi / d theta taken as the identity)."""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import nn

from ..models.batched_conv4 import ConvBackend
from .maml import MAML, LearnedLR, MetaBatching


class FOMAML(MAML):
    """:class:`MAML` with ``first_order=True``."""

    name: ClassVar[str] = "fomaml"

    def __init__(self, model: nn.Module, inner_lr: float = 0.01, inner_steps: int = 1,
                 learn_inner_lr: LearnedLR = None, eval_steps: int | None = None,
                 task_batching: MetaBatching = "auto", conv_backend: ConvBackend = "grouped",
                 channels_last: bool = False, task_chunk: int | Literal["auto"] | None = "auto",
                 task_threads: int | Literal["auto"] = "auto") -> None:
        super().__init__(model, inner_lr, inner_steps, True, learn_inner_lr, eval_steps, task_batching,
                         conv_backend, channels_last, task_chunk=task_chunk, task_threads=task_threads)
