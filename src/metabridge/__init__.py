"""metabridge: multi-task learning and meta-learning in one PyTorch library.

One formulation covers every method here (Wang, Zhao & Li, "Bridging Multi-Task
Learning and Meta-Learning", ICML 2021, Sec. 3): shared parameters theta, per-task
parameters phi_i, and a loss on task i's data. Every algorithm implements
``meta_loss(batch)`` for training and ``adapt(batch)`` / ``adapt_support(x, y)`` for
testing (:class:`MetaAlgorithm`).

The names a user needs are importable from here::

    from metabridge import MAML, MTL, ProtoNet, EpisodeSampler, ClassDataset, evaluate
    from metabridge import MANN, SNAIL, InContextTransformer      # black-box adaptation
    from metabridge import register_algorithm, register_model, register_dataset
    from metabridge import TaskSpec, MultiTaskBenchmark, build_mtl_model, build_weighting, train_multitask
    from metabridge import MAMLTRPO, DRSTRPO, GaussianMLPPolicy, Navigation2D, RLConfig, train_rl

(``metabridge.evaluate`` is the function; its module is reached as ``from metabridge.evaluate
import ...``.) Importing metabridge changes no process-wide state (threads, allocator, loggers,
RNGs); the command line opts in to CPU tuning for its own process only.
"""

from .algorithms import (
    ANIL,
    DRS,
    FOMAML,
    MAML,
    MANN,
    MTL,
    SNAIL,
    InContextTransformer,
    JointTraining,
    MetaAlgorithm,
    MetaOptNet,
    MetaSGD,
    Predictor,
    ProtoNet,
    Reptile,
)
from .algorithms.execution import ExecutionOptions
from .algorithms.registry import ALGORITHMS, algorithm_hparams, build_algorithm, register_algorithm
from .checkpoint import CheckpointError, load_checkpoint
from .config import ExperimentConfig, load_plugins
from .data import ClassDataset, available_datasets, load_dataset
from .data.image_folder import load_image_folder
from .data.registry import register_dataset
from .distributed import DistributedContext, GradientAverager, init_from_environment
from .evaluate import episode_scores, evaluate
from .experiment import Experiment, TaskSource, build_experiment
from .export import load_pretrained, save_weights
from .models import MODELS, build_model, register_model
from .multitask import (
    MultiTaskBenchmark,
    MultiTaskData,
    MultiTaskModel,
    MultiTaskResult,
    Needs,
    TaskOutputs,
    TaskSpec,
    Weighting,
    build_mtl_model,
    build_weighting,
    load_mtl_benchmark,
    register_mtl_benchmark,
    register_mtl_model,
    register_weighting,
    train_multitask,
    weighted_backward,
)
from .registry import Registry, UnknownNameError
from .rl import (
    DRSPPO,
    DRSTRPO,
    MAMLTRPO,
    RL_ALGORITHMS,
    GaussianMLPPolicy,
    MetaEnv,
    MetaRLAlgorithm,
    Navigation2D,
    RLConfig,
    make_env,
    register_env,
    register_rl_algorithm,
    train_rl,
)
from .stats import MeanCI, mean_ci95, mean_t_interval95
from .tasks import EpisodeSampler, LinearRegressionFamily, SinusoidFamily, TaskBatch
from .train import NonFiniteLossError, Trainer, TrainResult

__version__ = "1.0.0"

__all__ = [
    "ALGORITHMS",
    "ANIL",
    "CheckpointError",
    "ClassDataset",
    "DRS",
    "EpisodeSampler",
    "ExecutionOptions",
    "Experiment",
    "ExperimentConfig",
    "FOMAML",
    "InContextTransformer",
    "JointTraining",
    "LinearRegressionFamily",
    "MAML",
    "MANN",
    "MODELS",
    "MTL",
    "MeanCI",
    "MetaAlgorithm",
    "MetaOptNet",
    "MetaSGD",
    "NonFiniteLossError",
    "Predictor",
    "ProtoNet",
    "Reptile",
    "SNAIL",
    "SinusoidFamily",
    "TaskBatch",
    "TaskSource",
    "TrainResult",
    "Trainer",
    "algorithm_hparams",
    "available_datasets",
    "build_algorithm",
    "build_experiment",
    "build_model",
    "episode_scores",
    "evaluate",
    "load_checkpoint",
    "load_dataset",
    "load_image_folder",
    "load_plugins",
    "load_pretrained",
    "mean_ci95",
    "mean_t_interval95",
    "register_algorithm",
    "register_dataset",
    "register_model",
    "save_weights",
    # data parallelism (metabridge.distributed)
    "DistributedContext",
    "GradientAverager",
    "init_from_environment",
    # the multi-task half (metabridge.multitask)
    "MultiTaskBenchmark",
    "MultiTaskData",
    "MultiTaskModel",
    "MultiTaskResult",
    "Needs",
    "TaskOutputs",
    "TaskSpec",
    "Weighting",
    "build_mtl_model",
    "build_weighting",
    "load_mtl_benchmark",
    "register_mtl_benchmark",
    "register_mtl_model",
    "register_weighting",
    "train_multitask",
    "weighted_backward",
    # one registry type behind every extensible kind (metabridge.registry); meta-RL algorithms by name
    "RL_ALGORITHMS",
    "Registry",
    "UnknownNameError",
    "register_rl_algorithm",
    # meta-reinforcement learning (metabridge.rl)
    "DRSPPO",
    "DRSTRPO",
    "MAMLTRPO",
    "GaussianMLPPolicy",
    "MetaEnv",
    "MetaRLAlgorithm",
    "Navigation2D",
    "RLConfig",
    "make_env",
    "register_env",
    "train_rl",
]
