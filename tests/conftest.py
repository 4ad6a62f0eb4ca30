"""Test-wide settings. `make test` runs two pytest workers on two cores: one torch thread each, or the
workers oversubscribe the cores and small models run 20-50x slower."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402  (after the thread setting, which torch reads at import)

torch.set_num_threads(1)
