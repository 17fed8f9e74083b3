"""What a state dict holds of a backbone: its ``backbone.*`` entries
(:func:`select_backbone`) and the share of a module's weights it fills
(:func:`loaded_share`).

Shared by the backbone export and import (:mod:`.model_converters`) and the
tools' checks of every load into a backbone (:mod:`.backbone_loading`), so
that both refuse the same files with the same words.
"""
from collections import OrderedDict
from typing import Dict, List, NamedTuple

import torch
from torch import nn

StateDict = Dict[str, torch.Tensor]


def select_backbone(state: StateDict, source: str) -> StateDict:
    """The ``backbone.*`` entries of a state dict, prefix kept.

    Args:
        state (dict): A state dict.
        source (str): What the error names first, e.g. the checkpoint.

    Raises:
        ValueError: if there are none, as in an exported backbone (bare
            keys).
    """
    backbone = OrderedDict(
        (k, v) for k, v in state.items() if k.startswith('backbone.'))
    if not backbone:
        raise ValueError(
            f'{source}: no "backbone.*" keys (first keys: {list(state)[:3]}'
            '); is it already an exported backbone?')
    return backbone


def _shape(tensor: torch.Tensor) -> str:
    return 'x'.join(map(str, tensor.shape)) or 'scalar'


class BackboneLoad(NamedTuple):
    """What a state dict fills of a module (:func:`loaded_share`)."""
    share: float  #: of the module's weight elements, in [0, 1]
    numel: int  #: the module's weight elements
    missing: List[str]
    mismatched: List[str]  #: 'key (checkpoint AxB, model CxD)'
    unused: List[str]  #: the state dict's keys the module has not


def loaded_share(module: nn.Module, state: StateDict) -> BackboneLoad:
    """What ``state`` fills of ``module``'s weights.

    As :func:`mmengine.runner.load_state_dict` fills them: a weight loads if
    ``state`` has its key with its shape, after the module's load hooks
    adapted ``state`` (run on a copy of the dict, not of the tensors).
    BatchNorm's ``num_batches_tracked`` is not counted, as mmengine does not.

    Args:
        module (nn.Module): The module the state dict is for.
        state (dict): Its keys relative to ``module``.

    Returns:
        BackboneLoad: The share of the weight elements that load, and the
        keys that do not.
    """
    state = OrderedDict(state)
    for name, sub in module.named_modules():
        # torch calls these with the state dict, the module's prefix,
        # metadata, strict, and the missing / unexpected / error lists
        for hook in sub._load_state_dict_pre_hooks.values():
            hook(state, f'{name}.' if name else '', {}, False, [], [], [])
    own = {
        k: v
        for k, v in module.state_dict().items()
        if not k.endswith('num_batches_tracked')
    }
    missing = [k for k in own if k not in state]
    mismatched = [
        k for k in own if k in state and state[k].shape != own[k].shape
    ]
    numel = sum(v.numel() for v in own.values())
    unloaded = sum(own[k].numel() for k in missing + mismatched)
    return BackboneLoad(
        share=1 - unloaded / numel if numel else 1.,
        numel=numel,
        missing=missing,
        mismatched=[
            f'{k} (checkpoint {_shape(state[k])}, model {_shape(own[k])})'
            for k in mismatched
        ],
        unused=[
            k for k in state
            if k not in own and not k.endswith('num_batches_tracked')
        ])
