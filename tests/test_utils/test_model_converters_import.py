"""Importing the references' released checkpoints.

Each test writes a checkpoint with a reference's exact container, prefixes
and key layout (read from its model and save code), converts it, loads it
strictly into the MMPretrain backbone, and compares the features with those
of the reference module holding the same weights: torchvision's ResNet-50
(the HIRL, HCSC and DINO ResNets are torchvision's; SwAV / SS-PRL's adds a
zero-padding layer in front of a 7x7 conv with padding 2) and a minimal
re-implementation of DINO's ``vision_transformer.py`` (which HIRL and iBOT
modified without changing its names).
"""
import argparse
import functools
import os
import os.path as osp
import pickle
import re
import subprocess
import sys

import pytest
import torch
import torchvision
from mmpretrain.models import ResNet, VisionTransformer
from mmpretrain.registry import MODELS
from tools_path import ROOT, load_tool
from torch import nn

from hirl_mm.utils.backbone_loading import check_load_from
from hirl_mm.utils.model_converters import detect_format, import_pretrained

# ---------------------------------------------------------------------------
# reference modules


class RefAttention(nn.Module):

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads,
                                  C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # B x heads x N x C/heads
        attn = (q @ k.transpose(-2, -1)) * (C // self.num_heads)**-0.5
        return self.proj((attn.softmax(-1) @ v).transpose(1,
                                                          2).reshape(B, N, C))


class RefMlp(nn.Module):

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim,
                                                 hidden), nn.GELU(), nn.Linear(
                                                     hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class RefBlock(nn.Module):

    def __init__(self, dim, num_heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RefAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = RefMlp(dim, dim * 4)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefViT(nn.Module):
    """DINO's ``VisionTransformer`` at its own image size, ``num_classes=0``:
    the normalised class token."""

    def __init__(self, img_size=32, patch_size=8, dim=192, depth=2, heads=3):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, (img_size // patch_size)**2 + 1, dim))
        self.blocks = nn.ModuleList(RefBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Identity()

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)  # N x L x C
        x = torch.cat((self.cls_token.expand(len(x), -1, -1), x), dim=1)
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]


def swav_resnet50():
    """SwAV's / SS-PRL's ``resnet50``: a ConstantPad2d(1) before a 7x7 conv
    with padding 2, the rest torchvision's names."""
    model = torchvision.models.resnet50(weights=None)
    model.conv1.padding = (2, 2)
    model.fc = nn.Identity()
    return nn.Sequential(nn.ConstantPad2d(1, 0.), model)


def perturbed(state):
    """Weights whose BN layers are no identity (torch's default init
    is)."""
    torch.manual_seed(0)
    out = {}
    for k, v in state.items():
        if k.endswith(
            ('running_var', 'bn1.weight', 'bn2.weight', 'bn3.weight',
             'downsample.1.weight')) or ('norm' in k and k.endswith('weight')):
            v = 1 + 0.2 * torch.rand_like(v)
        elif v.dtype.is_floating_point and v.dim() <= 1 or k in ('cls_token',
                                                                 'pos_embed'):
            v = 0.1 * torch.randn_like(v)
        out[k] = v.clone()
    return out


@pytest.fixture(scope='module')
def resnet():
    """torchvision ResNet-50 weights (its classifier an MLP, as in MoCo's
    encoders) and the reference features."""
    tv = torchvision.models.resnet50(weights=None)
    state = perturbed(tv.state_dict())
    tv.load_state_dict(state)
    tv.fc = nn.Identity()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    swav = swav_resnet50()
    swav[1].load_state_dict(tv.state_dict())
    with torch.no_grad():
        ref, ref_swav = tv.eval()(x), swav.eval()(x)
    state = {k: v for k, v in state.items() if not k.startswith('fc.')}
    mlp = {
        'fc.0.weight': torch.randn(2048, 2048),
        'fc.0.bias': torch.randn(2048),
        'fc.2.weight': torch.randn(128, 2048),
        'fc.2.bias': torch.randn(128),
    }
    model = ResNet(depth=50)
    model.eval()  # mmpretrain's ResNet.train() returns None
    return dict(
        state=state, mlp=mlp, x=x, ref=ref, ref_swav=ref_swav, model=model)


@pytest.fixture(scope='module')
def vit():
    ref = RefViT()
    ref.load_state_dict(perturbed(ref.state_dict()))
    with torch.no_grad():
        for p in ref.parameters():  # away from the default init
            p.add_(0.02 * torch.randn_like(p))
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = ref.eval()(x)
    return dict(state=ref.state_dict(), x=x, ref=out)


def prefixed(state, prefix):
    return {prefix + k: v for k, v in state.items()}


# ---------------------------------------------------------------------------
# the references' layouts


def hirl_resnet(r, hirl):
    """hirl-team/HIRL's ``{'model': model.state_dict()}``: the baseline's
    torchvision encoder is both ``encoder_q`` / ``encoder`` and
    ``backbone``; HIRL wraps it as ``model``, beside its projections."""
    enc = dict(r['state'], **r['mlp'])
    pre = 'model.' if hirl else ''
    model = {
        **prefixed(enc, f'{pre}encoder_q.'),
        **prefixed(enc, f'{pre}backbone.'),
        **prefixed(enc, f'{pre}encoder_k.'), f'{pre}queue':
        torch.randn(128, 16)
    }
    if hirl:
        model['projections.0.0.weight'] = torch.randn(128, 128)
    return dict(model=model, epoch=200)


def hcsc(r):
    """gyfastas/HCSC ``pretrain.py``: DDP's ``module.encoder_q`` /
    ``encoder_k``, the queue, plus the epoch, arch and optimizer."""
    enc = dict(r['state'], **r['mlp'])
    state = {
        **prefixed(enc, 'module.encoder_q.'),
        **prefixed(enc, 'module.encoder_k.'), 'module.queue':
        torch.randn(128, 16)
    }
    return dict(
        epoch=200,
        arch='resnet50',
        state_dict=state,
        optimizer=dict(state={}, param_groups=[dict(lr=0.03, params=[0])]))


def ssprl(r):
    """SS-PRL's ``main_SSPRL.py``: DDP's ``module.`` of its ResNet with the
    global / local projection heads and prototypes."""
    state = prefixed(r['state'], 'module.')
    extra = {
        'projection_head.0.weight': (2048, 2048),
        'projection_head.3.weight': (128, 2048),
        'l_pro_head0.0.weight': (2048, 2048),
        'ptypes.weight': (3000, 128),
        'local_ptypes0.weight': (1000, 128),
        'l2g_ptypes0.weight': (3000, 1000),
    }
    for name, shape in extra.items():
        state[f'module.{name}'] = torch.randn(shape)
    return dict(epoch=200, state_dict=state)


def swav(r):
    """facebookresearch/swav's released ``swav_800ep_pretrain.pth.tar``: a
    bare DDP state dict with the projection head and prototypes."""
    state = prefixed(r['state'], 'module.')
    state['module.projection_head.0.weight'] = torch.randn(2048, 2048)
    state['module.prototypes.weight'] = torch.randn(3000, 128)
    return state


def dino_full(state, masked=False):
    """DINO's / iBOT's full checkpoint: the DDP student and the teacher,
    each a MultiCropWrapper of ``backbone`` and ``head``, plus the
    arguments as an ``argparse.Namespace``."""
    head = {
        'head.mlp.0.weight': torch.randn(64, 192),
        'head.last_layer.weight_g': torch.randn(100, 1)
    }
    student = prefixed({**prefixed(state, 'backbone.'), **head}, 'module.')
    if masked:
        student['module.backbone.masked_embed'] = torch.randn(1, 192)
    return dict(
        student=student,
        teacher={
            **prefixed(state, 'backbone.'),
            **head
        },
        epoch=400,
        args=argparse.Namespace(arch='vit_base', patch_size=16),
        dino_loss={'center': torch.zeros(1, 100)})


def hirl_vit(state):
    """HIRL-MoCo v3: the ViT's ``head`` is MoCo v3's projection MLP."""
    enc = dict(state)
    enc['head.0.weight'] = torch.randn(64, 192)
    enc['head.1.weight'] = torch.randn(64)
    return dict(model=prefixed(enc, 'model.backbone.'))


def resnet_features(r, state):
    model = r['model']
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        return model(r['x'])[-1].mean(dim=(2, 3))  # N x C


RESNET_CASES = {
    'hirl-resnet': lambda r: hirl_resnet(r, hirl=False),
    'hirl-resnet (HIRL)': lambda r: hirl_resnet(r, hirl=True),
    'hcsc': hcsc,
    'ssprl': ssprl,
    'swav': swav,
    'dino': lambda r: prefixed(r['state'], ''),  # dino_resnet50_pretrain
}


@pytest.mark.parametrize('case', RESNET_CASES)
def test_resnet_formats(resnet, case):
    ckpt = RESNET_CASES[case](resnet)
    fmt = case.split(' ')[0]
    assert detect_format(ckpt) == fmt
    imported = import_pretrained(ckpt, fmt, arch='resnet50')
    assert imported.backbone == dict(type='ResNet', depth=50)
    out = resnet_features(resnet, imported.state)
    ref = resnet['ref_swav' if fmt in ('swav', 'ssprl') else 'ref']
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert not any(k.startswith('fc.') for k in imported.state)
    if fmt == 'ssprl':
        assert imported.dropped == [
            'l2g_ptypes0.*', 'l_pro_head0.*', 'local_ptypes0.*',
            'projection_head.*', 'ptypes.*'
        ]


def vit_model(imported):
    model = MODELS.build(imported.backbone)
    model.load_state_dict(imported.state, strict=True)
    model.eval()  # mmpretrain's train() returns None
    return model


VIT_CASES = {
    'hirl-vit': hirl_vit,
    'dino': dino_full,
    'dino (backbone only)': lambda s: dict(s),
    'ibot': lambda s: dino_full(s, masked=True),
    'ibot (backbone only)': lambda s: dict(state_dict=dict(s)),
}


@pytest.mark.parametrize('case', VIT_CASES)
def test_vit_formats(vit, case, tmp_path):
    ckpt = VIT_CASES[case](vit['state'])
    fmt = case.split(' ')[0]
    if case != 'ibot (backbone only)':  # a bare ViT reads as DINO's
        assert detect_format(ckpt) == fmt
    path = tmp_path / 'ckpt.pth'
    torch.save(ckpt, path)  # the Namespace of arguments loads safely
    imported = import_pretrained(str(path), fmt)
    assert imported.arch == 'vit-tiny-2l-p8'
    assert imported.backbone['img_size'] == 32
    with torch.no_grad():
        out = vit_model(imported)(vit['x'])[-1]
    torch.testing.assert_close(out, vit['ref'], rtol=1e-5, atol=1e-5)


def test_vit_base_is_mmpretrains_vit_b():
    """A ViT-B/16 of DINO's layout (on the meta device: shapes only) is
    MMPretrain's ``arch='b'`` at 224."""
    with torch.device('meta'):
        ref = RefViT(img_size=224, patch_size=16, dim=768, depth=12, heads=12)
    imported = import_pretrained(
        dino_full(ref.state_dict()), 'dino', arch='vit-base-p16')
    assert imported.backbone['arch'] == VisionTransformer.arch_zoo['b']
    assert (imported.backbone['img_size'],
            imported.backbone['patch_size']) == (224, 16)


def test_bad_input(resnet, vit, tmp_path):
    with pytest.raises(ValueError, match='Unknown checkpoint layout'):
        import_pretrained(dict(state_dict={'encoder.w': torch.zeros(1)}))
    both = dict(hcsc(resnet), model=prefixed(resnet['state'], 'backbone.'))
    with pytest.raises(
            ValueError,
            match=r"Ambiguous checkpoint layout: it reads as hirl-resnet \(a "
            r"resnet under 'model' / 'backbone.'\) and as hcsc \(encoder_q"):
        import_pretrained(both)
    assert import_pretrained(both, 'hcsc').fmt == 'hcsc'
    with pytest.raises(ValueError, match='Not a dino checkpoint'):
        import_pretrained(hcsc(resnet), 'dino')
    with pytest.raises(ValueError, match="expected 'model'"):
        import_pretrained(hcsc(resnet), 'hirl-resnet')
    with pytest.raises(ValueError, match="it holds a vit under 'x.': is it"):
        import_pretrained(dict(model=prefixed(vit['state'], 'x.')), 'hirl-vit')
    broken = hcsc(resnet)
    del broken['state_dict']['module.encoder_q.layer4.2.conv3.weight']
    with pytest.raises(ValueError, match='missing: layer4.2.conv3.weight'):
        import_pretrained(broken, 'hcsc')
    # a ViT-S/16 (DINO's deit_small) named as ViT-B/16
    with torch.device('meta'):
        small = RefViT(
            img_size=224, patch_size=16, dim=384, depth=12,
            heads=6).state_dict()
    with pytest.raises(
            ValueError,
            match=r'holds a vit-small-p16 \(embed_dims 384, 12 layers, '
            r'patch 16\), not the vit-base-p16'):
        import_pretrained(small, 'dino', arch='vit-base-p16')
    with pytest.raises(ValueError, match='BEiT-style'):
        import_pretrained(
            dict(small, **{'blocks.0.gamma_1': torch.ones(384)}), 'dino')
    with pytest.raises(ValueError, match='format must be auto or one of'):
        import_pretrained(small, 'mae')
    # arbitrary objects: refused unless trusted
    path = tmp_path / 'pickled.pth'
    torch.save(
        dict(state_dict=dict(vit['state']), args=functools.partial(print)),
        path)
    with pytest.raises(ValueError, match='--trust-pickle'):
        import_pretrained(str(path))
    assert import_pretrained(str(path), trust_pickle=True).fmt == 'dino'


def test_tool_output_loads_in_the_knn_config(resnet, tmp_path, monkeypatch,
                                             capsys):
    """``import_pretrained.py``'s file is what ``tools/test.py`` (the kNN
    config's ResNet-50) and ``--pretrained`` read: ``backbone.*`` keys."""
    from mmengine.config import Config
    tool = load_tool('tools/model_converters/import_pretrained.py')
    src, dst = tmp_path / 'hirl_mocov2_200eps_backbone.pth', \
        tmp_path / 'out' / 'r50.pth'
    torch.save(hirl_resnet(resnet, hirl=True), src)
    monkeypatch.setattr(sys, 'argv',
                        ['import_pretrained.py',
                         str(src), str(dst)])
    tool.main()
    assert 'hirl-resnet' in capsys.readouterr().out
    saved = torch.load(dst)
    assert saved['meta']['arch'] == 'resnet50'
    cfg = Config.fromfile(f'{ROOT}/configs/downstream/knn/'
                          'knn_resnet50_in1k.py')
    model = MODELS.build(cfg.model)
    assert check_load_from(model, str(dst)) == 1.0


@pytest.fixture(scope='module')
def imported_files(resnet, tmp_path_factory):
    """``import_pretrained.py``'s files for an HCSC ResNet-50 and a DINO
    ViT-B/16 (zeros: only names and shapes matter here)."""
    with torch.device('meta'):
        ref = RefViT(img_size=224, patch_size=16, dim=768, depth=12, heads=12)
    vit_b = {k: torch.zeros(v.shape) for k, v in ref.state_dict().items()}
    paths = {}
    for case, ckpt in (('resnet', hcsc(resnet)), ('vit', vit_b)):
        imported = import_pretrained(ckpt)
        paths[case] = str(tmp_path_factory.mktemp(case) / 'imported.pth')
        torch.save(
            dict(state_dict={
                f'backbone.{k}': v
                for k, v in imported.state.items()
            }), paths[case])
    return paths


@pytest.mark.parametrize('config, case', [
    ('knn/knn_resnet50_in1k.py', 'resnet'),
    ('linear/resnet50_linear-steplr-100e_in1k.py', 'resnet'),
    ('finetune/resnet50_semi-1pct-coslr-20e_in1k.py', 'resnet'),
    ('multilabel/resnet50_multilabel-linear-1xb32-coslr-100e_voc07.py',
     'resnet'),
    ('mmdetection/mask-rcnn_r50_fpn_ms-1x_coco.py', 'resnet'),
    ('mmdetection/mask-rcnn_r50-c4_ms-1x_coco.py', 'resnet'),
    ('mmsegmentation/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py', 'resnet'),
    ('knn/knn_vit-base-p16_in1k.py', 'vit'),
    ('linear/vit-base-p16_linear-8xb128-coslr-100e_in1k.py', 'vit'),
    ('mmdetection/'
     'mask-rcnn_vit-base-p16_simple-fpn_8xb8-amp-lsj-100e_coco.py', 'vit'),
    ('mmsegmentation/upernet_vit-base-p16_8xb2-160k_ade20k-512x512.py', 'vit'),
])
def test_imported_files_fill_the_downstream_configs(imported_files, config,
                                                    case):
    """The converted ResNet-50 / ViT-B/16 fill 100% of the backbones of the
    evaluation configs of docs/model_zoo.md and of the detection /
    segmentation configs, through ``tools/test.py CKPT`` (kNN) or
    ``--pretrained CKPT`` (the rest; the C4 head's extra norm is not in a
    backbone)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from hirl_mm.utils import check_pretrained_inits, pretrained_cfg_options
    path = imported_files[case]
    cfg = Config.fromfile(f'{ROOT}/configs/downstream/{config}')
    if config.startswith(('mmdetection', 'mmsegmentation')):
        import hirl_mm.transfer  # noqa: F401
    scope = cfg.get('default_scope', 'mmpretrain')
    registry = MODELS
    if scope == 'mmdet':
        from mmdet.registry import MODELS as registry
    elif scope == 'mmseg':
        from mmseg.registry import MODELS as registry
    with DefaultScope.overwrite_default_scope(scope):
        if 'knn' in config:
            assert check_load_from(registry.build(cfg.model), path) == 1.0
            return
        cfg.merge_from_dict(
            dict(o.split('=', 1) for o in pretrained_cfg_options(cfg, path)))
        shares = check_pretrained_inits(registry.build(cfg.model))
    assert shares.pop('backbone') == 1.0
    if 'c4' in config:
        assert 0.99 < shares.pop('roi_head.shared_head') < 1
    assert shares == {}


# ---------------------------------------------------------------------------
# docs/model_zoo.md's walk-through

DOC = f'{ROOT}/docs/model_zoo.md'
# appended to the documented kNN commands: smaller bank and query sets
SMALL_KNN = ('test_dataloader.num_workers=0 '
             'test_dataloader.dataset.bank.subset_size=300 '
             'test_dataloader.dataset.query.subset_size=100')


def documented_commands():
    """The doc's ``shell`` blocks, one command per entry, in order."""
    text = open(DOC).read()
    commands = []
    for block in re.findall(r'```shell\n(.*?)```', text, re.S):
        for command in block.replace('\\\n', ' ').splitlines():
            command = ' '.join(command.split())
            if command and not command.startswith('#'):
                commands.append(command)
    return commands


def test_the_documented_paths_exist():
    text = open(DOC).read()
    for path in re.findall(
            r'`((?:knn|linear|finetune|multilabel)/[^`]+'
            r'\.py)`', text):
        assert osp.isfile(f'{ROOT}/configs/downstream/{path}'), path
    for path in re.findall(r'(?:tools|configs)/[\w/.-]+\.py', text):
        assert osp.isfile(osp.join(ROOT, path)), path


@pytest.mark.slow
def test_walkthrough(tmp_path):
    """Every documented command, in order, by bash in a folder that links
    the repository's tools/, configs/ and .venv/."""
    commands = documented_commands()
    assert sum('import_pretrained.py' in c for c in commands) == 2
    assert sum('tools/test.py' in c for c in commands) == 2
    for name in ('tools', 'configs', '.venv'):
        os.symlink(osp.join(ROOT, name), tmp_path / name)
    script = '\n'.join(
        ['set -euo pipefail'] +
        [f'{c} {SMALL_KNN}' if 'tools/test.py' in c else c for c in commands])
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    out = subprocess.run(['bash', '-c', script],
                         cwd=tmp_path,
                         env=env,
                         capture_output=True,
                         text=True,
                         timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert 'hcsc_200eps.pth (hcsc) -> ' in log
    assert 'dino_vitbase16_pretrain.pth (dino) -> ' in log
    assert len(
        re.findall(r'100\.0% of its [\d.]+M weight elements load', log)) == 2
    assert len(re.findall(r'knn/top1_k20_fine: [\d.]+', log)) == 2
    imported = tmp_path / 'work_dirs' / 'imported'
    r50 = torch.load(imported / 'hcsc_r50.pth')
    assert r50['meta']['arch'] == 'resnet50'
    vit = torch.load(imported / 'dino_vit-b16.pth')
    assert vit['meta']['backbone']['arch'] == VisionTransformer.arch_zoo['b']
    with open(imported / 'hcsc_r50.pkl', 'rb') as f:
        d2 = pickle.load(f)
    assert d2['model']['stem.conv1.weight'].shape == (64, 3, 7, 7)
    assert d2['model']['res5.2.conv3.norm.running_var'].shape == (2048, )
