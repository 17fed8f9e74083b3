# The kNN / clustering protocol of knn_resnet50_in1k.py for a ViT-B/16
# (DINO's, iBOT's and HIRL's kNN: the normalised class token):
#   tools/dist_test.sh configs/downstream/knn/knn_vit-base-p16_in1k.py CKPT 8
_base_ = './knn_resnet50_in1k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionTransformer',
        arch='b',
        img_size=224,
        patch_size=16,
        out_type='cls_token'))
