from .epoch_based_loop import ResumableEpochBasedTrainLoop
from .feature_val_loop import FeatureValLoop

__all__ = ['FeatureValLoop', 'ResumableEpochBasedTrainLoop']
