"""Data and checks shared by the k-means tests."""
import numpy as np
import torch

from hirl_mm.clustering.nearest import faiss_available


def one_thread():
    """Tiny problems: intra-op threads only add waits (on a busy machine,
    seconds)."""
    torch.set_num_threads(1)
    if faiss_available():
        import faiss
        faiss.omp_set_num_threads(1)


def blobs(n=3000, dim=16, k=30, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.randn(k, dim)
    x = centres[rng.randint(0, k, n)] + 0.3 * rng.randn(n, dim)
    return x.astype(np.float32)


def assert_same_clustering(a, b, atol=1e-5):
    np.testing.assert_array_equal(a.assignments, b.assignments)
    for pa, pb in zip(a.parents, b.parents):
        np.testing.assert_array_equal(pa, pb)
    for ca, cb in zip(a.centroids, b.centroids):
        np.testing.assert_allclose(ca, cb, atol=atol)
    np.testing.assert_allclose(a.distances[0], b.distances[0], atol=atol)
