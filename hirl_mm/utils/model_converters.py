"""Backbone export from self-supervised checkpoints.

A hirl_mm / MMPretrain self-supervised checkpoint holds the whole
algorithm (``backbone.*``, ``neck.*``, ``head.*``, momentum encoders,
prototypes, ...). Downstream code needs the backbone alone:

- MMPretrain / MMDetection / MMSegmentation load ``backbone.*`` keys through
  ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``
  (``keep_prefix=True``) or the bare backbone keys (``keep_prefix=False``);
- torchvision's ``resnet*`` and timm's ``vit_*`` want their own key names.
"""
import re
from collections import OrderedDict
from typing import Dict, Union

import torch

StateDict = Dict[str, torch.Tensor]

# Keys that only a supervised classifier (or a fine-tuned one) has.
CLASSIFIER_KEYS = re.compile(r'^head\.(fc|layers\.head|fc_cls|classifier)\.')
FORMATS = ('mmpretrain', 'torchvision', 'timm')


def load_state_dict(checkpoint: Union[str, dict]) -> StateDict:
    """The state dict of a checkpoint file or of a loaded checkpoint."""
    if isinstance(checkpoint, str):
        checkpoint = torch.load(checkpoint, map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise ValueError('Not a self-supervised checkpoint: expected a dict '
                         f'(with a "state_dict"), got {type(checkpoint)}.')
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError('Not a self-supervised checkpoint: its state dict '
                         'does not map names to tensors.')
    return state


def select_backbone(state: StateDict, source: str) -> StateDict:
    """The ``backbone.*`` entries of a state dict, prefix kept.

    Shared by the backbone export and the tools that load a checkpoint's
    backbone, so that both refuse the same files with the same words.

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


def extract_backbone(checkpoint: Union[str, dict],
                     keep_prefix: bool = False) -> StateDict:
    """The ``backbone.*`` weights of a self-supervised checkpoint.

    Args:
        checkpoint (str | dict): A checkpoint path, a loaded checkpoint or a
            state dict.
        keep_prefix (bool): Keep the ``backbone.`` prefix (for
            ``init_cfg=dict(type='Pretrained', prefix='backbone.')``).
            Defaults to False (bare backbone keys).

    Raises:
        ValueError: if it is not a self-supervised checkpoint: not a dict,
            no ``backbone.*`` keys, or a classifier head.
    """
    state = load_state_dict(checkpoint)
    head = sorted(k for k in state if CLASSIFIER_KEYS.match(k))
    if head:
        raise ValueError(
            'Not a self-supervised checkpoint: it has a classifier head '
            f'({", ".join(head[:2])}); export the pre-training checkpoint '
            'instead.')
    backbone = select_backbone(state, 'Not a self-supervised checkpoint')
    if keep_prefix:
        return backbone
    return OrderedDict((k[len('backbone.'):], v) for k, v in backbone.items())


def _strip(state: StateDict) -> StateDict:
    if any(k.startswith('backbone.') for k in state):
        return OrderedDict((k[len('backbone.'):], v) for k, v in state.items()
                           if k.startswith('backbone.'))
    return OrderedDict(state)


def mmpretrain_resnet_to_torchvision(state: StateDict) -> StateDict:
    """MMPretrain ``ResNet`` (pytorch style, 7 x 7 stem) -> torchvision
    ``resnet*`` keys (without ``fc``).

    The block and downsample names are the same in both; what is checked is
    that the backbone really is that ResNet.
    """
    state = _strip(state)
    if any(k.startswith('stem.') for k in state):
        raise ValueError('A deep-stem ResNet (ResNetV1c/V1d) has no '
                         'torchvision counterpart.')
    if 'conv1.weight' not in state or not any(
            k.startswith('layer1.') for k in state):
        raise ValueError('Not a ResNet backbone: no conv1.weight / layer1.* '
                         f'keys (first keys: {list(state)[:3]}).')
    if tuple(state['conv1.weight'].shape[-2:]) != (7, 7):
        raise ValueError(
            'The stem is a '
            f'{"x".join(map(str, state["conv1.weight"].shape[-2:]))} conv '
            '(ResNet_CIFAR?); torchvision ResNets have a 7x7 stem.')
    return OrderedDict(
        (k, v) for k, v in state.items() if not k.startswith('fc.'))


def torchvision_resnet_to_mmpretrain(state: StateDict) -> StateDict:
    """torchvision ``resnet*`` -> MMPretrain ``ResNet`` keys (``fc`` is
    dropped)."""
    return OrderedDict(
        (k, v) for k, v in state.items() if not k.startswith('fc.'))


_VIT_TO_TIMM = (
    (r'^patch_embed\.projection\.', 'patch_embed.proj.'),
    (r'^layers\.(\d+)\.ln1\.', r'blocks.\1.norm1.'),
    (r'^layers\.(\d+)\.ln2\.', r'blocks.\1.norm2.'),
    (r'^layers\.(\d+)\.attn\.', r'blocks.\1.attn.'),
    (r'^layers\.(\d+)\.ffn\.layers\.0\.0\.', r'blocks.\1.mlp.fc1.'),
    (r'^layers\.(\d+)\.ffn\.layers\.1\.', r'blocks.\1.mlp.fc2.'),
    (r'^layers\.(\d+)\.gamma1\.?', r'blocks.\1.ls1.gamma'),
    (r'^layers\.(\d+)\.gamma2\.?', r'blocks.\1.ls2.gamma'),
    (r'^ln1\.', 'norm.'),
    (r'^pre_norm\.', 'norm_pre.'),
)
_TIMM_TO_VIT = (
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
    (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
    (r'^blocks\.(\d+)\.attn\.', r'layers.\1.attn.'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.', r'layers.\1.ffn.layers.0.0.'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.', r'layers.\1.ffn.layers.1.'),
    (r'^blocks\.(\d+)\.ls1\.gamma', r'layers.\1.gamma1'),
    (r'^blocks\.(\d+)\.ls2\.gamma', r'layers.\1.gamma2'),
    (r'^norm\.', 'ln1.'),
    (r'^norm_pre\.', 'pre_norm.'),
)
_SAME = ('cls_token', 'pos_embed', 'dist_token', 'reg_token')


def _rename(state: StateDict, rules, what: str) -> StateDict:
    out = OrderedDict()
    for key, value in state.items():
        if key in _SAME:
            out[key] = value
            continue
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            raise ValueError(f'{what}: no timm counterpart for key {key!r}.')
    return out


def mmpretrain_vit_to_timm(state: StateDict) -> StateDict:
    """MMPretrain ``VisionTransformer`` (also MoCo v3's ``MoCoV3ViT``) ->
    timm ``VisionTransformer`` keys (``vit_base_patch16_224`` naming,
    build the timm model with ``num_classes=0``)."""
    state = _strip(state)
    if 'patch_embed.projection.weight' not in state:
        raise ValueError('Not an MMPretrain VisionTransformer: no '
                         'patch_embed.projection.weight key.')
    return _rename(state, _VIT_TO_TIMM, 'MMPretrain ViT')


def timm_vit_to_mmpretrain(state: StateDict) -> StateDict:
    """timm ``VisionTransformer`` -> MMPretrain ``VisionTransformer`` keys
    (the classification head is dropped)."""
    state = OrderedDict((k, v) for k, v in state.items()
                        if not k.startswith(('head.', 'fc_norm.')))
    return _rename(state, _TIMM_TO_VIT, 'timm ViT')


def convert_backbone(checkpoint: Union[str, dict],
                     fmt: str = 'mmpretrain',
                     keep_prefix: bool = False) -> StateDict:
    """Extract the backbone of an SSL checkpoint in the given format.

    Args:
        checkpoint (str | dict): Checkpoint path or loaded checkpoint.
        fmt (str): 'mmpretrain' (MMPretrain / MMDetection / MMSegmentation),
            'torchvision' (ResNet) or 'timm' (ViT). Defaults to 'mmpretrain'.
        keep_prefix (bool): Keep ``backbone.`` (only for 'mmpretrain').
            Defaults to False.
    """
    if fmt not in FORMATS:
        raise ValueError(f'format must be one of {FORMATS}, got {fmt!r}.')
    if keep_prefix and fmt != 'mmpretrain':
        raise ValueError('keep_prefix only applies to the mmpretrain format.')
    state = extract_backbone(checkpoint, keep_prefix=keep_prefix)
    if fmt == 'torchvision':
        return mmpretrain_resnet_to_torchvision(state)
    if fmt == 'timm':
        return mmpretrain_vit_to_timm(state)
    return state
