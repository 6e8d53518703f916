"""``python -m llmopt.cli``: the same as the ``llmopt`` command."""

import sys

from llmopt.cli import main

sys.exit(main())
