"""Checks that a backbone really loads the checkpoint it is given.

mmengine loads checkpoints with ``strict=False``: a checkpoint without
``backbone.*`` keys, or one of another architecture, leaves the backbone as
initialised and the run goes on, the only trace a warning listing keys. The
tools check every load into a backbone (``tools/test.py CKPT``,
``load_from``, ``init_cfg=dict(type='Pretrained', prefix='backbone.')`` as
``tools/train.py --pretrained`` sets it) before any compute: the share of
the backbone's weights (parameters and buffers, by element count) that the
checkpoint fills with the same key and shape, after the backbone's own load
hooks (a ViT resizes its position embedding).
"""
import re
from typing import Dict, List, Optional

import torch
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import CheckpointLoader
from torch import nn

from .backbone_state import StateDict, loaded_share, select_backbone
from .pretrained import is_backbone_init

# A right checkpoint fills (nearly) every weight; what a downstream backbone
# adds on purpose stays far under 10% (DCN offsets: 3.6% of a ResNet-50). One
# of another depth or block fills about half (ResNet-18 in a ResNet-34: 52%,
# ResNet-50 in a ResNet-101: 55%, ResNet-50 in a ResNet-18: 56%), one of
# another family or without `backbone.*` keys nothing.
MIN_LOADED = 0.9
# the config key that lowers it, for a partial load on purpose
MIN_LOADED_KEY = 'backbone_min_loaded'
# random-init baselines on purpose, in tools/train.py and tools/test.py
RANDOM_INIT_FLAG = '--random-init'


def _backbone_state(checkpoint: str, strip_wrapper: bool) -> StateDict:
    """The ``backbone.*`` weights of ``checkpoint``, prefix stripped.

    ``strip_wrapper``: drop a DataParallel / DDP wrapper's ``module.``
    first, as the Runner's ``load_from`` does (``Pretrained`` does not).
    """
    loaded = CheckpointLoader.load_checkpoint(checkpoint, 'cpu')
    if not isinstance(loaded, dict):
        raise ValueError(f'Checkpoint {checkpoint}: expected a dict (with a '
                         f'"state_dict"), got {type(loaded).__name__}.')
    state = loaded.get('state_dict', loaded)
    if strip_wrapper:
        state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    state = select_backbone(state, f'Checkpoint {checkpoint}')
    return {
        k[len('backbone.'):]: v
        for k, v in state.items() if isinstance(v, torch.Tensor)
    }


def _names(keys: List[str], limit: int = 3) -> str:
    more = f', ... ({len(keys)} in all)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def check_backbone_load(module: nn.Module,
                        state: StateDict,
                        name: str,
                        checkpoint: str,
                        min_loaded: float = MIN_LOADED) -> float:
    """Log the share of ``module``'s weights ``state`` fills; raise below
    ``min_loaded``.

    Args:
        module (nn.Module): The backbone.
        state (dict): The checkpoint's backbone weights, keys relative to
            ``module``.
        name (str): The module's name in the model, for the messages.
        checkpoint (str): The checkpoint, for the messages.
        min_loaded (float): The least share of weight elements a
            pre-trained backbone loads. Defaults to :data:`MIN_LOADED`.

    Returns:
        float: The share.

    Raises:
        ValueError: below ``min_loaded``, naming the share and the first
            missing, mismatched and unused keys.
    """
    load = loaded_share(module, state)
    summary = (f'model.{name} ({type(module).__name__}) <- {checkpoint}: '
               f'{load.share:.1%} of its {load.numel / 1e6:.2f}M weight '
               'elements load')
    details = '; '.join(f'{kind}: {_names(keys)}'
                        for kind, keys in (('missing', load.missing),
                                           ('other shape', load.mismatched),
                                           ('only in the checkpoint',
                                            load.unused)) if keys)
    if load.share >= min_loaded:
        print_log(
            summary + (f' ({details})' if details else ''), logger='current')
        return load.share
    raise ValueError(
        f'{summary}, under the {min_loaded:.0%} a pre-trained backbone '
        f'needs: the rest would stay randomly initialised. {details}. Is it '
        'a checkpoint of this architecture? For a randomly initialised '
        f'backbone on purpose, pass {RANDOM_INIT_FLAG}; for a partial load '
        f'on purpose, --cfg-options {MIN_LOADED_KEY}=0.')


def check_load_from(model: nn.Module,
                    checkpoint: str,
                    min_loaded: float = MIN_LOADED) -> Optional[float]:
    """Check the backbone of ``model`` against a whole-model checkpoint, as
    the Runner's ``load_from`` (``tools/test.py CKPT``) loads it.

    Args:
        model (nn.Module): The built model, maybe wrapped; a model without
            a ``backbone`` is not checked.
        checkpoint (str): The checkpoint, as ``load_from`` takes it.
        min_loaded (float): See :func:`check_backbone_load`.

    Returns:
        float, optional: The share of the backbone it fills; None without
        a backbone.

    Raises:
        ValueError: if the checkpoint has no ``backbone.*`` keys or fills
            less than ``min_loaded`` of the backbone.
    """
    backbone = getattr(
        model.module if is_model_wrapper(model) else model, 'backbone', None)
    if backbone is None:
        return None
    return check_backbone_load(backbone,
                               _backbone_state(checkpoint, strip_wrapper=True),
                               'backbone', checkpoint, min_loaded)


def check_pretrained_inits(model: nn.Module,
                           min_loaded: float = MIN_LOADED) -> Dict[str, float]:
    """Check every ``init_cfg=dict(type='Pretrained', prefix='backbone.')``
    of ``model``'s modules against its checkpoint, before ``init_weights``
    loads it.

    Args:
        model (nn.Module): The built model, maybe wrapped.
        min_loaded (float): See :func:`check_backbone_load`.

    Returns:
        dict: The share each such module loads, by module name.

    Raises:
        ValueError: if such an ``init_cfg`` names no checkpoint, or its
            checkpoint has no ``backbone.*`` keys or fills less than
            ``min_loaded`` of the module.
    """
    model = model.module if is_model_wrapper(model) else model
    shares = {}
    for name, module in model.named_modules():
        init_cfgs = getattr(module, 'init_cfg', None)
        if not isinstance(init_cfgs, list):
            init_cfgs = [init_cfgs]
        for init_cfg in filter(is_backbone_init, init_cfgs):
            checkpoint = init_cfg.get('checkpoint')
            if not checkpoint:
                raise ValueError(
                    f"model.{name}.init_cfg loads a pre-trained backbone "
                    f'but names no checkpoint ({checkpoint!r}): pass '
                    '--pretrained CKPT (a checkpoint with backbone.* keys), '
                    f'or {RANDOM_INIT_FLAG} for a randomly initialised '
                    'backbone on purpose.')
            shares[name] = check_backbone_load(
                module, _backbone_state(checkpoint, strip_wrapper=False), name,
                checkpoint, min_loaded)
    return shares
