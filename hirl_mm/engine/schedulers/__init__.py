from .partial_cosine_annealing import PartialCosineAnnealingParamScheduler

__all__ = ['PartialCosineAnnealingParamScheduler']
