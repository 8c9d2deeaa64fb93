"""An algorithm's hyperparameters (``ExperimentConfig.hparams``, ``--hp KEY=VALUE``), checked by a generated model.

:func:`hparams_model` builds a pydantic model from the algorithm's constructor signature
(types from its annotations, defaults from its defaults), so built-in and user-registered
algorithms get the same checks; :func:`validate_hparams` checks a mapping against it and
returns the values parsed to their types. Both are re-exported by :mod:`metabridge.config`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from ._validation_messages import plain_message

__all__ = ["hparams_model", "validate_hparams"]


def hparams_model(algorithm: str) -> type[BaseModel]:
    """A pydantic model of ``algorithm``'s settable constructor arguments.

    Generated from the constructor's signature (types from its annotations, defaults
    from its defaults) by :func:`metabridge.algorithms.registry.algorithm_hparams`, so
    built-in and user-registered algorithms are checked alike and nothing is kept by hand.
    """
    import typing

    from .algorithms.registry import ALGORITHMS, algorithm_hparams

    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm {algorithm!r}; choose one of {', '.join(sorted(ALGORITHMS))} "
            "(or register your own with metabridge.register_algorithm and --plugin MODULE)."
        )
    cls = ALGORITHMS[algorithm]
    params = algorithm_hparams(algorithm)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable annotations in a user's class: accept any value
        hints = {}
    fields: dict[str, Any] = {}
    for name, p in params.items():
        ann = hints.get(name, Any)
        default = ... if p.default is p.empty else p.default
        fields[name] = (ann, default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, allow_inf_nan=False)
    return create_model(f"{cls.__name__}HParams", __config__=config, **fields)


def validate_hparams(algorithm: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """Check ``hparams`` against ``algorithm``'s constructor; return them parsed to their types.

    Unknown names, values of the wrong type and non-finite floats (NaN, +-inf) are errors
    listing the valid keys; a value given as text (``--hp inner_lr=0.5`` read from a file as
    ``"0.5"``) comes back as the constructor's type (``0.5``). Value ranges (a positive step
    size, ...) are checked by the constructor itself.
    """
    model = hparams_model(algorithm)
    try:
        parsed = model.model_validate(hparams)
    except ValidationError as exc:
        valid = ", ".join(
            f"{k} ({_type_name(f.annotation)}, default {f.default!r})" for k, f in model.model_fields.items()
        )
        problems = []
        for err in exc.errors():
            key = ".".join(str(x) for x in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"{algorithm} has no hyperparameter {key!r}")
            else:
                problems.append(f"--hp {key}: {plain_message(err)} (got {err.get('input')!r})")
        raise ValueError(f"{'; '.join(problems)}. Valid --hp keys of {algorithm}: {valid or '(none)'}.") from None
    return {key: getattr(parsed, key) for key in hparams}


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "")
