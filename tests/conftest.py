"""Fixtures shared across the test suite."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data folder (see SOURCES.md there): $BEQUEST_TEST_DATA, else ../shared/data."""
    path = Path(os.environ.get("BEQUEST_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found: set BEQUEST_TEST_DATA")
    return path
