# HIRL-SimSiam with the reference settings (../hirl_simsiam_r50.py: R50,
# 200 epochs, 8 x 64 images a step, prototypes from epoch 20) on your own
# images: MMPretrain's CustomDataset reads every image under
# data/custom/train (any depth, no labels needed). For an ImageNet-style
# folder with one sub-folder per class, add
# `--cfg-options train_dataloader.dataset.with_label=True`: the prototype
# hook then also logs the tree's agreement with those classes. The tree
# [30000, 10000, 1000] needs >= 30000 images (about 40 per level-0
# prototype, as on ImageNet); for fewer, scale it, e.g.
# `model.num_clusters=[3000,1000,100]`. Recipe: docs/custom_data.md.
_base_ = '../hirl_simsiam_r50.py'

data_root = '{{$DATA_ROOT:data/custom/}}'  # $DATA_ROOT if set
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        with_label=False,
        pipeline=_base_.train_pipeline))
auto_scale_lr = dict(base_batch_size=512)
