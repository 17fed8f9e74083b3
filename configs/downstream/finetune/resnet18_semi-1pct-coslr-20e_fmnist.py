# Semi-supervised fine-tuning with 1% of the labels (600 images, 60 per
# class, seeded and class-balanced).
_base_ = './resnet18_finetune-coslr-20e_fmnist.py'

train_dataloader = dict(
    batch_size=64, dataset=dict(subset_size=600, subset_seed=0))
auto_scale_lr = dict(base_batch_size=64)  # 1 GPU x 64
