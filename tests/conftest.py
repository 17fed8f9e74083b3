import os

import pytest


@pytest.fixture(autouse=True, scope='session')
def _data_cache(tmp_path_factory):
    """Embedded data sets are written under a per-session folder."""
    os.environ.setdefault('HIRL_MM_DATA',
                          str(tmp_path_factory.mktemp('hirl_mm_data')))
