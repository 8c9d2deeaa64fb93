"""The methods ``metabridge compare`` knows: their labels, published references and the
per-method settings of their papers."""

from __future__ import annotations

from typing import Any

#: The methods the seed paper compares, and which of them are gradient-based meta-learning.
#: The default main job: MTL against the best GBML method of the --full run (MAML) and the
#: fastest-converging baseline (ProtoNet), for long enough that the converged column means
#: something. All six: ``methods=list(ALL_METHODS)``.
DEFAULT_METHODS = ("mtl", "maml", "protonet")
ALL_METHODS = ("mtl", "fomaml", "maml", "anil", "protonet", "metaoptnet")
GBML = ("maml", "fomaml", "anil", "metaoptnet", "metasgd", "reptile")
#: Black-box adaptation (CS330 lecture 2): selectable by name, in neither tuple above.
BLACK_BOX = ("mann", "snail", "icl")
LABELS = {
    "mtl": "MTL (Wang et al.)",
    "fomaml": "first-order MAML",
    "maml": "MAML",
    "anil": "ANIL",
    "protonet": "ProtoNet",
    "metaoptnet": "MetaOptNet-SVM",
    "metasgd": "Meta-SGD",
    "reptile": "Reptile",
    "joint": "joint training (DRS)",
    "mann": "MANN (LSTM + memory)",
    "snail": "SNAIL",
    "icl": "ICL transformer",
}
#: Published accuracies of methods, for context beside the table (other data than glyphs).
REFERENCES = {
    "snail": "SNAIL on Omniglot 5-way: 99.07% 1-shot, 99.78% 5-shot (Mishra et al. 2018)",
    "mann": (
        "MANN on Omniglot, 5 classes per episode, accuracy at the 1st/2nd/3rd/5th/10th instance of a "
        "class: 36.4/82.8/91.0/94.9/98.1% (Santoro et al. 2016, Table 1; a sequential protocol, not N-way "
        "K-shot)"
    ),
}

#: Per-method settings from the papers: MAML's Omniglot protocol (one inner step of 0.4 in
#: training, three at test; Finn et al. 2017, Sec. 5.2), the same for ANIL (Raghu et al.
#: 2020); MTL with RAdam 1e-3 (Wang et al. 2021); MetaOptNet's SVM with C = 0.1.
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "mtl": {"optimizer": "radam", "hparams": {}},
    "fomaml": {"hparams": {"inner_lr": 0.4, "inner_steps": 1, "eval_steps": 3}},
    "maml": {"hparams": {"inner_lr": 0.4, "inner_steps": 1, "eval_steps": 3}},
    "anil": {"hparams": {"inner_lr": 0.4, "inner_steps": 1, "eval_steps": 3}},
    "metasgd": {"hparams": {"inner_lr": 0.4, "inner_steps": 1}},
    "reptile": {"optimizer": "sgd", "lr": 1.0, "hparams": {"inner_lr": 0.01, "inner_steps": 5, "eval_steps": 10}},
    "protonet": {"hparams": {}},
    "metaoptnet": {"hparams": {"head": "svm", "C": 0.1}},
    "joint": {"hparams": {"finetune_lr": 0.01, "finetune_steps": 10, "finetune": "head"}},
    # black-box learners, Adam 1e-3: the CS330 LSTM (2 x 128); SNAIL's 5-way Omniglot architecture
    # (Mishra et al. 2018, appendix), its TC blocks sized for 5-way 5-shot sequences (T = 26);
    # a small set-encoder / cross-attention transformer.
    # Santoro et al. 2016: a one-layer LSTM controller (200 units) + content-addressed memory (keys of 40)
    "mann": {"hparams": {"hidden": 200, "layers": 1, "memory": True, "key_size": 40}},
    "snail": {"hparams": {"keys": [64, 256, 512], "values": [32, 128, 256], "filters": 128, "tc_length": 26}},
    "icl": {"hparams": {"dim": 128, "heads": 4, "encoder_layers": 2, "decoder_layers": 2}},
}
