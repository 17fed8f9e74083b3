"""mmengine's validation loop on the pooled backbone features."""
import torch
from mmengine.runner import ValLoop
from mmengine.runner.amp import autocast
from mmpretrain.registry import LOOPS
from mmpretrain.utils import get_ori_model

from hirl_mm.utils import pooled_embedding
from ..hooks.rng_state_hook import random_states_kept


@LOOPS.register_module()
class FeatureValLoop(ValLoop):
    """mmengine's validation loop for a self-supervised model: every sample
    gets the model's pooled, L2-normalised backbone feature, which feature
    metrics (:class:`KNNAccuracy`, :class:`ClusteringMetric`) evaluate.

    The kNN monitor of a pre-training run (``val_cfg=dict(type=
    'FeatureValLoop')`` with a :class:`KNNDataset`, ``KNNAccuracy`` and
    ``train_cfg.val_interval``). mmengine's :class:`ValLoop` calls the
    model's ``val_step`` (a ``predict`` forward), which MMPretrain's
    self-supervised algorithms do not have; this loop embeds each batch as
    :class:`PooledFeatureModel` does (``extract_feat``'s last output,
    pooled, L2-normalised: the ``feat`` of the kNN benchmark) and keeps the
    rest of :class:`ValLoop` (hooks, distributed evaluation, logging).

    It leaves the training as it was: the model runs in eval mode (no BN
    statistics updated) and gets its training mode back after, and the
    process's random generators (which the loader's iterator and workers
    draw from) are restored after the validation, so a run at a fixed seed
    trains bit for bit the same with and without it.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The held-out set, e.g. a
            :class:`KNNDataset` of a bank and queries.
        evaluator (Evaluator | dict | list): Feature metrics.
        fp16 (bool): Embed under autocast. Defaults to False.
    """

    def run(self) -> dict:
        model = self.runner.model
        training = model.training
        if not callable(getattr(get_ori_model(model), 'extract_feat', None)):
            raise TypeError(
                'FeatureValLoop needs a model with `extract_feat`; '
                f'{type(get_ori_model(model)).__name__} has none.')
        try:
            with random_states_kept():
                return super().run()
        finally:
            model.train(training)

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: dict) -> None:
        self.runner.call_hook(
            'before_val_iter', batch_idx=idx, data_batch=data_batch)
        model = get_ori_model(self.runner.model)
        data = model.data_preprocessor(data_batch, False)
        with autocast(enabled=self.fp16):
            feats = model.extract_feat(data['inputs'])[-1]
        feats = pooled_embedding(feats)  # B x C
        outputs = data['data_samples']
        for data_sample, feat in zip(outputs, feats):
            data_sample.set_field(feat, 'feat', field_type='data')
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(
            'after_val_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=outputs)
