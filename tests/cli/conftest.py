from __future__ import annotations

import pytest

from tests.attest.helpers import Keys


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys.make()
