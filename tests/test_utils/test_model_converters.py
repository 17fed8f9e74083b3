"""Backbone export: key mappings against the real torchvision / timm models."""
import sys

import numpy as np
import pytest
import timm
import torch
import torchvision
from mmpretrain.models import ResNet, VisionTransformer
from tools_path import load_tool

from hirl_mm.utils.model_converters import (convert_backbone, extract_backbone,
                                            mmpretrain_resnet_to_torchvision,
                                            mmpretrain_vit_to_timm,
                                            timm_vit_to_mmpretrain,
                                            torchvision_resnet_to_mmpretrain)

TINY_VIT = dict(
    embed_dims=48, num_layers=2, num_heads=3, feedforward_channels=96)


def ssl_checkpoint(backbone):
    """A self-supervised checkpoint as the Runner writes it."""
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state['neck.fc0.weight'] = torch.randn(4, 4)
    state['prototypes.centroids_0'] = torch.randn(3, 4)
    return dict(meta=dict(epoch=1), state_dict=state)


def randomised(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.dtype.is_floating_point:
                p.copy_(torch.randn_like(p) * 0.1 + (p == 1) * 1.0)
    model.eval()  # mmpretrain's ResNet.train() returns None
    return model


@pytest.mark.parametrize('depth', [18, 50])
def test_resnet_to_torchvision(depth):
    mm = randomised(ResNet(depth=depth))
    state = convert_backbone(ssl_checkpoint(mm), 'torchvision')
    tv = getattr(torchvision.models, f'resnet{depth}')(weights=None).eval()
    missing, unexpected = tv.load_state_dict(state, strict=False)
    assert missing == ['fc.weight', 'fc.bias'] and unexpected == []
    tv.fc = torch.nn.Identity()
    tv.load_state_dict(state, strict=True)  # every backbone key matched
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = mm(x)[-1].mean(dim=(2, 3))  # N x C
        out = tv(x)
    assert out.shape == (2, 512 * (1 if depth == 18 else 4))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    # round trip back to MMPretrain
    back = torchvision_resnet_to_mmpretrain(tv.state_dict())
    mm2 = ResNet(depth=depth)
    mm2.load_state_dict(back, strict=True)
    for k, v in mm.state_dict().items():
        assert torch.equal(mm2.state_dict()[k], v), k


def tiny_pair():
    mm = VisionTransformer(
        arch=TINY_VIT, img_size=32, patch_size=8, out_type='cls_token')
    tv = timm.models.vision_transformer.VisionTransformer(
        img_size=32,
        patch_size=8,
        embed_dim=48,
        depth=2,
        num_heads=3,
        mlp_ratio=2,
        num_classes=0)
    return randomised(mm), tv.eval()


def test_vit_to_timm_and_back():
    mm, tv = tiny_pair()
    state = convert_backbone(ssl_checkpoint(mm), 'timm')
    result = tv.load_state_dict(state, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = mm(x)[-1]  # N x C, the normalised class token
        out = tv(x)
    assert out.shape == (2, 48)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    # timm with a classifier head -> MMPretrain drops the head
    tv_head = timm.models.vision_transformer.VisionTransformer(
        img_size=32,
        patch_size=8,
        embed_dim=48,
        depth=2,
        num_heads=3,
        mlp_ratio=2,
        num_classes=10)
    tv_head.load_state_dict(state, strict=False)
    back = timm_vit_to_mmpretrain(tv_head.state_dict())
    mm2 = VisionTransformer(arch=TINY_VIT, img_size=32, patch_size=8)
    mm2.load_state_dict(back, strict=True)
    assert torch.equal(mm2.layers[1].attn.qkv.weight,
                       mm.layers[1].attn.qkv.weight)


def test_vit_base_names_match_timm():
    """mmpretrain ViT-B/16 <-> timm ``vit_base_patch16_224``, names and
    shapes (built on the meta device: no memory, no download)."""
    with torch.device('meta'):
        mm = VisionTransformer(arch='b', img_size=224, patch_size=16)
        tv = timm.create_model(
            'vit_base_patch16_224', pretrained=False, num_classes=0)
    state = mmpretrain_vit_to_timm(mm.state_dict())
    ref = tv.state_dict()
    assert sorted(state) == sorted(ref)
    assert all(state[k].shape == ref[k].shape for k in ref)


def test_extract_backbone_prefix():
    ckpt = ssl_checkpoint(ResNet(depth=18))
    kept = extract_backbone(ckpt, keep_prefix=True)
    bare = extract_backbone(ckpt)
    assert len(kept) == len(bare) == len(ResNet(depth=18).state_dict())
    assert all(k.startswith('backbone.') for k in kept)
    assert list(bare) == [k[len('backbone.'):] for k in kept]


@pytest.mark.parametrize('bad, match', [
    ([1, 2], 'expected a dict'),
    (dict(state_dict={'conv1.weight': torch.zeros(1)}), 'no "backbone'),
    (dict(state_dict={
        'backbone.conv1.weight': torch.zeros(1),
        'head.fc.weight': torch.zeros(1)
    }), 'classifier head'),
    (dict(state_dict={'backbone.x': 'not a tensor'}), 'names to tensors'),
])
def test_refuses_non_ssl_checkpoints(bad, match):
    with pytest.raises(ValueError, match=match):
        extract_backbone(bad)


def test_wrong_architecture_for_format():
    with pytest.raises(
            ValueError, match='Not an MMPretrain VisionTransformer'):
        convert_backbone(ssl_checkpoint(ResNet(depth=18)), 'timm')
    from mmpretrain.models import ResNet_CIFAR, ResNetV1c
    with pytest.raises(ValueError, match='7x7 stem'):
        mmpretrain_resnet_to_torchvision(ResNet_CIFAR(depth=18).state_dict())
    with pytest.raises(ValueError, match='deep-stem'):
        mmpretrain_resnet_to_torchvision(ResNetV1c(depth=18).state_dict())
    with pytest.raises(ValueError, match='format must be one of'):
        convert_backbone(ssl_checkpoint(ResNet(depth=18)), 'onnx')


def test_tool(tmp_path, monkeypatch):
    tool = load_tool('tools/model_converters/extract_backbone.py')

    def run(*args):
        monkeypatch.setattr(sys, 'argv', ['extract_backbone.py', *args])
        tool.main()

    mm = ResNet(depth=18)
    src = tmp_path / 'epoch_1.pth'
    torch.save(ssl_checkpoint(mm), src)
    out = tmp_path / 'backbone.pth'
    run(str(src), str(out), '--keep-prefix')
    saved = torch.load(out)['state_dict']
    assert set(saved) == {f'backbone.{k}' for k in mm.state_dict()}
    tv_out = tmp_path / 'tv.pth'
    run(str(src), str(tv_out), '--format', 'torchvision')
    tv = torchvision.models.resnet18(weights=None)
    tv.fc = torch.nn.Identity()
    tv.load_state_dict(torch.load(tv_out), strict=True)
    bad = tmp_path / 'cls.pth'
    torch.save(
        dict(
            state_dict={
                'backbone.conv1.weight': torch.zeros(1),
                'head.fc.weight': torch.zeros(1)
            }), bad)
    with pytest.raises(ValueError, match='Not a self-supervised checkpoint'):
        run(str(bad), str(out))


# ---------------------------------------------------------------------------
# detectron2: a re-implementation of the names and computation of
# detectron2/modeling/backbone/resnet.py (BasicStem, BasicBlock,
# BottleneckBlock with stride_in_1x1=False, stages res2..res5) with its
# FrozenBatchNorm2d (detectron2/layers/batch_norm.py: four buffers, eps 1e-5)


class D2FrozenBN(torch.nn.Module):

    def __init__(self, channels):
        super().__init__()
        for name in ('weight', 'bias', 'running_mean', 'running_var'):
            self.register_buffer(name, torch.zeros(channels))

    def forward(self, x):
        scale = self.weight * (self.running_var + 1e-5).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + bias[None, :, None, None]


class D2Conv(torch.nn.Conv2d):
    """detectron2's ``Conv2d``: a conv without bias, then ``norm``."""

    def __init__(self, cin, cout, k, stride=1):
        super().__init__(cin, cout, k, stride, padding=k // 2, bias=False)
        self.norm = D2FrozenBN(cout)

    def forward(self, x):
        return self.norm(super().forward(x))


class D2Block(torch.nn.Module):

    def __init__(self, cin, cout, stride, bottleneck):
        super().__init__()
        mid = cout // 4 if bottleneck else cout
        self.shortcut = D2Conv(cin, cout, 1, stride) if cin != cout else None
        if bottleneck:  # the stride in the 3x3 conv
            self.convs = [(1, cin, mid, 1), (3, mid, mid, stride),
                          (1, mid, cout, 1)]
        else:
            self.convs = [(3, cin, cout, stride), (3, cout, cout, 1)]
        for i, (k, a, b, s) in enumerate(self.convs, 1):
            self.add_module(f'conv{i}', D2Conv(a, b, k, s))

    def forward(self, x):
        out = x
        for i in range(1, len(self.convs) + 1):
            out = getattr(self, f'conv{i}')(out)
            if i < len(self.convs):
                out = out.relu()
        short = x if self.shortcut is None else self.shortcut(x)
        return (out + short).relu()


class D2ResNet(torch.nn.Module):

    def __init__(self, depth):
        super().__init__()
        blocks = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}[depth]
        bottleneck = depth >= 50
        self.stem = torch.nn.Module()
        self.stem.conv1 = D2Conv(3, 64, 7, 2)
        cin = 64
        for i, n in enumerate(blocks):
            cout = 64 * 2**i * (4 if bottleneck else 1)
            stage = torch.nn.Sequential(
                *(D2Block(cin if j == 0 else cout, cout,
                          2 if j == 0 and i else 1, bottleneck)
                  for j in range(n)))
            self.add_module(f'res{i + 2}', stage)
            cin = cout

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(
            self.stem.conv1(x).relu(), kernel_size=3, stride=2, padding=1)
        for i in range(2, 6):
            x = getattr(self, f'res{i}')(x)
        return x


def with_bn_statistics(model):
    """The model's own (He) initialisation, BatchNorm weights and statistics
    away from the identity: activations stay O(1) through the depth."""
    torch.manual_seed(0)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            bn = 'bn' in k or 'downsample.1' in k
            if k.endswith('running_var') or bn and k.endswith('weight'):
                v.copy_(1 + 0.2 * torch.rand_like(v))
            elif k.endswith(('running_mean', 'bias')):
                v.copy_(0.1 * torch.randn_like(v))
    model.eval()  # mmpretrain's ResNet.train() returns None
    return model


@pytest.mark.parametrize('depth', [18, 50])
def test_detectron2_round_trip(depth, tmp_path, monkeypatch):
    """``extract_backbone.py --format detectron2`` writes what detectron2's
    ``DetectionCheckpointer`` reads from a ``.pkl`` (as MoCo's and HCSC's
    convert-pretrain-to-detectron2.py do): numpy arrays under ``model`` in
    detectron2's ResNet names, which load into detectron2's ResNet with
    every key and shape and give the MMPretrain backbone's features; the
    names map back to the same MMPretrain weights."""
    import pickle

    from hirl_mm.utils.model_converters import detectron2_resnet_to_mmpretrain
    mm = with_bn_statistics(ResNet(depth=depth))
    src, out = tmp_path / 'epoch_1.pth', tmp_path / 'd2' / 'r.pkl'
    torch.save(ssl_checkpoint(mm), src)
    tool = load_tool('tools/model_converters/extract_backbone.py')
    monkeypatch.setattr(
        sys, 'argv',
        ['extract_backbone.py',
         str(src),
         str(out), '--format', 'detectron2'])
    tool.main()
    with open(out, 'rb') as f:
        saved = pickle.load(f, encoding='latin1')  # as detectron2 reads it
    assert set(saved) == {'model', '__author__', 'matching_heuristics'}
    assert saved['matching_heuristics'] is True
    weights = saved['model']
    assert all(isinstance(v, np.ndarray) for v in weights.values())
    d2 = D2ResNet(depth).eval()
    ref = d2.state_dict()
    assert sorted(weights) == sorted(ref)
    assert all(weights[k].shape == tuple(ref[k].shape) for k in ref)
    for k in ('stem.conv1.weight', 'stem.conv1.norm.running_var',
              'res2.0.conv1.norm.weight', 'res3.0.shortcut.weight',
              'res3.0.shortcut.norm.bias', 'res5.1.conv2.weight'):
        assert k in weights, k
    tensors = {k: torch.from_numpy(v) for k, v in weights.items()}
    d2.load_state_dict(tensors, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(d2(x), mm(x)[-1], rtol=1e-5, atol=1e-5)
    back = detectron2_resnet_to_mmpretrain(weights)
    own = {
        k: v
        for k, v in mm.state_dict().items()
        if not k.endswith('num_batches_tracked')
    }
    assert sorted(back) == sorted(own)
    assert all(torch.equal(back[k], own[k]) for k in own)


def test_detectron2_refuses_other_backbones():
    from mmpretrain.models import ResNetV1c
    with pytest.raises(ValueError, match='deep-stem'):
        convert_backbone(ssl_checkpoint(ResNetV1c(depth=18)), 'detectron2')
    mm, _ = tiny_pair()
    with pytest.raises(ValueError, match='Not a ResNet backbone'):
        convert_backbone(ssl_checkpoint(mm), 'detectron2')
