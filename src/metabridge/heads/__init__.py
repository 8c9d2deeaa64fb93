"""Batched task heads: closed-form or convex-optimisation base learners on frozen features.

Every head works on a whole meta-batch at once, with no Python loop over tasks:
support features ``[T, S, D]``, support labels ``[T, S]`` (int64 in ``0..n_way-1``),
query features ``[T, Q, D]`` -> query logits ``[T, Q, n_way]``.

- :func:`prototype_logits` - ProtoNet (Snell et al. 2017), differentiable.
- :func:`r2d2_logits`, :func:`ridge_fit` - R2D2 ridge regression (Bertinetto et al. 2019),
  differentiable, Woodbury form when S < D.
- :func:`metaoptnet_svm_logits`, :func:`svm_cs_dual` - MetaOptNet-SVM (Lee et al. 2019),
  Crammer-Singer SVM dual by a batched interior-point method, differentiable through the
  KKT conditions.
- :func:`logistic_logits`, :func:`logistic_fit` - multinomial L2 logistic regression
  (scikit-learn's objective) by batched Newton; MTL's test-time head (Wang et al. 2021:
  ``C=3, normalize=True``). Not differentiable.
"""

from .logistic import logistic_fit, logistic_logits
from .prototypes import class_prototypes, prototype_logits
from .ridge import r2d2_logits, ridge_fit, ridge_predict
from .svm import metaoptnet_svm_logits, svm_cs_dual, svm_cs_fit

__all__ = [
    "class_prototypes",
    "prototype_logits",
    "ridge_fit",
    "ridge_predict",
    "r2d2_logits",
    "svm_cs_dual",
    "svm_cs_fit",
    "metaoptnet_svm_logits",
    "logistic_fit",
    "logistic_logits",
]
