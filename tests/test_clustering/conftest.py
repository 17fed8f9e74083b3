import pytest
import torch
from kmeans_helpers import one_thread as _one_thread

from hirl_mm.clustering.nearest import faiss_available


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    _one_thread()
    yield
    torch.set_num_threads(threads)
    if faiss_available():
        import faiss
        faiss.omp_set_num_threads(threads)
