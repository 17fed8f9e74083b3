"""Backbone export from self-supervised checkpoints.

A hirl_mm / MMPretrain self-supervised checkpoint holds the whole
algorithm (``backbone.*``, ``neck.*``, ``head.*``, momentum encoders,
prototypes, ...). Downstream code needs the backbone alone:

- MMPretrain / MMDetection / MMSegmentation load ``backbone.*`` keys through
  ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``
  (``keep_prefix=True``) or the bare backbone keys (``keep_prefix=False``);
- torchvision's ``resnet*`` and timm's ``vit_*`` want their own key names;
- detectron2 wants its ResNet names in a pickle of numpy arrays.

The references' released backbones come the other way
(:func:`import_pretrained`): each keeps a torchvision ResNet or a
timm-layout ViT (DINO's ``vision_transformer.py``) under its own container
key and prefix, and becomes an MMPretrain ``ResNet`` / ``VisionTransformer``
checkpoint with ``backbone.*`` keys.
"""
import argparse
import re
from collections import Counter, OrderedDict
from typing import List, NamedTuple, Optional, Tuple, Union

import torch

from .backbone_state import StateDict, loaded_share, select_backbone

# Keys that only a supervised classifier (or a fine-tuned one) has.
CLASSIFIER_KEYS = re.compile(r'^head\.(fc|layers\.head|fc_cls|classifier)\.')
FORMATS = ('mmpretrain', 'torchvision', 'timm', 'detectron2')


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
            raise ValueError(f'{what}: no counterpart for key {key!r}.')
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
            'torchvision' (ResNet), 'timm' (ViT) or 'detectron2' (ResNet;
            wrap it with :func:`detectron2_checkpoint`). Defaults to
            'mmpretrain'.
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
    if fmt == 'detectron2':
        return mmpretrain_resnet_to_detectron2(state)
    return state


# detectron2's ResNet: the stem's conv and norm under ``stem.conv1``, stage i
# as ``res{i+1}``, each norm under its conv, the projection as ``shortcut``
_RESNET_TO_DETECTRON2 = (
    (r'^conv1\.', 'stem.conv1.'),
    (r'^bn1\.', 'stem.conv1.norm.'),
    (r'^layer(\d)\.(\d+)\.conv(\d)\.',
     lambda m: f'res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.'),
    (r'^layer(\d)\.(\d+)\.bn(\d)\.',
     lambda m: f'res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.'),
    (r'^layer(\d)\.(\d+)\.downsample\.0\.',
     lambda m: f'res{int(m[1]) + 1}.{m[2]}.shortcut.'),
    (r'^layer(\d)\.(\d+)\.downsample\.1\.',
     lambda m: f'res{int(m[1]) + 1}.{m[2]}.shortcut.norm.'),
)


def mmpretrain_resnet_to_detectron2(state: StateDict) -> StateDict:
    """MMPretrain ``ResNet`` (pytorch style, 7 x 7 stem) -> detectron2
    ``ResNet`` keys (``stem.conv1``, ``res2.0.conv1.norm``, ``shortcut``).

    BatchNorm's ``num_batches_tracked`` is left out (detectron2's own
    ImageNet weights have none). Build the detectron2 model with
    ``MODEL.RESNETS.STRIDE_IN_1X1 False`` (the stride is in the 3 x 3 conv,
    as in torchvision), ``INPUT.FORMAT RGB`` and the ImageNet mean / std in
    RGB order.
    """
    state = mmpretrain_resnet_to_torchvision(state)
    state = OrderedDict((k, v) for k, v in state.items()
                        if not k.endswith('num_batches_tracked'))
    return _rename(state, _RESNET_TO_DETECTRON2, 'MMPretrain ResNet')


_DETECTRON2_TO_RESNET = (
    (r'^stem\.conv1\.norm\.', 'bn1.'),
    (r'^stem\.conv1\.', 'conv1.'),
    (r'^res(\d)\.(\d+)\.conv(\d)\.norm\.',
     lambda m: f'layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}.'),
    (r'^res(\d)\.(\d+)\.conv(\d)\.',
     lambda m: f'layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}.'),
    (r'^res(\d)\.(\d+)\.shortcut\.norm\.',
     lambda m: f'layer{int(m[1]) - 1}.{m[2]}.downsample.1.'),
    (r'^res(\d)\.(\d+)\.shortcut\.',
     lambda m: f'layer{int(m[1]) - 1}.{m[2]}.downsample.0.'),
)


def detectron2_resnet_to_mmpretrain(state: StateDict) -> StateDict:
    """detectron2 ``ResNet`` keys (as :func:`mmpretrain_resnet_to_detectron2`
    writes them) -> MMPretrain ``ResNet`` keys; numpy arrays become
    tensors."""
    state = OrderedDict((k, torch.as_tensor(v)) for k, v in state.items())
    return _rename(state, _DETECTRON2_TO_RESNET, 'detectron2 ResNet')


def detectron2_checkpoint(state: StateDict) -> dict:
    """What detectron2's ``DetectionCheckpointer`` reads from a ``.pkl``:
    numpy arrays under ``model``, matched by name heuristics."""
    return {
        'model': {
            k: v.detach().cpu().numpy()
            for k, v in state.items()
        },
        '__author__': 'hirl_mm',
        'matching_heuristics': True,
    }


# ---------------------------------------------------------------------------
# Published checkpoints of the references -> MMPretrain backbones


class Layout(NamedTuple):
    """Where a reference keeps its backbone in its checkpoint files."""
    containers: Tuple[Optional[str], ...]  #: keys tried; None: the dict
    prefixes: Tuple[str, ...]  #: backbone prefixes tried, after ``module.``
    arch: Optional[str]  #: 'resnet', 'vit' or None (either)
    source: str  #: what writes it, for the messages


LAYOUTS = OrderedDict([
    # hirl-team/HIRL: {'model': ...}; the baselines' backbone is
    # `backbone.` (MoCo v2 / MoCo v3's encoder_q, SimSiam / SwAV's encoder,
    # DINO / iBOT's teacher, BEiT's ViT), HIRL's `model.backbone.`
    ('hirl-resnet',
     Layout(('model', ), ('model.backbone.', 'backbone.'), 'resnet',
            'hirl-team/HIRL (MoCo v2, SimSiam, SwAV and their HIRL)')),
    ('hirl-vit',
     Layout(('model', ), ('model.backbone.', 'backbone.'), 'vit',
            'hirl-team/HIRL (MoCo v3, DINO, iBOT and their HIRL)')),
    # gyfastas/HCSC (and MoCo v1 / v2): DDP `module.encoder_q.`
    ('hcsc',
     Layout(('state_dict', ), ('encoder_q.', ), 'resnet', 'gyfastas/HCSC')),
    # WesleyHsieh0806/SS-PRL and facebookresearch/swav: DDP `module.` of a
    # ResNet with the projection heads and prototypes beside the backbone
    ('ssprl',
     Layout(('state_dict', None), ('', ), 'resnet', 'WesleyHsieh0806/SS-PRL')),
    ('swav',
     Layout(('state_dict', None), ('', ), 'resnet', 'facebookresearch/swav')),
    # facebookresearch/dino, bytedance/ibot: a full checkpoint's
    # `teacher` (`backbone.`, `head.`), or the backbone alone, bare or
    # under `state_dict`
    ('dino',
     Layout(('teacher', 'state_dict', None), ('backbone.', ''), None,
            'facebookresearch/dino')),
    ('ibot',
     Layout(('teacher', 'state_dict', None), ('backbone.', ''), 'vit',
            'bytedance/ibot')),
])
IMPORT_FORMATS = tuple(LAYOUTS)

# What the references keep beside the backbone's own weights.
_RESNET_KEYS = re.compile(r'^(conv1|bn1|layer[1-4])\.')
_VIT_EXTRA = re.compile(r'^(head\.|masked_embed$)')  # MoCo v3 MLP, iBOT mask
_VIT_UNSUPPORTED = re.compile(r'(^rel_pos_bias\.|\.gamma_[12]$|^fc_norm\.)')
# The standard widths and their head counts (DeiT / ViT / DINO naming);
# a state dict does not tell the number of heads.
VIT_ARCHS = OrderedDict([(192, ('tiny', 3)), (384, ('small', 6)),
                         (768, ('base', 12)), (1024, ('large', 16))])
RESNET_DEPTHS = {
    (False, (2, 2, 2, 2)): 18,
    (False, (3, 4, 6, 3)): 34,
    (True, (3, 4, 6, 3)): 50,
    (True, (3, 4, 23, 3)): 101,
    (True, (3, 8, 36, 3)): 152,
}


class ImportedBackbone(NamedTuple):
    """A reference's backbone as an MMPretrain backbone
    (:func:`import_pretrained`)."""
    state: StateDict  #: MMPretrain keys, without ``backbone.``
    backbone: dict  #: the MMPretrain backbone config it loads into
    arch: str  #: e.g. 'resnet50', 'vit-base-p16'
    fmt: str  #: the layout it was read as
    dropped: List[str]  #: key groups left out (heads, prototypes, ...)


def load_reference_checkpoint(path: str, trust_pickle: bool = False) -> dict:
    """Read a reference's checkpoint file.

    With ``weights_only=True`` (tensors, containers and an
    ``argparse.Namespace`` of arguments) unless ``trust_pickle``.

    Raises:
        ValueError: if the file holds other Python objects and
            ``trust_pickle`` is False.
    """
    if trust_pickle:
        return torch.load(path, map_location='cpu', weights_only=False)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: B902  (pickle raises many kinds)
        raise ValueError(
            f'{path}: holds Python objects beyond tensors and plain '
            f'containers ({type(e).__name__}: {str(e).splitlines()[0]}); '
            'for a file from a source you trust, load it with '
            'trust_pickle=True (--trust-pickle).') from e


def _is_state(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(v, torch.Tensor) for v in obj.values())


def _container(ckpt: dict, layout: Layout, fmt: str) -> StateDict:
    for key in layout.containers:
        state = ckpt if key is None else ckpt.get(key)
        if _is_state(state):
            return OrderedDict(
                (re.sub(r'^module\.', '', k), v) for k, v in state.items())
    wanted = ' or '.join(
        repr(k) if k else 'a bare state dict' for k in layout.containers)
    raise ValueError(
        f'Not a {fmt} checkpoint ({layout.source}): expected {wanted} '
        f'mapping names to tensors; top-level keys: {list(ckpt)[:5]}.')


def _arch_of(state: StateDict) -> Optional[str]:
    if 'conv1.weight' in state and any(k.startswith('layer1.') for k in state):
        return 'resnet'
    if 'patch_embed.proj.weight' in state and any(
            k.startswith('blocks.') for k in state):
        return 'vit'
    return None


def _backbones_in(state: StateDict) -> List[Tuple[str, str]]:
    """Every (prefix, 'resnet' / 'vit') whose keys make a backbone."""
    found = []
    for key in state:
        for leaf, arch, inner in (('conv1.weight', 'resnet', 'layer1.'),
                                  ('patch_embed.proj.weight', 'vit',
                                   'blocks.')):
            prefix = key[:-len(leaf)]
            if key.endswith(leaf) and prefix[-1:] in ('', '.') and any(
                    k.startswith(prefix + inner) for k in state):
                found.append((prefix, arch))
    return found


def _backbone_keys(state: StateDict, layout: Layout,
                   fmt: str) -> Tuple[StateDict, str]:
    for prefix in layout.prefixes:
        picked = OrderedDict((k[len(prefix):], v) for k, v in state.items()
                             if k.startswith(prefix))
        arch = _arch_of(picked)
        if arch and (layout.arch in (None, arch)):
            return picked, arch
    found = _backbones_in(state)
    hint = ('; it holds ' + ', '.join(f'a {arch} under {prefix!r}'
                                      for prefix, arch in found[:3]) +
            ': is it another format?' if found else '')
    prefixes = ', '.join(
        repr(p) if p else 'no prefix' for p in layout.prefixes)
    arch = layout.arch or 'ResNet or ViT'
    raise ValueError(
        f'Not a {fmt} checkpoint ({layout.source}): no {arch} backbone '
        f'(conv1.weight and layer1.* / patch_embed.proj.weight and '
        f'blocks.*) under {prefixes} (first keys: {list(state)[:3]})'
        f'{hint}.')


def _groups(keys) -> List[str]:
    return sorted({k.split('.')[0] + ('.*' if '.' in k else '') for k in keys})


def _resnet(state: StateDict) -> Tuple[StateDict, dict, str, List[str]]:
    kept = OrderedDict(
        (k, v) for k, v in state.items() if _RESNET_KEYS.match(k))
    dropped = _groups(k for k in state if k not in kept)
    bottleneck = 'layer1.0.conv3.weight' in kept
    blocks = Counter(
        int(m[1]) for m in (re.match(r'^layer(\d)\.(\d+)\.conv1\.weight$', k)
                            for k in kept) if m)
    counts = tuple(blocks[i] for i in range(1, 5))
    depth = RESNET_DEPTHS.get((bottleneck, counts))
    if depth is None:
        raise ValueError(
            f'A ResNet with {counts} '
            f'{"bottleneck" if bottleneck else "basic"} blocks per stage '
            f'matches none of ResNet-{sorted(RESNET_DEPTHS.values())}.')
    return kept, dict(type='ResNet', depth=depth), f'resnet{depth}', dropped


def _vit(state: StateDict) -> Tuple[StateDict, dict, str, List[str]]:
    unsupported = [k for k in state if _VIT_UNSUPPORTED.search(k)]
    if unsupported:
        raise ValueError(
            'A BEiT-style ViT (relative position bias, layer scale or a '
            f'mean-pooling norm: {", ".join(unsupported[:3])}) has no '
            'MMPretrain VisionTransformer counterpart.')
    dropped = _groups(k for k in state if _VIT_EXTRA.match(k))
    state = OrderedDict(
        (k, v) for k, v in state.items() if not _VIT_EXTRA.match(k))
    for key in ('cls_token', 'pos_embed', 'norm.weight'):
        if key not in state:
            raise ValueError(f'A ViT without {key!r}: not the DINO / timm '
                             'layout (class token, absolute position '
                             'embedding, final norm).')
    embed_dims = state['cls_token'].shape[-1]
    num_layers = 1 + max(
        int(k.split('.')[1]) for k in state if k.startswith('blocks.'))
    patch_size = state['patch_embed.proj.weight'].shape[-1]
    grid = int(round((state['pos_embed'].shape[1] - 1)**0.5))
    if embed_dims not in VIT_ARCHS:
        raise ValueError(
            f'A ViT of embed_dims {embed_dims}: its number of heads is not '
            f'in the weights, and it is none of {list(VIT_ARCHS)} '
            f'({", ".join(n for n, _ in VIT_ARCHS.values())}).')
    name, num_heads = VIT_ARCHS[embed_dims]
    arch = dict(
        embed_dims=embed_dims,
        num_layers=num_layers,
        num_heads=num_heads,
        feedforward_channels=state['blocks.0.mlp.fc1.weight'].shape[0])
    backbone = dict(
        type='VisionTransformer',
        arch=arch,
        img_size=grid * patch_size,
        patch_size=patch_size,
        out_type='cls_token')
    suffix = '' if num_layers == (24 if name == 'large' else 12) else \
        f'-{num_layers}l'
    return (timm_vit_to_mmpretrain(state), backbone,
            f'vit-{name}{suffix}-p{patch_size}', dropped)


def _unwrapped(state: StateDict) -> List[str]:
    return [re.sub(r'^module\.', '', k) for k in state]


def _layouts_found(ckpt: dict) -> List[Tuple[str, str]]:
    """Each reference layout ``ckpt`` reads as, and where it was seen."""
    found = []
    if _is_state(ckpt.get('teacher')):
        student = ckpt.get('student')
        masked = isinstance(student, dict) and any(
            k.endswith('masked_embed') for k in student)
        found.append(('ibot' if masked else 'dino', "a 'teacher' state dict" +
                      (" and a masked-image student" if masked else '')))
    if _is_state(ckpt.get('model')):
        keys = _unwrapped(ckpt['model'])
        for prefix in LAYOUTS['hirl-vit'].prefixes:
            arch = _arch_of(
                {k[len(prefix):]: 0
                 for k in keys if k.startswith(prefix)})
            if arch:
                found.append(
                    (f'hirl-{arch}', f"a {arch} under 'model' / {prefix!r}"))
                break
    for where, state in (("'state_dict'", ckpt.get('state_dict')),
                         ('a bare state dict', ckpt)):
        if not _is_state(state):
            continue
        keys = _unwrapped(state)
        if any(k.startswith('encoder_q.') for k in keys):
            found.append(('hcsc', f'encoder_q.* in {where}'))
        elif any(
                k.startswith(('l_pro_head', 'local_ptypes', 'l2g_ptypes'))
                for k in keys):
            found.append(('ssprl', f'local heads / prototypes in {where}'))
        elif any(
                k.startswith(('prototypes.', 'projection_head.'))
                for k in keys):
            found.append(('swav', f'SwAV prototypes / head in {where}'))
        else:
            bare = _arch_of({k: 0 for k in keys})
            if bare:
                found.append(('ibot' if 'masked_embed' in keys else 'dino',
                              f'a {bare} without prefix in {where}'))
    return found


def detect_format(ckpt: dict) -> str:
    """The reference layout of a loaded checkpoint (one of
    :data:`IMPORT_FORMATS`).

    A bare backbone, or one under ``state_dict``, reads as DINO's (iBOT's
    with a ``masked_embed``): both write the same keys.

    Raises:
        ValueError: if it is none of them, or reads as more than one (e.g.
            a ``teacher`` beside a ``model``), naming what was found.
    """
    if not isinstance(ckpt, dict):
        raise ValueError(f'Not a checkpoint: a {type(ckpt).__name__}, '
                         'expected a dict.')
    found = _layouts_found(ckpt)
    formats = sorted({fmt for fmt, _ in found})
    if len(formats) == 1:
        return formats[0]
    if formats:
        raise ValueError(
            'Ambiguous checkpoint layout: it reads as ' +
            ' and as '.join(f'{fmt} ({where})' for fmt, where in found) +
            '; name the format (--format) of the backbone to import.')
    state = ckpt.get('state_dict', ckpt)
    first = list(state)[:3] if isinstance(state, dict) else []
    raise ValueError(
        'Unknown checkpoint layout: none of '
        f'{", ".join(IMPORT_FORMATS)} (top-level keys {list(ckpt)[:5]}, '
        f'first state keys {first}); name the format if it is one of '
        'them.')


def _check_loads(state: StateDict, backbone: dict, arch: str) -> None:
    """Load ``state`` into the backbone it is for, strictly: every weight
    with its name and shape (:func:`loaded_share`, the tools' own check),
    and no key left over. The model is built on the meta device where it
    can be (no memory; a ResNet's drop-path rates need real tensors)."""
    from mmpretrain.registry import MODELS
    try:
        with torch.device('meta'):
            model = MODELS.build(backbone)
    except RuntimeError:
        model = MODELS.build(backbone)
    load = loaded_share(model, state)
    if load.missing or load.mismatched or load.unused:
        raise ValueError(
            f'The {arch} backbone does not load strictly '
            f'({load.share:.1%} of its weights): ' +
            '; '.join(f'{what}: {", ".join(keys[:3])}' +
                      (f' ... ({len(keys)} in all)' if len(keys) > 3 else '')
                      for what, keys in (
                          ('missing', load.missing),
                          ('other shape', load.mismatched),
                          ('unexpected', load.unused)) if keys) + '.')


def import_pretrained(checkpoint: Union[str, dict],
                      fmt: str = 'auto',
                      arch: Optional[str] = None,
                      trust_pickle: bool = False) -> ImportedBackbone:
    """A reference's released checkpoint as an MMPretrain backbone.

    The backbone is found where the reference keeps it (:data:`LAYOUTS`),
    heads and prototypes beside it are left out, the ViT's timm names become
    MMPretrain's, and the result is loaded strictly into the MMPretrain
    ``ResNet`` / ``VisionTransformer`` of the architecture read from its
    shapes.

    Args:
        checkpoint (str | dict): A file or a loaded checkpoint.
        fmt (str): One of :data:`IMPORT_FORMATS`, or 'auto' to detect it.
            Defaults to 'auto'.
        arch (str, optional): The architecture it must be, e.g.
            'resnet50', 'vit-base-p16' (ViT names by width: tiny 192, small
            384, base 768, large 1024). Defaults to None (any).
        trust_pickle (bool): Load a file holding arbitrary Python objects
            (``weights_only=False``). Defaults to False.

    Returns:
        ImportedBackbone: The weights, the backbone config, the
        architecture's name, the format and the key groups left out.

    Raises:
        ValueError: for an unknown layout, a file that is not of ``fmt``,
            an unsupported architecture, missing or other-shape weights,
            or an architecture other than ``arch``.
    """
    if fmt != 'auto' and fmt not in LAYOUTS:
        raise ValueError(
            f'format must be auto or one of {IMPORT_FORMATS}, got {fmt!r}.')
    if isinstance(checkpoint, str):
        checkpoint = load_reference_checkpoint(checkpoint, trust_pickle)
    if fmt == 'auto':
        fmt = detect_format(checkpoint)
    elif not isinstance(checkpoint, dict):
        raise ValueError(f'Not a checkpoint: a {type(checkpoint).__name__}'
                         ', expected a dict.')
    layout = LAYOUTS[fmt]
    state, kind = _backbone_keys(
        _container(checkpoint, layout, fmt), layout, fmt)
    state, backbone, name, dropped = (_resnet if kind == 'resnet' else _vit)(
        state)
    if arch is not None and arch != name:
        raise ValueError(f'The checkpoint holds a {name} '
                         f'({_describe(backbone)}), not the {arch} asked '
                         'for.')
    _check_loads(state, backbone, name)
    return ImportedBackbone(state, backbone, name, fmt, dropped)


def _describe(backbone: dict) -> str:
    if backbone['type'] == 'ResNet':
        return f'depth {backbone["depth"]}'
    a = backbone['arch']
    return (f'embed_dims {a["embed_dims"]}, {a["num_layers"]} layers, '
            f'patch {backbone["patch_size"]}')
