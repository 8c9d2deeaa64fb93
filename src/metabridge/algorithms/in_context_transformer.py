"""A transformer in-context learner: the support set is encoded as a set, queries attend to it.

Black-box adaptation ``y_ts = f_theta(D^tr, x_ts)`` (CS330 lecture 2) with a transformer
(Vaswani et al. 2017; attention ``softmax(Q K^T / sqrt(d_k)) V``, their Eq. 1), as in
in-context learning of function classes (Garg et al., NeurIPS 2022), but with the support
read as a set (Lee et al.'s Set Transformer, ICML 2019) instead of a prompt sequence:

* support tokens ``z_j = W_x embed(x_j) + W_c code(y_j)``; an encoder of pre-norm
  self-attention + feed-forward layers over the support tokens, with no positional
  encoding, so the encoded set is permutation-equivariant, and what a query reads from it
  invariant to the support order;
* query tokens ``W_x embed(x_q)`` (the all-zero code: no label); a decoder of pre-norm
  cross-attention + feed-forward layers in which each query attends to the encoded
  support tokens only (no self-attention, no attention among queries), then a linear map
  to the output. A query's prediction depends on the support and itself, never on another
  query.

Classification reads the support once per class ("one against the rest"): the code of
support example j in the view of class k is ``(1[y_j = k], 1)``, and the decoder's output
in view k is the logit of class k. Every view runs the same network, so relabelling the
classes by a permutation permutes the logits the same way, exactly, for any weights: the
learner is equivariant to the labelling, as an N-way task requires (the labels of a task
are arbitrary names), which a one-hot code with a fixed output layer is not. The backbone
embeds each image once; only the small transformer runs N times. Regression reads the
support once with the code ``(y_j, 1)`` and outputs d_y values.

Any support size works (test-time K free). N is fixed when the learner is built (the
contract: the predictor outputs ``out_dim`` logits); another N is refused.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from .black_box import BlackBoxLearner
from .registry import register_algorithm


class _FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class SetEncoderLayer(nn.Module):
    """``z + SelfAttn(LN(z))``, then ``+ FF(LN(z))``, over a set of tokens ``[B, S, dim]``."""

    def __init__(self, dim: int, heads: int, ff_hidden: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.ff = _FeedForward(dim, ff_hidden)

    def forward(self, z: Tensor) -> Tensor:
        h = self.norm1(z)
        z = z + self.attn(h, h, h, need_weights=False)[0]
        return z + self.ff(self.norm2(z))


class CrossAttentionLayer(nn.Module):
    """``u + CrossAttn(LN(u), memory)``, then ``+ FF(LN(u))``: each query token attends to
    the memory only."""

    def __init__(self, dim: int, heads: int, ff_hidden: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.ff = _FeedForward(dim, ff_hidden)

    def forward(self, u: Tensor, memory: Tensor) -> Tensor:
        u = u + self.attn(self.norm1(u), memory, memory, need_weights=False)[0]
        return u + self.ff(self.norm2(u))


@register_algorithm()
class InContextTransformer(BlackBoxLearner):
    """Set-encoder / cross-attention in-context learner (module docstring).

    Args:
        body: embedding network ``[B, *x] -> [B, D]``.
        feature_dim: D.
        task: ``"classification"`` or ``"regression"`` (supplied by ``build``).
        out_dim: N (classification) or d_y (regression).
        dim: token width.
        heads: attention heads (must divide ``dim``).
        encoder_layers: self-attention layers over the support set.
        decoder_layers: cross-attention layers of the queries.
        ff_mult: feed-forward hidden width as a multiple of ``dim``.
        seed: seed of the module's generator (relabelling, with ``permute_labels``).
        permute_labels: relabel the classes of every training episode at random (the
            episode sampler already does; the learner is equivariant to it anyway).
    """

    name: ClassVar[str] = "icl"
    reads_in_order: ClassVar[bool] = False

    def __init__(
        self,
        body: nn.Module,
        feature_dim: int,
        task: str,
        out_dim: int,
        dim: int = 128,
        heads: int = 4,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        ff_mult: int = 2,
        seed: int = 0,
        permute_labels: bool = False,
    ) -> None:
        super().__init__(body, feature_dim, task, out_dim, seed=seed, permute_labels=permute_labels)
        if dim < 1 or heads < 1 or dim % heads:
            raise ValueError(f"InContextTransformer needs heads dividing dim (got dim={dim}, heads={heads}).")
        if encoder_layers < 0 or decoder_layers < 1 or ff_mult < 1:
            raise ValueError(
                f"InContextTransformer needs encoder_layers >= 0, decoder_layers >= 1 and ff_mult >= 1 "
                f"(got {encoder_layers}, {decoder_layers}, {ff_mult})."
            )
        self.dim, self.heads = int(dim), int(heads)
        code = 2 if self.is_classification else self.out_dim + 1
        self.embed_x = nn.Linear(self.feature_dim, self.dim)
        self.embed_code = nn.Linear(code, self.dim, bias=False)
        self.encoder = nn.ModuleList(
            SetEncoderLayer(self.dim, self.heads, ff_mult * self.dim) for _ in range(encoder_layers)
        )
        self.memory_norm = nn.LayerNorm(self.dim)
        self.decoder = nn.ModuleList(
            CrossAttentionLayer(self.dim, self.heads, ff_mult * self.dim) for _ in range(decoder_layers)
        )
        self.out_norm = nn.LayerNorm(self.dim)
        self.head = nn.Linear(self.dim, 1 if self.is_classification else self.out_dim)

    def support_codes(self, labels: Tensor, dtype: torch.dtype) -> Tensor:
        """``[T, V, S, c]``: one view per class (``(1[y = k], 1)``) or one regression view (``(y, 1)``)."""
        if self.is_classification:
            classes = torch.arange(self.out_dim, device=labels.device)
            member = (labels[:, None, :] == classes[None, :, None]).to(dtype)  # [T, N, S]
            return torch.stack([member, torch.ones_like(member)], dim=-1)
        y = labels.to(dtype)
        return torch.cat([y, y.new_ones(*y.shape[:-1], 1)], dim=-1)[:, None]

    def read_support(self, feats: Tensor, labels: Tensor) -> Tensor:
        """The encoded support set of every view, ``[T, V, S, dim]`` (V = N or 1)."""
        t, s = feats.shape[:2]
        tokens = self.embed_x(feats)[:, None] + self.embed_code(self.support_codes(labels, feats.dtype))
        views = tokens.shape[1]
        z = tokens.reshape(t * views, s, self.dim)
        for layer in self.encoder:
            z = layer(z)
        return self.memory_norm(z).view(t, views, s, self.dim)

    def read_queries(self, state: Tensor, feats: Tensor) -> Tensor:
        """Each query cross-attends to each view's support: ``[T, Q, D] -> [T, Q, out_dim]``."""
        t, views, s = state.shape[:3]
        q = feats.shape[1]
        u = self.embed_x(feats)[:, None].expand(t, views, q, self.dim).reshape(t * views, q, self.dim)
        memory = state.reshape(t * views, s, self.dim)
        for layer in self.decoder:
            u = layer(u, memory)
        out = self.head(self.out_norm(u)).view(t, views, q, -1)
        if self.is_classification:
            return out[..., 0].transpose(1, 2)  # [T, Q, N]: view k gives the logit of class k
        return out[:, 0]
