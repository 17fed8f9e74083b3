"""The nearest centroid of every point of a chunk."""
import contextlib
from typing import Tuple

import torch

PRECISIONS = ('fp32', 'tf32', 'bf16')


def faiss_available() -> bool:
    """Whether ``faiss`` can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _tf32(enabled: bool):
    matmul = torch.backends.cuda.matmul
    if not enabled:
        yield
        return
    old = matmul.fp32_precision
    matmul.fp32_precision = 'tf32'
    try:
        yield
    finally:
        matmul.fp32_precision = old


class NearestCentroid:
    """Squared distance and index of the nearest centroid of a chunk.

    A GEMM in ``precision`` ('tf32' and 'bf16' on CUDA only), the distance
    then recomputed exactly to the chosen centroid; faiss' exhaustive L2
    search only when ``use_faiss`` asks for it (CPU, float32), for
    comparison: ``benchmarks/kmeans_speed.py`` prints the rates of both.

    Args:
        centroids (torch.Tensor): The centroids, (K, D), float32.
        precision (str): 'fp32', 'tf32' or 'bf16'. Defaults to 'fp32'.
        use_faiss (bool): Search with ``faiss.IndexFlatL2``. Defaults to
            False.
    """

    def __init__(self,
                 centroids: torch.Tensor,
                 precision: str = 'fp32',
                 use_faiss: bool = False):
        self.centroids = centroids
        self.precision = precision
        self.index = None
        if use_faiss:
            import faiss
            self.index = faiss.IndexFlatL2(centroids.shape[1])
            self.index.add(centroids.numpy())
            return
        self.sq_norms = centroids.square().sum(1)
        if precision == 'bf16':
            self.low = centroids.bfloat16()

    def __call__(self,
                 chunk: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.index is not None:
            dist, labels = self.index.search(chunk.numpy(), 1)
            return torch.from_numpy(dist[:, 0]), torch.from_numpy(labels[:, 0])
        if self.precision == 'bf16':
            dots = torch.mm(
                chunk.bfloat16(), self.low.t(), out_dtype=torch.float32)
            scores = self.sq_norms - 2 * dots  # chunk x K
        else:
            with _tf32(self.precision == 'tf32'):
                scores = torch.addmm(
                    self.sq_norms, chunk, self.centroids.t(), alpha=-2)
        labels = scores.argmin(1)
        dist = (chunk - self.centroids[labels]).square_().sum(1)
        return dist, labels
