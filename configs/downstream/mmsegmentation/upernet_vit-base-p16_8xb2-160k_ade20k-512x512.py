# UperNet with a plain ViT-B/16 (e.g. HIRL-MoCo v3) on ADE20K, 160k
# iterations, 512 x 512: MMSegmentation's ViT + multi-level neck recipe
# with the MMPretrain VisionTransformer as the backbone, so the
# pre-training checkpoint's backbone.* keys load unchanged (the position
# embedding is resized to 512 px on load).
_base_ = 'mmseg::vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(
    imports=['hirl_mm.transfer'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='b',
        img_size=512,
        patch_size=16,
        out_type='featmap',
        out_indices=(2, 5, 8, 11),
        final_norm=False,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')))
auto_scale_lr = dict(base_batch_size=16)
