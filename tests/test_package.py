"""The package's shape: what importing it does, and every registered name."""
import subprocess
import sys

import pytest


def _run(code: str) -> str:
    return subprocess.run([sys.executable, '-c', code],
                          check=True,
                          capture_output=True,
                          text=True).stdout


def test_import_does_not_need_mmdet_or_mmseg():
    """With mmdet / mmseg unimportable, hirl_mm still imports and registers
    (MMPretrain imports mmdet itself when it can, inside a try)."""
    out = _run('import sys\n'
               'class Block:\n'
               '    def find_spec(self, name, path=None, target=None):\n'
               "        if name.split('.')[0] in ('mmdet', 'mmseg'):\n"
               '            raise ImportError(name)\n'
               'sys.meta_path.insert(0, Block())\n'
               'import hirl_mm\n'
               'from mmpretrain.registry import MODELS\n'
               "print(MODELS.get('HIRL').__name__)")
    assert out.strip() == 'HIRL'


def test_import_adds_no_mmdet_or_mmseg_module():
    """Beyond what MMPretrain's own packages import, hirl_mm imports no
    module of mmdet or mmseg."""
    code = ('import sys\n'
            'import mmpretrain.datasets, mmpretrain.engine, '
            'mmpretrain.evaluation, mmpretrain.models\n'
            "def mm(): return {m for m in sys.modules "
            "if m.split('.')[0] in ('mmdet', 'mmseg')}\n"
            'before = mm()\n'
            'import hirl_mm\n'
            'print(sorted(mm() - before))\n'
            "print('mmseg' in sys.modules)")
    added, mmseg = _run(code).split('\n')[:2]
    assert added == '[]'
    assert mmseg == 'False'


def test_transfer_registers_into_mmdet_and_mmseg():
    out = _run('import hirl_mm.transfer; '
               'from mmdet.registry import DATASETS as D, MODELS as M; '
               'from mmseg.registry import DATASETS as S; '
               "print(M.get('SimpleFeaturePyramid').__name__, "
               "D.get('PastedObjectsCocoDataset').__name__, "
               "S.get('PastedObjectsSegDataset').__name__)")
    assert out.split() == [
        'SimpleFeaturePyramid', 'PastedObjectsCocoDataset',
        'PastedObjectsSegDataset'
    ]


def test_safe_globals_installed_by_the_entry_point():
    out = _run(
        'import torch, hirl_mm; '
        'from mmengine.logging import HistoryBuffer; '
        'print(HistoryBuffer in torch.serialization.get_safe_globals())')
    assert out.strip() == 'True'


# Each registered name of the package, the smallest arguments that build it.
_REGISTERED = {
    'MODELS': {
        'HIRL':
        dict(
            base=dict(
                type='SimSiam',
                backbone=dict(type='ResNet', depth=18),
                neck=dict(
                    type='NonLinearNeck',
                    in_channels=512,
                    hid_channels=16,
                    out_channels=16,
                    num_layers=2,
                    with_avg_pool=True),
                head=dict(
                    type='LatentPredictHead',
                    loss=dict(type='CosineSimilarityLoss'),
                    predictor=dict(
                        type='NonLinearNeck',
                        in_channels=16,
                        hid_channels=8,
                        out_channels=16,
                        with_avg_pool=False))),
            neck=dict(type='HIRLNeck', in_channels=16),
            head=dict(type='SPDHead', num_neg_path=4),
            num_clusters=[6, 2]),
        'HCSC':
        dict(
            backbone=dict(type='ResNet', depth=18),
            neck=dict(
                type='MoCoV2Neck',
                in_channels=512,
                hid_channels=16,
                out_channels=8),
            head=dict(
                type='ContrastiveHead',
                loss=dict(type='CrossEntropyLoss'),
                temperature=0.2),
            queue_len=32,
            feat_dim=8,
            num_clusters=[6, 2]),
        'HIRLNeck':
        dict(in_channels=8, num_levels=2),
        'SPDHead':
        dict(num_neg_path=4),
        'PooledFeatureModel':
        dict(backbone=dict(type='ResNet', depth=18)),
        'DINONeck':
        dict(in_channels=8, hid_channels=8, bottleneck_channels=4),
        'DINOHead':
        dict(out_channels=16),
        'iBOTHead':
        dict(out_channels=16),
        'CrossScaleHead':
        dict(num_local=4, num_global=4),
        'MaskedViT':
        dict(arch='deit-tiny', img_size=32, patch_size=16),
        'PatchSwAVHead':
        dict(
            neck=dict(
                type='SwAVNeck',
                in_channels=512,
                hid_channels=8,
                out_channels=8),
            loss=dict(type='GlobalSwAVLoss', feat_dim=8, num_prototypes=4)),
        'GlobalSwAVLoss':
        dict(feat_dim=8, num_prototypes=4),
        'SPDLoss':
        dict(),
        'DINOLoss':
        dict(),
        'iBOTPatchLoss':
        dict(),
        'CrossScaleLoss':
        dict(),
    },
    'HOOKS': {
        'HierarchicalPrototypeHook': dict(),
        'FiniteLossCheckHook': dict(),
        'OnlineLinearProbeHook': dict(),
        'RNGStateHook': dict(),
        'SSPRLHook': dict(batch_size=32),
    },
    'METRICS': {
        'KNNAccuracy': dict(ks=[2]),
        'ClusteringMetric': dict(),
        'CoarseAccuracy': dict(),
    },
    'TRANSFORMS': {
        'PyramidPatches': dict(),
    },
}
# Data sets read or write data: they are built in
# tests/test_datasets/test_datasets.py and
# tests/test_models/test_algorithms/test_ssprl.py; here only their
# registration is checked.
_DATASETS = ('HierarchicalFashionMNIST', 'HierarchicalCIFAR10',
             'HierarchicalCIFAR100', 'PhotoPatches', 'KNNDataset',
             'PhotoMosaics', 'COCOMultiLabel')
# Built from a config elsewhere: DINO / iBOT need a ViT teacher and student
# (tests/test_models/test_algorithms/test_dino_ibot.py), SSPRL its pyramid
# (tests/test_models/test_algorithms/test_ssprl.py).
_BUILT_ELSEWHERE = ('DINO', 'iBOT', 'SSPRL')


def _own_names(registry):
    return sorted(name for name, cls in registry.module_dict.items()
                  if cls.__module__.startswith('hirl_mm.'))


def test_every_registered_name_is_listed_here():
    import mmpretrain.registry as reg

    import hirl_mm  # noqa: F401
    for kind in ('MODELS', 'HOOKS', 'METRICS', 'TRANSFORMS'):
        expected = set(_REGISTERED[kind])
        if kind == 'MODELS':
            expected |= set(_BUILT_ELSEWHERE)
        assert set(_own_names(getattr(reg, kind))) == expected, kind
    assert set(_own_names(reg.DATASETS)) == set(_DATASETS)
    # built with an optimizer in tests/test_configs/test_hirl_recipes.py
    assert _own_names(
        reg.PARAM_SCHEDULERS) == ['PartialCosineAnnealingParamScheduler']


@pytest.mark.parametrize('kind,name', [(k, n)
                                       for k, names in _REGISTERED.items()
                                       for n in names])
def test_registered_name_builds(kind, name):
    import mmpretrain.registry as reg
    from mmengine.registry import DefaultScope

    import hirl_mm  # noqa: F401
    cfg = dict(type=name, **_REGISTERED[kind][name])
    # Other tests may leave mmdet / mmseg as the current default scope.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        obj = getattr(reg, kind).build(cfg)
    assert type(obj).__name__ == name
