"""Train any OpenMMLab (MMPretrain / MMDet / MMSeg / hirl_mm) config.

torch, the runner and hirl_mm are imported after the arguments are parsed:
``--help`` answers in a fraction of a second.
"""
from _cli import (apply_cfg_options, checkpoint_path, load_config, make_parser,
                  parse_args, train)
from mmengine.config import Config


def build_parser():
    parser = make_parser('Train a model')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest one in '
        'the work dir when no path is given')
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        '--pretrained',
        metavar='CKPT',
        type=checkpoint_path,
        help="load CKPT into every init_cfg=dict(type='Pretrained', "
        "prefix='backbone.') of the model (the backbone's and a C4 "
        "detector's res5 shared head's); its backbone.* weights must fill "
        'each (see --cfg-options backbone_min_loaded); --cfg-options still '
        'apply after it')
    weights.add_argument(
        '--random-init',
        action='store_true',
        help="drop every init_cfg=dict(type='Pretrained', "
        "prefix='backbone.'): a random-init baseline")
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the total batch size (GPUs x batch_size) over '
        "the config's auto_scale_lr.base_batch_size")
    parser.add_argument(
        '--tensorboard',
        action='store_true',
        help="also write TensorBoard's event file (mmengine's "
        'TensorboardVisBackend) beside the local scalars.json, under '
        '<work dir>/<timestamp>/vis_data')
    return parser


def set_pretrained(cfg: Config, checkpoint: str) -> Config:
    """Point every ``Pretrained`` backbone ``init_cfg`` at ``checkpoint``.

    Args:
        cfg (Config): The config, changed in place.
        checkpoint (str): A self-supervised checkpoint with ``backbone.*``
            keys.

    Returns:
        Config: ``cfg``.

    Raises:
        ValueError: if the config loads no pre-trained backbone.
    """
    from hirl_mm.utils import pretrained_init_paths
    cfg.merge_from_dict({
        f'{path}.checkpoint': checkpoint
        for path in pretrained_init_paths(cfg)
    })
    return cfg


def add_tensorboard(cfg: Config) -> Config:
    """Add mmengine's ``TensorboardVisBackend`` to the config's visualizer,
    beside its other backends (the local ``scalars.json`` stays).

    ``--cfg-options`` cannot add an item to a list, hence the flag.

    Args:
        cfg (Config): The config, changed in place.

    Returns:
        Config: ``cfg``.

    Raises:
        ImportError: if neither ``tensorboard`` nor ``tensorboardX`` is
            installed (mmengine would fail only at the first logged step).
    """
    import importlib.util
    if not any(
            importlib.util.find_spec(name)
            for name in ('tensorboard', 'tensorboardX')):
        raise ImportError(
            '--tensorboard needs the tensorboard package, which is not '
            'installed in this environment: pip install tensorboard '
            '(requirements/runtime.txt)')
    # mmengine's Runner uses one LocalVisBackend when there is no visualizer
    visualizer = cfg.get('visualizer') or dict(
        type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
    backends = list(visualizer.get('vis_backends') or [])
    if not any(
            str(b.get('type')).endswith('TensorboardVisBackend')
            for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    visualizer['vis_backends'] = backends
    cfg.visualizer = visualizer
    return cfg


def merge_args(cfg: Config, args) -> Config:
    """Apply the command line to ``cfg``, ``--cfg-options`` last.

    Raises:
        ValueError: for ``--auto-scale-lr`` on a config without
            ``auto_scale_lr.base_batch_size``.
    """
    from mmengine.runner import find_latest_checkpoint

    from hirl_mm.utils import check_checkpoint, drop_pretrained_inits
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
            raise ValueError(
                f'--auto-scale-lr: {args.config} has no '
                '`auto_scale_lr = dict(base_batch_size=N)`, the total batch '
                'size (GPUs x batch_size per GPU) its lr is set for; add it '
                'or pass --cfg-options auto_scale_lr.base_batch_size=N.')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
        latest = find_latest_checkpoint(cfg.work_dir)
        if latest is not None:
            check_checkpoint(latest)
    elif args.resume is not None:
        check_checkpoint(args.resume)
        cfg.resume, cfg.load_from = True, args.resume
    if args.pretrained is not None:
        check_checkpoint(args.pretrained)
        set_pretrained(cfg, args.pretrained)
    if args.random_init:
        drop_pretrained_inits(cfg)
    if getattr(args, 'tensorboard', False):
        add_tensorboard(cfg)
    return apply_cfg_options(cfg, args)


def main(argv=None):
    args = parse_args(build_parser(), argv)
    import hirl_mm
    from hirl_mm.utils import finish_distributed

    # torch >= 2.6 reads checkpoints with weights_only=True: --resume and
    # --pretrained need mmengine's globals on the allow-list. Installed by
    # this explicit call, not as a side effect of an import.
    hirl_mm.register_safe_globals()
    train(merge_args(load_config(args), args))
    finish_distributed()


if __name__ == '__main__':
    main()
