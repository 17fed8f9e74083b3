"""Point a config at a pre-trained checkpoint, or at none."""
from typing import List, Union

from mmengine.config import Config


def is_backbone_init(init_cfg) -> bool:
    """Whether an ``init_cfg`` loads a checkpoint's ``backbone.*`` weights,
    i.e. is ``dict(type='Pretrained', prefix='backbone.', ...)``."""
    return isinstance(init_cfg, dict) and \
        init_cfg.get('type') == 'Pretrained' and \
        init_cfg.get('prefix') == 'backbone.'


def _backbone_init_paths(cfg: Config) -> List[str]:
    paths = []

    def walk(node, path):
        if not isinstance(node, dict):
            return
        if is_backbone_init(node.get('init_cfg')):
            paths.append(f'{path}.init_cfg')
        for key, value in node.items():
            if key != 'init_cfg':
                walk(value, f'{path}.{key}')

    walk(cfg.get('model'), 'model')
    return paths


def pretrained_init_paths(cfg: Union[str, Config]) -> List[str]:
    """Config paths of every ``init_cfg`` that loads ``backbone.*`` weights.

    The backbone's, and in a C4 detector also the shared res5 head's (it is
    the backbone's ``layer4``), e.g. ``['model.backbone.init_cfg',
    'model.roi_head.shared_head.init_cfg']``.

    Raises:
        ValueError: if the config loads no pre-trained backbone.
    """
    if isinstance(cfg, str):
        cfg = Config.fromfile(cfg)
    paths = _backbone_init_paths(cfg)
    if not paths:
        raise ValueError(
            "The config has no init_cfg=dict(type='Pretrained', prefix="
            "'backbone.') to load a pre-trained checkpoint into.")
    return paths


def pretrained_cfg_options(cfg: Union[str, Config],
                           checkpoint: str) -> List[str]:
    """``--cfg-options`` items that load ``checkpoint`` into the config."""
    return [
        f'{path}.checkpoint={checkpoint}'
        for path in pretrained_init_paths(cfg)
    ]


def drop_pretrained_inits(cfg: Config) -> List[str]:
    """Set every ``init_cfg`` that loads ``backbone.*`` weights to None: the
    backbone keeps its own random initialisation, a baseline on purpose.

    Args:
        cfg (Config): The config, changed in place.

    Returns:
        List[str]: The config paths set to None, maybe none.
    """
    paths = _backbone_init_paths(cfg)
    cfg.merge_from_dict(dict.fromkeys(paths))
    return paths
