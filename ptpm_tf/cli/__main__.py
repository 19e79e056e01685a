"""``python -m ptpm_tf.cli``: the same as ``ptpm-tf``."""
import sys

from ptpm_tf.cli import main

sys.exit(main())
