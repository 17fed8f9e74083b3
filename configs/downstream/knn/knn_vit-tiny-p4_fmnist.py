# The kNN / clustering benchmark of knn_resnet18_fmnist.py for the embedded
# tiny ViT of the DINO / iBOT configs (4 layers): class-token features.
#   tools/test.py configs/downstream/knn/knn_vit-tiny-p4_fmnist.py CKPT
_base_ = './knn_resnet18_fmnist.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionTransformer',
        arch=dict(
            embed_dims=192,
            num_layers=4,
            num_heads=3,
            feedforward_channels=768),
        img_size=32,
        patch_size=4,
        out_type='cls_token'))
