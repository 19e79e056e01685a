"""ptpm-tf: PTPM watch-time prediction in TensorFlow/Keras.

TensorFlow Recommenders needs Keras 2, so ``TF_USE_LEGACY_KERAS=1`` is set here, before
anything imports TensorFlow; ``tf.keras`` then resolves to ``tf_keras``.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
