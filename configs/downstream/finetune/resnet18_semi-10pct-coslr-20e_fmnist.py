# Semi-supervised fine-tuning with 10% of the labels (6000 images).
_base_ = './resnet18_semi-1pct-coslr-20e_fmnist.py'

train_dataloader = dict(dataset=dict(subset_size=6000))
auto_scale_lr = dict(base_batch_size=64)  # 1 GPU x 64
