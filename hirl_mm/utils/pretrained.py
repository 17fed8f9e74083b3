"""Point a detection / segmentation config at a pre-trained checkpoint."""
from typing import List, Union

from mmengine.config import Config


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
    paths = []

    def walk(node, path):
        if not isinstance(node, dict):
            return
        init = node.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained' \
                and init.get('prefix') == 'backbone.':
            paths.append(f'{path}.init_cfg')
        for key, value in node.items():
            if key != 'init_cfg':
                walk(value, f'{path}.{key}')

    walk(cfg.get('model'), 'model')
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
