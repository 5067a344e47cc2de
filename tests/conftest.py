"""Shared test settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread, then restore the setting.

    On a busy 2-core machine one thread is faster than two for these small batches, and
    a fixed thread count fixes the floating-point reduction order that bit-exact
    comparisons (resume, reproducibility) rely on.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
