"""rsae — sparse autoencoders with trainable rational activations (RSAE, Yin & Yu, arXiv 2606.14990).

One SAE module (SAELens parameter names) with pluggable families — ReLU, JumpReLU, TopK, BatchTopK and the
rational (safe-Padé) activation — one trainer for all of them on CPU or GPU, streaming metrics, SAELens-format files,
synthetic ground truth, the paper's two-stage upgrade, and language-model harvesting and downstream metrics.

Example
-------
>>> import torch
>>> from rsae import SAE, SAEConfig
>>> sae = SAE.from_config(SAEConfig(d_in=8, d_sae=32, family="topk", k=2), seed=0)
>>> int((sae.encode(torch.randn(4, 8)) != 0).sum(-1).max())
2
"""

from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.data import ActivationStore, TensorSource
from rsae.core.io import load_sae, save_sae
from rsae.core.metrics import MetricAccumulator, evaluate_sae
from rsae.core.rational import RationalActivation, rational_activation, safe_pade
from rsae.core.sae import SAE, Losses, SAEOutput
from rsae.core.trainer import Trainer, TrainResult
from rsae.errors import ConfigError, DataError, ModelLoadError, RSAEError, SAEFileError, TrainingError
from rsae.experiments.synthetic import SyntheticConfig, SyntheticSource, feature_recovery, mmcs
from rsae.experiments.upgrade import upgrade

__all__ = [
    "SAEConfig", "TrainConfig", "ActivationStore", "TensorSource", "ConfigError", "DataError", "ModelLoadError",
    "RSAEError", "SAEFileError", "TrainingError", "load_sae", "save_sae", "MetricAccumulator", "evaluate_sae",
    "RationalActivation", "rational_activation", "safe_pade", "SAE", "Losses", "SAEOutput", "SyntheticConfig",
    "SyntheticSource", "feature_recovery", "mmcs", "Trainer", "TrainResult", "upgrade",
]
