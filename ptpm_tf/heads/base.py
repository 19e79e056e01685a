"""What every head provides, in the spirit of ``tfrs.tasks``: a head owns its outputs, its
loss and its decoding, so every model is the shared tower plus a head, trained by the one
``train_step`` in :mod:`ptpm_tf.model`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Collection, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf.settings import NoSettings


class Head(tf.keras.layers.Layer):
    """Base class of the output heads: every hook the rest of the package calls on a head
    is declared here, with the default of a plain point-prediction head.

    Life cycle: ``adapt`` fits the head's constants on the training split (stored as
    non-trainable weights so that checkpoints and SavedModels carry them); ``calibrate``
    fits post-hoc constants on the validation split once training is done; ``targets``
    turns rows into the per-row training targets; ``call`` maps the tower's hidden vector
    to raw outputs; ``compute_loss`` returns the total loss and its named parts;
    ``decode`` turns raw outputs into predictions (``watch_time`` at least, in seconds).
    Evaluation (``evaluation_outputs``, ``per_row``, ``diagnostic_inputs``,
    ``evaluation_metrics``), export (``model_info``) and restoring (``after_restore``) have
    hooks too, so no code outside the heads asks which head it holds.

    A head is built from its family's settings, ``Config`` (a frozen dataclass of
    :func:`ptpm_tf.settings.setting` fields: the defaults live there), and the run's seed.
    """

    #: the head family's settings (a frozen dataclass; ``ptpm_tf.settings``)
    Config: type = NoSettings
    #: names of the loss parts ``compute_loss`` returns (logged by ``model.fit``)
    loss_names: Tuple[str, ...] = ("loss",)
    #: names of the extra serving outputs ``decode`` returns besides ``watch_time``
    output_names: Tuple[str, ...] = ()
    #: outputs ``decode(..., distribution=True)`` adds (the ``distribution`` signature)
    distribution_output_names: Tuple[str, ...] = ()
    #: decoders the head can serve as ``watch_time`` (its ``decode`` setting); () if fixed
    decoders: Tuple[str, ...] = ()
    #: the one of ``decoders`` this head serves (None when it has no choice)
    decoder: Optional[str] = None
    #: whether the head has a predictive distribution (``quantile``, ``completion``)
    distributional: bool = False
    #: settings chosen on the validation split: ``{name: (values...)}``
    #: (:func:`ptpm_tf.selection.train_selected`)
    selection_grid: Mapping[str, Tuple[Any, ...]] = {}

    def __init__(self, config=None, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.config = self.Config() if config is None else config
        if type(self.config) is not self.Config:
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got "
                            f"{type(self.config).__name__}")
        self.seed = seed

    @classmethod
    def settings_for(cls, config, dataset: str, numeric: Sequence[str],
                     explicit: Collection[str]) -> Tuple[Any, Optional[str]]:
        """(the settings to build with on ``dataset``, whose numeric features are
        ``numeric``; a one-line notice or None). ``explicit``: the settings the user gave;
        one the data cannot serve is an error, a default is adjusted with a notice."""
        return config, None

    def adapt(self, train: pd.DataFrame) -> None:
        raise NotImplementedError

    def targets(self, frame: pd.DataFrame, seed: int = 0) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def calibrate(self, model: tf.keras.Model, validation: pd.DataFrame) -> Dict[str, float]:
        """After training: fit the head's post-hoc constants on the validation split (never
        the test split); returns what it measured there. Most heads have none."""
        return {}

    def after_restore(self) -> None:
        """Called once a checkpoint's weights are restored (to repair old checkpoints)."""

    def compute_loss(self, outputs: Dict[str, tf.Tensor], targets: Dict[str, tf.Tensor],
                     step: tf.Tensor, training: bool = False) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """(total loss, named parts) of one batch.

        The total and the parts are means over the rows this call sees (or values that
        are the same on every replica, such as a batch reward). When a global batch is
        split over several replicas the model turns them into global-batch means
        (:mod:`ptpm_tf.distribute`); any *other* batch statistic a loss needs (a
        normaliser, a standard deviation, pairs of samples) must be taken over the global
        batch with ``distribute.global_sum`` / ``global_mean`` / ``global_std`` /
        ``global_batch``, and be stop-gradient.
        """
        raise NotImplementedError

    def point_prediction(self, outputs: Dict[str, tf.Tensor],
                         features: Dict[str, tf.Tensor]) -> tf.Tensor:
        """[B] the served ``watch_time`` alone, for the running metrics of every training
        step; heads whose ``decode`` returns more override it to skip that work."""
        return self.decode(outputs, features)["watch_time"]

    def decode(self, outputs: Dict[str, tf.Tensor], features: Dict[str, tf.Tensor],
               distribution: bool = False) -> Dict[str, tf.Tensor]:
        """Predictions from raw outputs: ``watch_time`` and ``output_names``, plus
        ``distribution_output_names`` with ``distribution``. ``features`` are the raw
        inputs (for heads whose decoding depends on them, e.g. on the item's duration)."""
        raise NotImplementedError

    # -- predictive distribution (heads with ``distributional``) ---------------------------
    def quantile(self, outputs, levels, global_tree: bool = False, features=None) -> tf.Tensor:
        """[B, Q] quantiles in seconds at ``levels``."""
        raise ValueError(f"{type(self).__name__} has no predictive distribution")

    def completion(self, outputs, features, recalibrated: bool = True) -> tf.Tensor:
        """[B] the probability of a complete play, ``P(watch time >= duration)``."""
        raise ValueError(f"{type(self).__name__} has no predictive distribution")

    # -- evaluation -----------------------------------------------------------------------
    def evaluation_outputs(self, outputs, features) -> Dict[str, tf.Tensor]:
        """What evaluation decodes: :meth:`decode` with the distribution, by default."""
        return self.decode(outputs, features, distribution=True)

    def per_row(self, pred: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """The per-row values evaluation keeps from a batch of predictions (raw outputs and
        :meth:`evaluation_outputs`): the 1-D ``watch_time*`` ones by default."""
        return {k: v for k, v in pred.items() if k.startswith("watch_time") and np.ndim(v) == 1}

    def diagnostic_inputs(self, pred: Mapping[str, np.ndarray],
                          labels: pd.DataFrame) -> Optional[Dict[str, np.ndarray]]:
        """Per-row inputs of the head's diagnostics from predictions and the same rows'
        labels (evaluation may pass a subsample); None when the head has none."""
        return None

    def evaluation_metrics(self, pred: Mapping[str, np.ndarray], y: np.ndarray,
                           users: np.ndarray,
                           diagnostics: Optional[Mapping[str, np.ndarray]] = None
                           ) -> Dict[str, Any]:
        """Head-specific metrics from :meth:`per_row` values (every row), the labels, the
        users and the concatenated :meth:`diagnostic_inputs`. None by default."""
        return {}

    # -- export ---------------------------------------------------------------------------
    def model_info(self) -> Dict[str, Any]:
        """What an export's ``model_info.json`` says about this head beyond its outputs."""
        return {}

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.config),
                "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        settings = config.pop("config", {})
        return cls(cls.Config(**settings), **config)


def set_output_bias(dense: tf.keras.layers.Dense, values) -> None:
    """Start an output layer's bias at ``values`` (e.g. the training prior's logits), so a
    head's first prediction is the marginal one. Works before the layer is built (the
    usual case: ``adapt`` runs before the first call) and after."""
    values = np.asarray(values, np.float32).reshape(-1)
    if dense.built:
        dense.bias.assign(values)
    else:
        dense.bias_initializer = tf.keras.initializers.Constant(values)


def prior_logit(p) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to [1e-4, 1 - 1e-4]."""
    p = np.clip(np.asarray(p, np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))

